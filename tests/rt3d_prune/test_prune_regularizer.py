"""The regularizer's penalty reaches the live weights and reweighting favours small groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rt3d_prune.config import RegularizerConfig, SparsityConfig
from rt3d_prune.regularizer import GroupRegularizer
from rt3d_prune.sparsifier import GroupSparsifier


class _One(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(4, 8, (1, 1, 2), bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.weight[:, :, :, :, 0] = 0.05  # unit 0 small (norm 0.28), unit 1 large (5.7)

    def forward(self, x):
        return self.conv(x)


def _unit_norms(model):
    return model.conv.weight.detach().reshape(8, 4, 2).norm(dim=(0, 1))


def _one_step(reweighted: bool):
    model = _One()
    reg = GroupRegularizer(model, SparsityConfig(rates={"conv": 0.5}),
                           RegularizerConfig(strength=0.01, reweighted=reweighted, eps=1e-3))
    before = _unit_norms(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = reg.penalty()
    loss.backward()
    assert model.conv.weight.grad is not None and model.conv.weight.grad.abs().sum() > 0
    opt.step()
    return before - _unit_norms(model)


def test_reweighted_step_shrinks_small_groups_more():
    shrink = _one_step(reweighted=True)
    assert shrink[0] > 0 and shrink[1] > 0
    assert shrink[0] > 10 * shrink[1]


def test_group_lasso_shrinks_all_groups_equally():
    shrink = _one_step(reweighted=False)
    assert shrink[0].item() == pytest.approx(shrink[1].item(), rel=1e-2)


def test_reweight_updates_coefficients_and_penalty_value():
    model = _One()
    reg = GroupRegularizer(model, SparsityConfig(rates={"conv": 0.5}),
                           RegularizerConfig(strength=2.0, eps=1e-3))
    norms = _unit_norms(model)
    expected = 2.0 * (norms / (norms.square() + 1e-3)).sum()
    assert reg.penalty().item() == pytest.approx(expected.item(), rel=1e-4)
    with torch.no_grad():
        model.conv.weight.mul_(0.5)
    reg.reweight()
    assert reg.rounds == 2
    norms = _unit_norms(model)
    expected = 2.0 * (norms / (norms.square() + 1e-3)).sum()
    assert reg.penalty().item() == pytest.approx(expected.item(), rel=1e-4)


def test_penalty_flows_through_masked_weights_and_mac_weighting():
    torch.manual_seed(0)
    from rt3d_prune.models import build_model

    model = build_model("c3d_small", num_classes=3)
    sparsity = SparsityConfig(rates={"conv2": 0.5, "conv5a": 0.5})
    reg = GroupRegularizer(model, sparsity, RegularizerConfig(mac_weighted=True),
                           input_shape=(1, 3, 16, 32, 32))
    # conv2 runs on 16x16x16 positions, conv5a on 2x2x2: conv2 weighs far more
    assert reg.layer_coeffs["conv2"] > 5 * reg.layer_coeffs["conv5a"]
    sp = GroupSparsifier()
    sp.prepare(model, sparsity)
    sp.step()
    reg.penalty().backward()
    grad = model.conv2.parametrizations.weight.original.grad
    assert grad is not None and grad.abs().sum() > 0


def _plane_norms(conv):
    return conv.weight.detach().square().sum(dim=(0, 1, 3, 4)).sqrt()  # per kd (one group)


@pytest.mark.parametrize("reweighted", [True, False])
def test_plane_penalty_is_differentiable_and_shrinks_small_planes(reweighted):
    torch.manual_seed(0)
    conv = nn.Conv3d(4, 8, 3, bias=False)
    model = nn.Sequential(conv)
    with torch.no_grad():
        conv.weight[:, :, 0] *= 0.02  # kd = 0: a small plane
        conv.weight[:, :, 2] = 0.0  # kd = 2: a plane already at zero
    reg = GroupRegularizer(model, SparsityConfig(scheme="plane", rates={"0": 0.5}),
                           RegularizerConfig(strength=0.01, reweighted=reweighted, eps=1e-3))
    assert reg.coeffs["0"].shape == (1, 1, 3)
    before = _plane_norms(conv)
    reg.penalty().backward()
    grad = conv.weight.grad
    assert torch.isfinite(grad).all()  # no NaN from the zero plane's norm
    assert grad[:, :, :2].abs().sum() > 0 and (grad[:, :, 2] == 0).all()
    # the gradient is the plane norm's: the same direction for every (kh, kw) of a plane
    ratio = (grad[:, :, 1] / conv.weight[:, :, 1]).detach()
    torch.testing.assert_close(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4, atol=0)
    with torch.no_grad():
        conv.weight -= 1e-4 * grad  # small: no overshoot
    after = _plane_norms(conv)
    relative = (before[:2] - after[:2]) / before[:2]
    if reweighted:
        assert relative[0] > 10 * relative[1]  # the small plane is pulled far harder
    else:
        assert relative[0] > relative[1] > 0  # lasso: the same step, larger share of a small one
