"""The methods' building blocks: BN-aware group norms, ADMM, distillation, schedules, state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rt3d_passes.sparsity import classify
from rt3d_prune.admm import ADMMRegularizer, project
from rt3d_prune.config import ADMMConfig, MethodConfig, RegularizerConfig, SparsityConfig
from rt3d_prune.regularizer import GroupRegularizer
from rt3d_prune.schemes import group_norms
from rt3d_prune.sparsifier import GroupSparsifier
from rt3d_prune.train import TrainConfig, distillation_loss, lr_at


class _ConvBN(nn.Module):
    """conv -> BN -> relu -> conv -> BN: a layer BatchNorm renormalizes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(8, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(16)
        self.conv2 = nn.Conv3d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(16)

    def forward(self, x):
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


def _model(seed: int = 0) -> _ConvBN:
    torch.manual_seed(seed)
    return _ConvBN()


_SPARSE = SparsityConfig(rates={"conv1": 0.5, "conv2": 0.75})


@pytest.mark.parametrize("normalize", ["layer", "bn"])
def test_normalized_penalty_ignores_the_layer_scale(normalize):
    model = _model()
    # BN statistics that follow the weights: running_var ~ ||W||^2 as after training
    model.train()
    for _ in range(20):
        model(torch.randn(2, 8, 4, 6, 6))
    reg = GroupRegularizer(model, _SPARSE, RegularizerConfig(normalize=normalize,
                                                             mac_weighted=False))
    raw = GroupRegularizer(model, _SPARSE, RegularizerConfig(mac_weighted=False))
    before, raw_before = reg.penalty().item(), raw.penalty().item()
    with torch.no_grad():
        model.conv2.weight.mul_(0.1)  # shrink a whole layer
        model.bn2.running_var.mul_(0.01)  # as BN's statistics would follow
    # BN: up to its eps inside the square root
    assert reg.penalty().item() == pytest.approx(before, rel=1e-2)
    assert raw.penalty().item() < 0.7 * raw_before  # the raw norm rewards the shrink


def test_bn_normalized_penalty_has_no_gradient_on_gamma():
    model = _model()
    reg = GroupRegularizer(model, _SPARSE, RegularizerConfig(normalize="bn", mac_weighted=False))
    assert reg.batchnorms["conv1"] is model.bn1 and reg.batchnorms["conv2"] is model.bn2
    reg.penalty().backward()
    assert model.bn1.weight.grad is None
    assert model.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("normalize", ["none", "layer"])
def test_reweighted_penalty_shrinks_small_groups_more(normalize):
    model = _model()
    with torch.no_grad():
        model.conv2.weight[:8, :4, 0, 0, 0] *= 0.05  # one small KGS unit
    reg = GroupRegularizer(model, _SPARSE, RegularizerConfig(strength=1e-3, normalize=normalize,
                                                             mac_weighted=False))
    before = group_norms(model.conv2.weight.detach(), "kgs", (8, 4))
    reg.penalty().backward()
    with torch.no_grad():
        model.conv2.weight -= 1e-3 * model.conv2.weight.grad  # small: no overshoot
    after = group_norms(model.conv2.weight.detach(), "kgs", (8, 4))
    relative = (before - after) / before
    assert relative[0, 0, 0] > 5 * relative.flatten()[1:].median()


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_reweight_power(power):
    model = _model()
    reg = GroupRegularizer(model, _SPARSE, RegularizerConfig(eps=1e-3, power=power,
                                                             mac_weighted=False))
    norms = group_norms(model.conv1.weight.detach(), "kgs", (8, 4))
    expected = 1 / (norms.pow(power) + 1e-3)
    torch.testing.assert_close(reg.coeffs["conv1"], expected, rtol=1e-4, atol=0)


def test_regularizer_state_round_trips():
    model = _model()
    reg = GroupRegularizer(model, _SPARSE, RegularizerConfig(mac_weighted=False))
    with torch.no_grad():
        model.conv1.weight.mul_(0.5)
    reg.reweight()
    state = reg.state_dict()
    other = GroupRegularizer(model, _SPARSE, RegularizerConfig(mac_weighted=False))
    other.load_state_dict(state)
    assert other.rounds == 2
    assert other.penalty().item() == pytest.approx(reg.penalty().item(), rel=1e-6)


def _all_or_nothing(weight: torch.Tensor, scheme: str, group: tuple[int, int]) -> bool:
    """Every group is entirely zero or has no zero introduced (random weights have none)."""
    norms = group_norms(weight, scheme, group)
    ones = group_norms((weight != 0).float(), scheme, group, squared=True)
    sizes = group_norms(torch.ones_like(weight), scheme, group, squared=True)
    return bool(((norms == 0) | (ones == sizes)).all())


@pytest.mark.parametrize("scheme", ["kgs", "plane", "vanilla"])
@pytest.mark.parametrize("group", [(8, 4), (4, 4), (16, 8), (3, 5)])
@pytest.mark.parametrize("rate", [0.25, 0.6, 0.85])
@pytest.mark.parametrize("balanced", [True, False])
def test_admm_projection_is_exact(scheme, group, rate, balanced):
    torch.manual_seed(1)
    weight = torch.randn(32, 24, 3, 3, 3)
    config = SparsityConfig(scheme=scheme, group=group, rates={"x": rate}, balanced=balanced)
    z = project(weight, config, rate)
    assert _all_or_nothing(z, scheme, group)
    zero = float((z == 0).float().mean())
    # within one group's share of what is ranked together (a row when balanced KGS)
    mg, ng = -(-32 // group[0]), -(-24 // group[1])
    per_group = {"kgs": 27, "plane": 3, "vanilla": 1}[scheme]  # units per kernel group
    ranked = ng * per_group if scheme != "vanilla" and balanced else mg * ng * per_group
    assert zero == pytest.approx(rate, abs=max(0.03, 1.0 / ranked))
    kept = z != 0
    torch.testing.assert_close(z[kept], weight[kept])  # kept groups untouched


def test_admm_updates_pull_weights_onto_the_pattern():
    model = _model()
    admm = ADMMRegularizer(model, _SPARSE, ADMMConfig(rho=0.5, rho_factor=10, stages=2))
    assert admm.rho == pytest.approx(0.5)
    admm.set_stage(1)
    assert admm.rho == pytest.approx(5.0)
    before = admm.residuals()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        admm.penalty().backward()
        opt.step()
    admm.update()
    after = admm.residuals()
    assert all(after[n] < 0.5 * before[n] for n in before)
    # then the hard prune removes almost nothing
    sp = GroupSparsifier()
    sp.prepare(model, _SPARSE)
    sp.step()
    w = sp.modules["conv2"].parametrizations.weight.original.detach()
    sq = group_norms(w, "kgs", (8, 4), squared=True)
    assert float((sq * ~sp.masks()["conv2"]).sum() / sq.sum()) < 0.05


def test_admm_state_round_trips():
    model = _model()
    admm = ADMMRegularizer(model, _SPARSE, ADMMConfig())
    admm.update()
    admm.set_stage(2)
    other = ADMMRegularizer(_model(3), _SPARSE, ADMMConfig())
    other.load_state_dict(admm.state_dict())
    assert other.stage == 2 and other.updates == 1
    for n in admm.Z:
        assert torch.equal(other.Z[n], admm.Z[n]) and torch.equal(other.U[n], admm.U[n])


def test_admm_refuses_threshold_mode():
    with pytest.raises(ValueError, match="threshold"):
        ADMMRegularizer(_model(), SparsityConfig(rates={"conv1": 0.5}, threshold=0.1),
                        ADMMConfig())


def test_distillation_loss():
    logits = torch.randn(4, 10)
    assert distillation_loss(logits, logits, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(4, 10)
    assert distillation_loss(logits, other, 4.0).item() > 0


def test_lr_schedules():
    const = TrainConfig(epochs=4, lr=0.1, schedule="constant")
    assert lr_at(const, 39, 10) == 0.1
    step = TrainConfig(epochs=4, lr=0.1, schedule="step", step_epochs=2, step_gamma=0.1)
    assert lr_at(step, 19, 10) == pytest.approx(0.1)
    assert lr_at(step, 20, 10) == pytest.approx(0.01)
    cos = TrainConfig(epochs=4, lr=0.1)
    assert lr_at(cos, 0, 10) == pytest.approx(0.1) and lr_at(cos, 40, 10) == pytest.approx(0)


def test_method_config_phases_and_bad_values():
    assert MethodConfig(method="heuristic", reg_epochs=3, finetune_epochs=2).phases == (
        ("finetune", 5),)
    assert MethodConfig(method="admm", reg_epochs=3, finetune_epochs=2).phases == (
        ("regularize", 3), ("finetune", 2))
    assert MethodConfig().reg_train.schedule == "constant"
    assert RegularizerConfig().mac_weighted  # the paper weights layers by their MACs
    with pytest.raises(ValueError, match="unknown method"):
        MethodConfig(method="magic")
    with pytest.raises(ValueError, match="normalize"):
        RegularizerConfig(normalize="channel")
    with pytest.raises(ValueError, match="rho"):
        ADMMConfig(rho=0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


@pytest.mark.parametrize("scheme", ["kgs", "plane", "vanilla"])
def test_sparsifier_masks_round_trip_through_the_state_dict(scheme):
    config = SparsityConfig(scheme=scheme, rates={"conv1": 0.5, "conv2": 0.75})
    model = _model()
    sp = GroupSparsifier()
    sp.prepare(model, config)
    sp.step()
    state = model.state_dict()
    other = _model(seed=4)
    sp2 = GroupSparsifier()
    sp2.prepare(other, config)  # all-keep masks until the state dict arrives
    other.load_state_dict(state)
    for name, mask in sp.masks().items():
        assert torch.equal(sp2.masks()[name], mask)
    sp2.squash_mask()
    torch.testing.assert_close(other.conv2.weight, model.conv2.weight)


def test_admm_pulls_weights_onto_a_plane_pattern():
    model = _model()
    sparsity = _SPARSE.replace(scheme="plane")
    admm = ADMMRegularizer(model, sparsity, ADMMConfig(rho=5.0))
    # Z is exactly plane-pruned at the rate (75 %), balanced: every output group keeps 3 of
    # its 4 x 3 planes
    z = admm.Z["conv2"]
    planes = group_norms(z, "plane", (8, 4))
    assert planes.shape == (2, 4, 3)
    assert ((planes != 0).flatten(1).sum(1) == 3).all()
    assert classify(z.numpy(), (8, 4)).scheme == "plane"
    before = admm.residuals()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(10):
        opt.zero_grad()
        admm.penalty().backward()
        opt.step()
    admm.update()
    assert all(admm.residuals()[n] < 0.5 * before[n] for n in before)
