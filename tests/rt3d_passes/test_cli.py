"""The ``rt3d`` command line: inspect and demo."""

import json
import shutil

import pytest
import torch

from rt3d_passes.cli import main


@pytest.fixture(scope="module")
def pruned_small(tmp_path_factory):
    from rt3d_prune.models import build_model
    from rt3d_prune.oneshot import prune_oneshot
    from rt3d_prune.presets import PRESET_NAMES, get_preset

    preset = next(p for p in PRESET_NAMES if get_preset(p).model == "c3d_small")
    model = build_model("c3d_small")
    prune_oneshot(model, preset, scheme="kgs", group=(8, 4))
    path = tmp_path_factory.mktemp("ckpt") / "c3d_small.pt"
    torch.save(model.state_dict(), path)
    return path


def test_inspect_state_dict(pruned_small, capsys):
    assert main(["inspect", str(pruned_small), "--model", "c3d_small", "--json",
                 "--sparse-only"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert [r["layer"] for r in layers][:3] == ["conv1", "conv2", "conv3a"]
    assert layers[0]["scheme"] == "dense" and not layers[0]["rewrite"]
    assert {r["scheme"] for r in layers[1:]} == {"kgs"}
    assert all(r["group"] == [8, 4] for r in layers[1:])
    assert all(r["kept_macs"] < r["dense_macs"] for r in layers[1:])


def test_inspect_reports_what_the_pipeline_compiles(pruned_small, capsys):
    """Without --sparse-only the report shares the pipeline's options: the unpruned conv1 is
    compiled by RT3D's dense kernel, and says so."""
    assert main(["inspect", str(pruned_small), "--model", "c3d_small", "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert layers[0]["scheme"] == "dense" and layers[0]["rewrite"]
    assert "computed dense by RT3D's kernel" in layers[0]["reason"]
    assert all(r["rewrite"] for r in layers)


def test_inspect_winograd_options(pruned_small, capsys):
    """--algorithm forces a layer's algorithm (the report says so), --no-winograd keeps every
    layer direct, and a bad layer name or algorithm ends in a clear error naming it."""
    assert main(["inspect", str(pruned_small), "--model", "c3d_small", "--json",
                 "--algorithm", "conv1=winograd2"]) == 0
    layers = {r["layer"]: r for r in json.loads(capsys.readouterr().out)}
    assert layers["conv1"]["algorithm"] == "winograd" and layers["conv1"]["winograd_tile"] == 2
    assert layers["conv1"]["kernel"] == "rt3d winograd F(2x2)"
    assert "forced" in layers["conv1"]["algorithm_reason"]
    assert main(["inspect", str(pruned_small), "--model", "c3d_small", "--json",
                 "--no-winograd"]) == 0
    layers = json.loads(capsys.readouterr().out)
    assert {r["algorithm"] for r in layers} == {"direct"}
    assert all(r["algorithm_reason"] == "direct: winograd=False" for r in layers)
    assert main(["inspect", str(pruned_small), "--model", "c3d_small",
                 "--algorithm", "conv9=winograd"]) == 2
    assert "unknown layer(s) conv9" in capsys.readouterr().err
    assert main(["inspect", str(pruned_small), "--model", "c3d_small",
                 "--algorithm", "conv1=fft"]) == 2
    assert "unknown conv3d algorithm(s) conv1=fft" in capsys.readouterr().err


def test_inspect_with_a_tuning_db_shows_measured_algorithms(pruned_small, tmp_path, capsys):
    """A database that measured conv1 direct and as Winograd decides its algorithm; the report
    gives the times."""
    from rt3d_passes.cli.model_spec import load_model_file
    from rt3d_passes.target import host_target
    from rt3d_passes.tuning import candidate_workloads, open_database
    from tests.rt3d_passes.conftest import commit_measured

    mod = load_model_file(str(pruned_small), model="c3d_small")
    cands = candidate_workloads(mod, host_target())
    assert "conv1" in cands  # the unpruned 3x3x3 stem of c3d_small
    db = open_database(tmp_path / "db", host_target(), create=True)
    for times, algorithm in (({"direct": 9.0, "winograd2": 1.0}, "winograd"),
                             ({"direct": 0.1}, "direct")):  # now direct: 0.1 < 1.0
        commit_measured(db, cands["conv1"], times)
        assert main(["inspect", str(pruned_small), "--model", "c3d_small", "--json",
                     "--tuning-db", str(tmp_path / "db")]) == 0
        conv1 = json.loads(capsys.readouterr().out)[0]
        assert conv1["layer"] == "conv1" and conv1["algorithm"] == algorithm
        assert conv1["algorithm_reason"].split(": ", 1)[1].startswith("measured fastest (")
    assert main(["inspect", str(pruned_small), "--model", "c3d_small",
                 "--tuning-db", str(tmp_path / "none")]) == 2
    assert "no RT3D tuning database" in capsys.readouterr().err


def test_inspect_exported_program(tmp_path, capsys):
    from rt3d_prune.models import build_model

    model = build_model("c3d_small").eval()
    exported = torch.export.export(model, (torch.zeros(1, 3, 16, 32, 32),))
    path = tmp_path / "model.pt2"
    torch.export.save(exported, path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "conv5b" in out and "total conv3d" in out


def test_inspect_plain_state_dict_needs_model(pruned_small, capsys):
    assert main(["inspect", str(pruned_small)]) == 2
    assert "--model" in capsys.readouterr().err


def test_inspect_wrong_model_is_named(pruned_small, capsys):
    assert main(["inspect", str(pruned_small), "--model", "c3d"]) == 2
    assert "does not fit zoo model 'c3d'" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--runs", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "demo.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert names == ["PyTorch eager (dense)", "PyTorch eager (pruned)", "RT3D dense",
                     "RT3D sparse"]
    assert all(r["max_rel_err"] < 1e-4 for r in result["rows"][2:])
    assert "RT3D sparse" in capsys.readouterr().out
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="needs the cross "
                    "compiler aarch64-linux-gnu-gcc (bash scripts/setup.sh installs it)")
def test_compile_cross_for_kryo(tmp_path, capsys):
    out = tmp_path / "c3d_small.so"
    assert main(["compile", "c3d_small", "--target", "kryo", "-o", str(out)]) == 0
    header = out.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[18] == 183  # e_machine EM_AARCH64


def test_tune_without_device_is_a_clear_error(capsys):
    assert main(["tune", "c3d_small", "--target", "kryo"]) == 2
    assert "--rpc-tracker" in capsys.readouterr().err


def test_tune_unreachable_tracker_fails_fast(capsys):
    import time

    start = time.monotonic()
    assert main(["tune", "c3d_small", "--rpc-tracker", "127.0.0.1:1", "--rpc-key", "x",
                 "--rpc-timeout", "3"]) == 2
    assert time.monotonic() - start < 30
    assert "unreachable" in capsys.readouterr().err


def test_tune_bad_rpc_wait_is_named(capsys):
    assert main(["tune", "c3d_small", "--rpc-tracker", "127.0.0.1:1", "--rpc-key", "x",
                 "--rpc-wait", "0"]) == 2
    assert "--rpc-wait: RPC wait must be positive, got 0" in capsys.readouterr().err


def test_unknown_model_lists_valid_ones(capsys):
    assert main(["compile", "resnet50"]) == 2
    assert "c3d" in capsys.readouterr().err
