"""``rt3d models`` / ``rt3d prune`` handlers, through a parser built like rt3d_passes.cli."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from rt3d_passes.sparsity import classify
from rt3d_prune.checkpoint import load_checkpoint
from rt3d_prune.cli import register


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rt3d")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_models_json(capsys):
    assert _run(["models", "c3d", "r2plus1d_18", "--json"]) == 0
    report = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert report["c3d"]["params"] == pytest.approx(78.4e6, rel=1e-3)
    assert report["c3d"]["macs"] == pytest.approx(38.5e9, rel=3e-3)
    assert report["r2plus1d_18"]["macs"] == pytest.approx(40.5e9, rel=3e-3)
    conv2 = next(x for x in report["c3d"]["layers"] if x["name"] == "conv2")
    assert conv2["output_shape"] == [1, 128, 16, 56, 56]


def test_models_table(capsys):
    assert _run(["models", "s3d", "--input-shape", "1", "3", "16", "112", "112"]) == 0
    out = capsys.readouterr().out
    assert "s3d" in out and "params 8.32 M" in out and "features.0.0.0" in out


def test_prune_oneshot_writes_inspectable_checkpoint(tmp_path, capsys):
    out = tmp_path / "c3d.pt"
    assert _run(["prune", "--model", "c3d", "--preset", "c3d-3.6x", "--method", "oneshot",
                 "--out", str(out)]) == 0
    assert "3.57x" in capsys.readouterr().out
    model, meta = load_checkpoint(out)
    assert meta["pruning"]["preset"] == "c3d-3.6x"
    assert classify(model.conv2.weight.detach().numpy(), (8, 4)).scheme == "kgs"


def test_prune_generated_end_to_end(tmp_path):
    out = tmp_path / "small.pt"
    torch.manual_seed(0)
    assert _run(["prune", "--model", "c3d_small", "--preset", "c3d_small-3.6x",
                 "--scheme", "vanilla", "--method", "reweighted", "--num-clips", "24",
                 "--dense-epochs", "1", "--reg-epochs", "2", "--rounds", "2",
                 "--finetune-epochs", "1", "--batch-size", "12", "--no-progress",
                 "--out", str(out)]) == 0
    payload = torch.load(out, weights_only=True)
    assert payload["pruning"]["reweight_rounds"] == 2
    assert 0.0 <= payload["pruning"]["top1"] <= 1.0
    assert payload["pruning"]["mac_reduction"] > 3.0
    for stage in ("dense", "regularized"):
        assert (tmp_path / f"small.{stage}.pt").exists()
    w = payload["state_dict"]["conv3b.weight"].numpy()
    assert classify(w, (8, 4)).scheme == "vanilla"


def test_prune_oneshot_plane_scheme(tmp_path, capsys):
    from rt3d_prune.schemes import SCHEMES

    out = tmp_path / "small.pt"
    assert _run(["prune", "--model", "c3d_small", "--preset", "c3d_small-3.6x", "--scheme",
                 "plane", "--method", "oneshot", "--out", str(out)]) == 0
    capsys.readouterr()
    model, meta = load_checkpoint(out)
    assert meta["pruning"]["scheme"] == "plane"
    for name in ("conv2", "conv3b", "conv5b"):
        assert classify(model.get_submodule(name).weight.detach().numpy(),
                        (8, 4)).scheme == "plane", name
    # the parser spells the schemes out (importing them would import torch): keep in step
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    prune = parser._subparsers._group_actions[0].choices["prune"]
    scheme = next(a for a in prune._actions if a.dest == "scheme")
    assert tuple(scheme.choices) == SCHEMES


def test_bad_group_and_preset(tmp_path):
    with pytest.raises(SystemExit):
        _run(["prune", "--model", "c3d", "--preset", "c3d-3.6x", "--group", "8by4",
              "--out", str(tmp_path / "x.pt")])
    with pytest.raises(ValueError, match="valid presets"):
        _run(["prune", "--model", "c3d", "--preset", "nope", "--method", "oneshot",
              "--out", str(tmp_path / "x.pt")])


_SMALL = ["prune", "--model", "c3d_small", "--preset", "c3d_small-3.6x", "--num-clips", "24",
          "--dense-epochs", "1", "--reg-epochs", "1", "--finetune-epochs", "1",
          "--batch-size", "12", "--no-progress", "--device", "cpu"]


def test_prune_resume_and_refusal(tmp_path, capsys):
    out = tmp_path / "a.pt"
    assert _run([*_SMALL, "--method", "admm", "--out", str(out)]) == 0
    first = torch.load(out, weights_only=True)["state_dict"]
    run = tmp_path / "a.pt.run"
    assert (run / "prune" / "last.pt").exists() and (run / "prune" / "history.png").exists()
    # resuming a finished run trains nothing more and writes the same weights
    assert _run([*_SMALL, "--method", "admm", "--resume", "--out", str(out)]) == 0
    again = torch.load(out, weights_only=True)["state_dict"]
    for key, value in first.items():
        assert torch.equal(again[key], value), key
    with pytest.raises(ValueError, match=r"refusing to resume.*rho: 0.001 -> 0.01"):
        _run([*_SMALL, "--method", "admm", "--rho", "0.01", "--resume", "--out", str(out)])


def test_torchrun_world_size_must_divide_the_batch(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [a if a != "12" else "3" for a in _SMALL]  # --batch-size 3
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "rt3d_prune.cli",
           *args, "--out", str(tmp_path / "x.pt")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "--batch-size 3 is not divisible by the world size 2" in result.stderr + result.stdout
    assert not (tmp_path / "x.pt.run").exists()  # nothing trained
