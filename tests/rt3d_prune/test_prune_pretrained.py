"""``--init``: state dicts under the public implementations' names load; bad ones fail naming
the keys."""

from __future__ import annotations

import pytest
import torch

from rt3d_prune.models import build_model
from rt3d_prune.pretrained import load_pretrained, to_public_names

# names and shapes as the public implementations write them (torchvision.models.video and the
# Sports-1M C3D port's c3d.pickle); the zoo must match them
_PUBLIC = {
    "r2plus1d_18": {"stem.0.weight": (45, 3, 1, 7, 7), "stem.3.weight": (64, 45, 3, 1, 1),
                    "layer1.0.conv1.0.0.weight": (144, 64, 1, 3, 3),
                    "layer1.0.conv1.0.3.weight": (64, 144, 3, 1, 1),
                    "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
                    "layer4.1.conv2.1.running_var": (512,), "fc.weight": (400, 512)},
    "s3d": {"features.0.0.0.weight": (64, 3, 1, 7, 7), "features.0.1.0.weight": (64, 64, 7, 1, 1),
            "features.5.branch1.1.0.0.weight": (128, 96, 1, 3, 3),
            "classifier.1.weight": (400, 1024, 1, 1, 1), "classifier.1.bias": (400,)},
    "c3d": {"conv1.weight": (64, 3, 3, 3, 3), "conv5b.weight": (512, 512, 3, 3, 3),
            "fc6.weight": (4096, 8192), "fc8.weight": (487, 4096), "fc8.bias": (487,)},
}
_CLASSES = {"r2plus1d_18": 400, "s3d": 400, "c3d": 487}


def _public_state(arch: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = build_model(arch, num_classes=_CLASSES[arch]).state_dict()
    return to_public_names(arch, state)


@pytest.mark.parametrize("arch", ["r2plus1d_18", "s3d", "c3d"])
def test_public_names_load(arch, tmp_path):
    public = _public_state(arch)
    for key, shape in _PUBLIC[arch].items():
        assert tuple(public[key].shape) == shape, key
    path = tmp_path / "w.pth"
    torch.save({f"module.{k}" if arch == "c3d" else k: v for k, v in public.items()}, path)
    torch.manual_seed(2)
    model = build_model(arch, num_classes=_CLASSES[arch])
    assert load_pretrained(model, path, arch) == {"skipped_head": []}
    first = next(iter(_PUBLIC[arch]))
    own = first.replace("classifier.1.", "fc.")
    torch.testing.assert_close(model.state_dict()[own], public[first])
    # fine-tuning on UCF101: the 101-class head stays random, everything else loads
    small = build_model(arch, num_classes=101)
    head = "fc8" if arch == "c3d" else "fc"
    assert load_pretrained(small, path, arch) == {
        "skipped_head": [f"{head}.bias", f"{head}.weight"]}


def _c3d_small_file(tmp_path, state):
    path = tmp_path / "w.pt"
    torch.save({"state_dict": state}, path)
    return path


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = build_model("c3d_small").state_dict()
    state.pop("conv2.weight")
    state["conv9.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: conv2\.weight.*unexpected keys: "
                                         r"conv9\.weight"):
        load_pretrained(build_model("c3d_small"), _c3d_small_file(tmp_path, state), "c3d_small")


def test_other_shape_outside_the_head_is_named(tmp_path):
    state = build_model("c3d_small").state_dict()
    state["conv2.weight"] = torch.zeros(32, 16, 1, 3, 3)
    with pytest.raises(ValueError, match=r"conv2\.weight: \(32, 16, 1, 3, 3\) in the file"):
        load_pretrained(build_model("c3d_small"), _c3d_small_file(tmp_path, state), "c3d_small")


def test_another_architecture_is_named(tmp_path):
    with torch.device("meta"):
        state = build_model("r2plus1d_18").state_dict()
    state = {k: torch.zeros(v.shape) for k, v in list(state.items())[:20]}
    with pytest.raises(ValueError, match="another architecture") as err:
        load_pretrained(build_model("c3d_small"), _c3d_small_file(tmp_path, state), "c3d_small")
    assert "(r2plus1d_18?)" in str(err.value) and "missing keys: bn1.bias" in str(err.value)
