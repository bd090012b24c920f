"""Pruning accuracy: an experiment that can decide the paper's ordering of pruning methods.

c3d_small on the generated moving-shapes data, pruned to the ``c3d_small-3.6x`` preset. The
design, fixed before any run (issue 11):

* **Splits**: train / validation / test clips from disjoint generator seeds. The test clips
  (2000 by default) are used only for the final table and the verdicts; every choice
  (lambda, rho) is made on validation.
* **Dense models** trained to a plateau, one per dense seed (their validation curve is in
  the JSON): 40 SGD epochs (20 left them at 82.6 / 46.3 % test top-1 and climbing). They are
  kept in a cache (``--dense-cache``), so only a run with new dense settings trains them.
* **Equal budgets**: every row trains ``reg_epochs + finetune_epochs`` epochs after the dense
  model -- the heuristic fine-tunes for all of them; the **control** row trains the dense
  model as many epochs more without pruning (what the extra training alone buys).
* **Selection**: lambda (group lasso, reweighted) and rho (ADMM) from a fixed grid, on the
  validation top-1 of the first replicate, before any replicate is evaluated on test; for
  each scheme a method runs with on its own. The chosen candidate is that replicate's row.
* **Replicates**: dense seed x batch-order seed (>= 4), every method on every replicate, so
  the differences are paired.
* **Decision rule** (:data:`COMPARISONS`, :func:`verdict`): for each claim "A > B" the mean
  paired test difference A - B with a 90 % t-interval: *shown* if the interval is above 0,
  *refuted* if it is below +0.5 points (A is not better by a meaningful margin),
  *unresolved* otherwise. The goal "best structured method within 1.5 points of dense" is
  judged the same way on (best - dense) against -1.5 points.

Every row also logs validation top-1 before the hard prune, right after it (BatchNorm
statistics recalibrated on a copy) and at the end, and the share of the pruned layers' squared
norm the hard prune removed.

**Plane vs KGS** (issue 12, ``--plane``): every ``<method>/kgs`` row gets a
``<method>/plane`` twin -- the Winograd-compatible scheme (whole ``kd`` planes of a kernel
group) at the preset's rates, i.e. the same MACs up to rounding to whole planes (the MAC
column shows both). lambda / rho are selected on validation for each scheme on its own, and
for each method the claim "KGS - plane (method)" is judged by the same rule: *refuted* means
KGS is not ahead by half a point, i.e. the Winograd-friendly pattern costs no accuracy that
matters.

**Ablations** (``--ablations``, :data:`VARIANTS`): reweighted/kgs against itself with plain
(not squared) P, with P never refreshed (one round), and with raw group norms (no BatchNorm
handling; its own lambda, chosen on validation), each judged as "reweighted - variant".

    python benchmarks/pruning_accuracy.py [--quick] [--plane] [--ablations] [--jobs N]
                                          [--dense-cache DIR] [--out benchmarks/results]
                                          [--set k=v ...]

Time on 2 idle Zen 3 cores (session 15; 2 worker processes of one thread): **51.2 min from
nothing** -- the two dense models of 40 epochs side by side (883 / 901 s), then 27 row jobs of
139-178 s -- and about 36 with the dense cache warm. With inference in passes of 8 clips
channels-last (``rt3d_prune.train.infer``) but nothing else of session 15 a cold run took 63.4
min; what made it fit: glibc keeping freed memory between steps (``EngineConfig.keep_heap``:
page faults had cost 15-22 % of a step), the teacher's outputs memoized
(``EngineConfig.memoize_teacher``), rows starting as soon as their own dense model is there.
Session 5's design (4 + 3 epochs per row, 3-value grids, one process) took 102. Beside any
other CPU job it takes several times longer. ``--quick`` is a smoke test of the whole pipeline
(tiny data, no meaningful numbers).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rt3d_prune.config import ADMMConfig, MethodConfig, RegularizerConfig, SparsityConfig
from rt3d_prune.data import MovingShapes
from rt3d_prune.engine import EngineConfig, keep_freed_memory, run_pruning, to_memory_format
from rt3d_prune.macs import count_macs, total_macs
from rt3d_prune.models import build_model, default_input_shape
from rt3d_prune.presets import get_preset
from rt3d_prune.train import TrainConfig, evaluate

MODEL = "c3d_small"

#: Claims judged by the decision rule: (name, row A, row B); rows are "method/scheme".
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("reweighted - heuristic", "reweighted/kgs", "heuristic/kgs"),
    ("admm - heuristic", "admm/kgs", "heuristic/kgs"),
    ("reweighted - group_lasso", "reweighted/kgs", "group_lasso/kgs"),
    ("KGS - vanilla (heuristic)", "heuristic/kgs", "heuristic/vanilla"),
)
#: Schemes a ``--plane`` run compares at equal MACs: each ``<method>/kgs`` row gets a twin.
PLANE_TWIN: tuple[str, str] = ("kgs", "plane")
#: A claim "A > B" is refuted when the interval's upper end is below this margin (top-1).
MARGIN = 0.005
#: The paper's goal: the best structured method within this many top-1 points of dense.
GOAL = 0.015
# two-sided 90 % Student t quantiles (0.95) by degrees of freedom
_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860,
        9: 1.833, 10: 1.812, 12: 1.782, 15: 1.753, 20: 1.725, 30: 1.697}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes, budgets and grids of one run."""

    train_clips: int = 1000
    val_clips: int = 600
    test_clips: int = 2000
    # session 5: AdamW 2e-3 for 40 epochs reached 92.7 / 65.8 % test top-1 (seeds 0 / 1).
    # Session 9, SGD 0.05 (cosine): 20 epochs left 82.6 / 46.3 % (the full run; both still
    # climbing; 97.5 / 71.2 / 59.3 % validation for seeds 0 / 1 / 2 in a probe, contiguous
    # layout), 40 epochs reached 98.0 / 96.2 % (seed 0 flat from epoch 26 at 98-99 %
    # validation, seed 1 at 93-97 % from epoch 33); SGD 0.1 stayed at chance
    dense_epochs: int = 40
    dense_lr: float = 0.05
    dense_optimizer: str = "sgd"
    dense_weight_decay: float = 5e-4
    dense_seeds: tuple[int, ...] = (0, 1)
    # the dense curve's validation points: every second epoch and the last (every epoch cost
    # about a minute of a cold run; the training itself does not depend on it)
    dense_eval_every: int = 2
    order_seeds: tuple[int, ...] = (0, 1)
    preset: str = "c3d_small-3.6x"
    # every pruned row: reg_epochs of regularization + finetune_epochs of masked fine-tuning
    # (session 5: 4 + 3 with 2 rounds; 3 + 3 fits the 60-minute budget)
    reg_epochs: int = 3
    finetune_epochs: int = 3
    rounds: int = 3  # reweighting rounds, one epoch apart
    admm_stages: int = 2  # rho, 10 rho
    batch_size: int = 32
    lr: float = 0.01  # SGD, constant while regularizing, cosine while fine-tuning
    distill_weight: float = 0.5
    distill_temperature: float = 4.0
    # BatchNorm follows every conv: norms relative to their layer, so the penalty cannot
    # shrink a whole layer for free (RegularizerConfig.normalize)
    normalize: str = "layer"
    eps: float = 0.05  # relative to the layer's mean squared group norm (normalize="layer")
    # selection grids (x4 steps), chosen on validation. Session 5 chose the smallest lambda of
    # both regularizers' grids (8e-3..1.28e-1, 1.2e-2..1.92e-1) and the largest rho
    # (0.03..0.3, validation flat within 1.3 points): each grid now reaches one step past the
    # end that was chosen (two values, for the time budget)
    grid: tuple[tuple[str, tuple[float, ...]], ...] = (
        ("group_lasso", (2e-3, 8e-3)),
        ("reweighted", (3e-3, 1.2e-2)),
        ("admm", (0.3, 1.2)),
        ("reweighted+raw", (3e-4, 1.2e-3)),  # --ablations: raw norms pull ~10x harder
    )
    rows: tuple[str, ...] = ("control", "heuristic/vanilla", "heuristic/kgs",
                             "group_lasso/kgs", "reweighted/kgs", "admm/kgs")


QUICK = BenchConfig(train_clips=24, val_clips=24, test_clips=24, dense_epochs=1,
                    dense_seeds=(0, 1), order_seeds=(0,), reg_epochs=1, finetune_epochs=1,
                    rounds=1, admm_stages=1, batch_size=12,
                    grid=(("group_lasso", (8e-3,)), ("reweighted", (1.2e-2,)),
                          ("admm", (0.1,)), ("reweighted+raw", (1e-3,))))


#: Ablations of the reweighted recipe (``--ablations``): a row ``method+variant/scheme`` runs
#: ``method/scheme`` with one setting changed, judged as "method - method+variant" by the same
#: rule. ``(label, MethodConfig / RegularizerConfig fields, own lambda)``: a variant that
#: keeps the norm's scale runs at the lambda chosen for its base row; one that changes it has
#: its own grid entry (``grid`` key ``method+variant``) and its own choice on validation.
VARIANTS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "p1": ("plain P = 1/(||W||+eps), not squared", {"power": 1.0}, False),
    "r1": ("P from the dense weights only, never refreshed", {"rounds": 1}, False),
    # c3d_small's raw KGS group norms are 0.03-0.3 (dense models of session 9), not ~1 as
    # layer-relative ones: eps 5e-4 is about 0.05 x their mean square, as "layer" uses 0.05
    # x the layer's, and the pull per group is ~10x stronger at one lambda
    "raw": ("raw group norms: no BatchNorm handling",
            {"normalize": "none", "eps": 5e-4}, True),
}
#: The rows of ``--ablations``.
ABLATION_ROWS: tuple[str, ...] = ("reweighted/kgs", "reweighted+p1/kgs", "reweighted+r1/kgs",
                                  "reweighted+raw/kgs")


def parse_row(row: str) -> tuple[str, str | None, str | None]:
    """``(method, variant, scheme)`` of a row name (``"control"``: no scheme).

    Raises:
        ValueError: An unknown variant.
    """
    head, _, scheme = row.partition("/")
    method, _, variant = head.partition("+")
    if variant and variant not in VARIANTS:
        raise ValueError(f"row {row!r}: unknown variant {variant!r}; known: "
                         f"{', '.join(VARIANTS)}")
    return method, variant or None, scheme or None


def _base_row(row: str) -> str:
    """The row a variant row ablates (``reweighted+p1/kgs`` -> ``reweighted/kgs``)."""
    method, _, scheme = parse_row(row)
    return f"{method}/{scheme}" if scheme else method


def with_plane(config: BenchConfig) -> BenchConfig:
    """``config`` with a ``<method>/plane`` row after the rows for every ``<method>/kgs`` row
    (those already there are kept once)."""
    base, twin = PLANE_TWIN
    extra = [r.split("/")[0] + "/" + twin for r in config.rows if r.endswith("/" + base)]
    return dataclasses.replace(config, rows=tuple(dict.fromkeys([*config.rows, *extra])))


def comparisons(rows: tuple[str, ...] | list[str]) -> list[tuple[str, str, str]]:
    """:data:`COMPARISONS`, then "KGS - plane (method)" for every method run with both, and
    "base - variant" for every ablation row (:data:`VARIANTS`)."""
    base, twin = PLANE_TWIN
    out = list(COMPARISONS)
    for row in rows:
        method, variant, scheme = parse_row(row)
        if variant is not None and _base_row(row) in rows:
            out.append((f"{_base_row(row)} - {row} ({VARIANTS[variant][0]})",
                        _base_row(row), row))
        elif scheme == twin and f"{method}/{base}" in rows:
            out.append((f"KGS - plane ({method})", f"{method}/{base}", row))
    return out


def _grid_key(row: str) -> str:
    """The ``grid`` entry of a row: its method, or ``method+variant`` for a variant with its
    own lambda."""
    method, variant, _ = parse_row(row)
    return f"{method}+{variant}" if variant is not None and VARIANTS[variant][2] else method


def _choice_key(row: str) -> str:
    """The key of a row's selected lambda / rho: the grid key for KGS (as before plane rows
    existed), ``key/scheme`` for any other scheme, which is selected on its own; a variant
    row without its own lambda shares its base row's."""
    key, scheme = _grid_key(row), parse_row(row)[2]
    return key if scheme == "kgs" else f"{key}/{scheme}"


def _own_choice(row: str) -> bool:
    """Whether a row (not ``control``) is chosen on validation itself, rather than taking its
    base row's lambda."""
    variant = parse_row(row)[1]
    return variant is None or VARIANTS[variant][2]


def _method(config: BenchConfig, row: str, strength: float) -> tuple[MethodConfig, bool]:
    """``(MethodConfig, prunes)`` of a row at a given lambda / rho."""
    ft = TrainConfig(lr=config.lr, distill_weight=config.distill_weight,
                     distill_temperature=config.distill_temperature)
    reg_train = TrainConfig(lr=config.lr, schedule="constant")
    total = config.reg_epochs + config.finetune_epochs
    if row == "control":
        return MethodConfig(method="heuristic", reg_epochs=0, finetune_epochs=total,
                            finetune_train=ft), False
    method, variant, _ = parse_row(row)
    changes = VARIANTS[variant][1] if variant else {}
    reg = {"strength": strength, "eps": config.eps, "normalize": config.normalize}
    reg.update({k: v for k, v in changes.items()
                if k in {f.name for f in dataclasses.fields(RegularizerConfig)}})
    return MethodConfig(
        method=method, reg_epochs=config.reg_epochs, finetune_epochs=config.finetune_epochs,
        rounds=changes.get("rounds", config.rounds),
        regularizer=RegularizerConfig(**reg),
        admm=ADMMConfig(rho=strength, stages=config.admm_stages) if method == "admm"
        else ADMMConfig(),
        reg_train=reg_train, finetune_train=ft), True


def _sparsity(config: BenchConfig, row: str) -> SparsityConfig:
    if row == "control":
        return SparsityConfig()
    return get_preset(config.preset).config(parse_row(row)[2], (8, 4))


def t_interval(diffs: list[float], level_t: dict[int, float] = _T95) -> tuple[float, float,
                                                                              float]:
    """``(mean, low, high)``: the mean of paired differences and its 90 % t-interval."""
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return mean, -math.inf, math.inf
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    df = n - 1
    t = level_t.get(df) or level_t[max(k for k in level_t if k <= df)]
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(low: float, high: float, threshold: float = 0.0, margin: float = MARGIN) -> str:
    """The decision rule for a claim "difference > threshold"."""
    if low > threshold:
        return "shown"
    if high < threshold + margin:
        return "refuted"
    return "unresolved"


#: Generator seed of each split (disjoint clips).
SPLIT_SEEDS = {"train": 101, "val": 202, "test": 303}


def _datasets(config: BenchConfig, splits: tuple[str, ...] = tuple(SPLIT_SEEDS)
              ) -> dict[str, MovingShapes]:
    return {split: MovingShapes(getattr(config, f"{split}_clips"), seed=SPLIT_SEEDS[split])
            for split in splits}


def _train_dense(config: BenchConfig, seed: int, data: dict[str, MovingShapes],
                 progress: bool) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    torch.manual_seed(seed)
    model = build_model(MODEL, num_classes=MovingShapes.num_classes)
    method = MethodConfig(method="heuristic", reg_epochs=0, finetune_epochs=config.dense_epochs,
                          finetune_train=TrainConfig(
                              lr=config.dense_lr, optimizer=config.dense_optimizer,
                              weight_decay=config.dense_weight_decay))
    engine = EngineConfig(batch_size=config.batch_size, device="cpu", seed=seed,
                          progress=progress, eval_every=config.dense_eval_every)
    info = run_pruning(model, SparsityConfig(), method, data["train"], engine,
                       val_set=data["val"])
    curve = [{k: r[k] for k in ("epoch", "loss", "train_top1", "val_top1")}
             for r in info["history"]]
    return model, curve


def _row(config: BenchConfig, dense: torch.nn.Module, row: str, strength: float,
         order_seed: int, data: dict[str, MovingShapes], progress: bool) -> dict[str, Any]:
    model = copy.deepcopy(dense)
    method, _ = _method(config, row, strength)
    # the training clips are fixed: the teacher's outputs from the first fine-tuning epoch
    # serve the later ones
    engine = EngineConfig(batch_size=config.batch_size, device="cpu", seed=order_seed,
                          progress=progress, eval_every=10**6, memoize_teacher=True)
    t0 = time.time()
    info = run_pruning(model, _sparsity(config, row), method, data["train"], engine,
                       val_set=data["val"], input_shape=default_input_shape(MODEL))
    return {"row": row, "strength": strength, "seconds": time.time() - t0,
            "val_before_prune": info.get("val_before_prune"),
            "val_after_prune": info.get("val_after_prune"), "val_end": info.get("val_end"),
            "pruned_energy": info.get("pruned_energy"),
            "pruned_fractions": info.get("pruned_fractions"), "model": model}


# -- jobs: the units the run schedules, in this process or in worker processes ------------

#: A worker process's state: the config, its datasets and whether it shows bars.
_WORKER: dict[str, Any] = {}


def _die_with_parent() -> None:
    """Ask Linux to stop this worker when the run's process dies: a killed run otherwise
    leaves its workers training to the end of their rows (seen in session 9)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the workers finish their rows
        pass


def _init_worker(config: BenchConfig, threads: int, progress: bool) -> None:
    if multiprocessing.parent_process() is not None:
        _die_with_parent()
    torch.set_num_threads(threads)
    _WORKER.update(config=config, data=_datasets(config), progress=progress)


def _dense_job(seed: int) -> dict[str, Any]:
    """Train dense model ``seed``; its state dict, curve and top-1."""
    config, data = _WORKER["config"], _WORKER["data"]
    t0 = time.time()
    model, curve = _train_dense(config, seed, data, _WORKER["progress"])
    return {"seed": seed, "val_top1": _top1(model, data["val"]),
            "test_top1": _top1(model, data["test"]),
            "seconds": time.time() - t0, "curve": curve, "state": model.state_dict()}


#: The BenchConfig fields a dense model depends on (its cache key, with the seed).
DENSE_FIELDS = ("train_clips", "val_clips", "test_clips", "dense_epochs", "dense_lr",
                "dense_optimizer", "dense_weight_decay", "batch_size")


#: Where ``main`` keeps dense models unless told otherwise.
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rt3d" / \
    "pruning_accuracy"


def _dense_cache_path(cache: Path, config: BenchConfig, seed: int) -> Path:
    key = json.dumps({"model": MODEL, "seed": seed, "torch": torch.__version__,
                      **{f: getattr(config, f) for f in DENSE_FIELDS}}, sort_keys=True)
    return cache / f"dense_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def _load_model(state: dict[str, Any]) -> torch.nn.Module:
    """A dense model, or a squashed pruned one (its zeros are in the weights)."""
    model = build_model(MODEL, num_classes=MovingShapes.num_classes)
    model.load_state_dict(state)
    return model


def _row_job(row: str, strength: float, dense_seed: int, dense_state: dict[str, Any],
             order_seed: int, test: bool) -> dict[str, Any]:
    """One pruned (or control) row from dense model ``dense_seed``. ``test``: also its test
    top-1 and MACs (replicates); otherwise (selection candidates) the pruned state dict is
    returned instead, so the chosen candidate can become its replicate without a rerun."""
    config, data = _WORKER["config"], _WORKER["data"]
    r = _row(config, _load_model(dense_state), row, strength, order_seed, data,
             _WORKER["progress"])
    model = r.pop("model")
    r.update(dense_seed=dense_seed, order_seed=order_seed)
    if test:
        r.update(_test_fields(model, data["test"]))
    else:
        r["state"] = model.state_dict()
    return r


@functools.cache
def _dense_macs() -> int:
    """MACs of the unpruned model (they do not depend on its weights): counted once per
    process."""
    dense, _ = total_macs(count_macs(build_model(MODEL, num_classes=MovingShapes.num_classes),
                                     default_input_shape(MODEL)))
    return dense


def _top1(model: torch.nn.Module, dataset: MovingShapes) -> float:
    """Top-1 of ``model`` on ``dataset``, laid out channels-last (in place) as the engine trains
    it: 5.6 ms per clip against 7.8 contiguous (c3d_small, one thread, Zen 3)."""
    to_memory_format(model, torch.channels_last_3d)
    return evaluate(model, DataLoader(dataset, 100), memory_format=torch.channels_last_3d)


def _test_fields(model: torch.nn.Module, test_set: MovingShapes) -> dict[str, Any]:
    _, kept = total_macs(count_macs(model, default_input_shape(MODEL)))
    return {"test_top1": _top1(model, test_set), "kept_macs": kept,
            "mac_reduction": _dense_macs() / kept}


def _plan(config: BenchConfig) -> tuple[list[str], list[str]]:
    """``(selected, variants)``: the rows whose lambda / rho is chosen on validation (one
    choice per row: :func:`_choice_key`), and the variant rows that take their base row's
    choice and start once it is made.

    Raises:
        ValueError: A row that chooses its own lambda has no grid entry, or a variant row's
            base row is not a selected row.
    """
    grid = dict(config.grid)
    variants = [r for r in config.rows if "/" in r and not _own_choice(r)]
    selected = [r for r in config.rows if "/" in r and _own_choice(r) and
                (_grid_key(r) in grid or parse_row(r)[1] is not None)]
    for row in selected:
        if _grid_key(row) not in grid:
            raise ValueError(f"row {row!r} chooses its own lambda: grid needs a "
                             f"{_grid_key(row)!r} entry")
    for row in variants:
        if _base_row(row) not in selected:
            raise ValueError(f"row {row!r} ablates {_base_row(row)!r}, which is not a row with "
                             f"a grid: add it to rows and its method to grid")
    return selected, variants


class _Inline:
    """A one-process stand-in for ``ProcessPoolExecutor`` (``jobs=1``)."""

    def __init__(self, config: BenchConfig, threads: int, progress: bool) -> None:
        _init_worker(config, threads, progress)

    def submit(self, fn, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self) -> None:
        pass


def run(config: BenchConfig, out_dir: Path | None = None, progress: bool = True,
        name: str = "pruning_accuracy", jobs: int = 1, threads: int | None = None,
        dense_cache: Path | None = None) -> dict[str, Any]:
    """Run the experiment; returns (and writes, rewritten after every row) the result.

    ``dense_cache``: a directory where trained dense models are kept, keyed by the settings
    they depend on (:data:`DENSE_FIELDS`, the seed, torch's version); a later run with the
    same settings (``--plane``, another row set) loads them instead of training again.

    ``jobs`` > 1 trains that many rows at once in worker processes (spawned), each with
    ``threads // jobs`` threads. On 2 cores two 1-thread jobs step as fast as one 2-thread
    job (c3d_small: 0.82-0.86 s per step each against 0.43 s); the gain is in the serial parts
    (data loading, per-step Python, evaluation) and in training the dense models side by side.
    Every row depends only on its dense model, its settings and its seeds (and on float
    rounding, i.e. the thread count), not on the schedule.
    """
    start = time.time()
    selected, variants = _plan(config)  # bad rows fail before any work
    keep_freed_memory()  # the workers' engines do it too (EngineConfig.keep_heap)
    threads = threads or torch.get_num_threads()
    per_job = max(1, threads // jobs)
    shape = default_input_shape(MODEL)
    result: dict[str, Any] = {
        "config": dataclasses.asdict(config), "model": MODEL, "input_shape": list(shape),
        "decision_rule": {"comparisons": [list(c) for c in comparisons(config.rows)],
                          "interval": "90% t",
                          "margin": MARGIN, "goal": GOAL},
        "dense": [], "selection": [], "rows": [], "complete": False,
        "torch": torch.__version__, "threads": threads, "jobs": jobs,
        "threads_per_job": per_job, "loadavg_start": list(os.getloadavg())}
    _say(f"decision rule: claim A > B shown if the 90% t-interval of mean paired test "
         f"(A - B) is above 0, refuted if below +{MARGIN * 100:.1f} points, else unresolved")

    def save() -> None:
        result["seconds"] = time.time() - start
        result["loadavg_end"] = list(os.getloadavg())
        _write(result, out_dir, name)

    if jobs > 1:
        pool = concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
            initargs=(config, per_job, False))
    else:
        pool = _Inline(config, per_job, progress)
    test_set = (_datasets(config, ("test",)) if jobs > 1 else _WORKER["data"])["test"]
    grid = dict(config.grid)
    replicates = [(d, o) for d in config.dense_seeds for o in config.order_seeds]
    first = replicates[0]
    n_jobs = (len(config.dense_seeds) + sum(len(grid[_grid_key(r)]) for r in selected)
              + len(replicates) * len(config.rows) - len(selected))
    bar = tqdm(total=n_jobs, desc="pruning_accuracy", unit="job", disable=not progress,
               position=0)
    try:
        states: dict[int, dict[str, Any]] = {}
        cached = {seed: _dense_cache_path(dense_cache, config, seed) for seed in
                  config.dense_seeds} if dense_cache is not None else {}
        result["dense_macs"] = _dense_macs()
        # every job in flight, and the row jobs whose dense model is not trained yet: a
        # row starts as soon as its own dense model is there (the two dense models of a cold
        # run finish a minute or more apart: 1015 and 1074 s in session 15)
        pending: dict[concurrent.futures.Future, tuple[str, Any]] = {}
        waiting: list[tuple[str, str, float, int, int]] = []

        def submit(kind: str, row: str, strength: float, d: int, o: int) -> None:
            if d not in states:
                waiting.append((kind, row, strength, d, o))
                return
            pending[pool.submit(_row_job, row, strength, d, states[d], o,
                                kind == "row")] = (kind, row)

        for seed in config.dense_seeds:
            if seed in cached and cached[seed].exists():
                future: concurrent.futures.Future = concurrent.futures.Future()
                future.set_result({**torch.load(cached[seed], weights_only=False),
                                   "cached": str(cached[seed])})
            else:
                future = pool.submit(_dense_job, seed)
            pending[future] = ("dense", seed)

        # selection on validation (first replicate only; the test clips are not read until
        # a choice is made): every scheme a method runs with gets its own choice (KGS's is
        # keyed by the method). Rows that need no choice start meanwhile.
        for row in selected:
            for value in grid[_grid_key(row)]:
                submit("select", row, value, *first)
        for d, o in replicates:
            for row in config.rows:
                if row not in selected and row not in variants:
                    submit("row", row, 0.0, d, o)
        candidates: dict[str, list[dict[str, Any]]] = {row: [] for row in selected}
        chosen: dict[str, float] = {}
        order = {x: i for i, x in enumerate(config.rows)}
        while pending:
            done, _ = concurrent.futures.wait(pending, return_when="FIRST_COMPLETED")
            for future in done:
                kind, row = pending.pop(future)
                r = future.result()
                bar.update()
                if kind == "dense":
                    _dense_done(r, cached, states, result)
                    ready = [job for job in waiting if job[3] in states]
                    waiting[:] = [job for job in waiting if job[3] not in states]
                    for job in ready:
                        submit(*job)
                    save()
                    continue
                if kind == "select":
                    result["selection"].append({
                        "method": _grid_key(row), "scheme": parse_row(row)[2],
                        "value": r["strength"], "val_end": r["val_end"],
                        "pruned_energy": r["pruned_energy"], "seconds": r["seconds"]})
                    _say(f"select {row:>18} {r['strength']:<8g}: val {r['val_end']:.4f}, "
                         f"pruned energy {r['pruned_energy']:.3f}, {r['seconds']:.0f} s")
                    candidates[row].append(r)
                    if len(candidates[row]) < len(grid[_grid_key(row)]):
                        save()
                        continue
                    # every value done: choose on validation (ties: the smaller value), then
                    # the chosen candidate is this row's first replicate
                    best = max(candidates.pop(row), key=lambda c: (c["val_end"],
                                                                   -c["strength"]))
                    chosen[_choice_key(row)] = best["strength"]
                    result["chosen"] = {_choice_key(x): chosen[_choice_key(x)]
                                        for x in selected if _choice_key(x) in chosen}
                    for d, o in replicates[1:]:
                        submit("row", row, best["strength"], d, o)
                    for v in [v for v in variants if _base_row(v) == row]:
                        for d, o in replicates:
                            submit("row", v, best["strength"], d, o)
                    r = best
                    r.update(_test_fields(_load_model(r.pop("state")), test_set))
                result["rows"].append(r)
                result["rows"].sort(key=lambda x: (config.dense_seeds.index(x["dense_seed"]),
                                                   config.order_seeds.index(x["order_seed"]),
                                                   order[x["row"]]))
                _say(f"d{r['dense_seed']} o{r['order_seed']} {row:>18}: test "
                     f"{r['test_top1']:.4f}, val before/after prune/end "
                     f"{_f(r['val_before_prune'])}/{_f(r['val_after_prune'])}/"
                     f"{_f(r['val_end'])}, pruned energy {_f(r['pruned_energy'])}, "
                     f"{r['mac_reduction']:.2f}x, {r['seconds']:.0f} s")
                save()
    finally:
        bar.close()
        pool.shutdown()
    result["verdicts"] = verdicts(result)
    result["complete"] = True
    save()
    _write(result, out_dir, name, plot=True)
    return result


def _dense_done(entry: dict[str, Any], cached: dict[int, Path],
                states: dict[int, dict[str, Any]], result: dict[str, Any]) -> None:
    """Keep a finished (or cached) dense model: its state for the rows, its entry in the
    result, and a new one in the cache."""
    if entry["seed"] in cached and "cached" not in entry:
        cached[entry["seed"]].parent.mkdir(parents=True, exist_ok=True)
        torch.save(entry, cached[entry["seed"]])
    states[entry["seed"]] = entry.pop("state")
    seeds = result["config"]["dense_seeds"]
    result["dense"].append(entry)
    result["dense"].sort(key=lambda e: list(seeds).index(e["seed"]))
    _say(f"dense seed {entry['seed']}: val {entry['val_top1']:.4f}, test "
         f"{entry['test_top1']:.4f} ({entry['seconds']:.0f} s"
         f"{', from ' + entry['cached'] if 'cached' in entry else ''})")


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _say(text: str) -> None:
    print(text, flush=True)


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply the decision rule to the finished rows (test top-1, paired by replicate)."""
    by = {(r["dense_seed"], r["order_seed"], r["row"]): r["test_top1"] for r in result["rows"]}
    reps = sorted({(d, o) for d, o, _ in by})
    out = []
    rows = result.get("config", {}).get("rows") or sorted({r for _, _, r in by})
    for label, a, b in comparisons(rows):
        diffs = [by[(d, o, a)] - by[(d, o, b)] for d, o in reps
                 if (d, o, a) in by and (d, o, b) in by]
        if not diffs:
            continue
        mean, low, high = t_interval(diffs)
        out.append({"claim": label, "n": len(diffs), "mean": mean, "low": low, "high": high,
                    "verdict": verdict(low, high)})
    # the goal: best structured (KGS) method within GOAL of dense, paired by dense seed
    dense = {e["seed"]: e["test_top1"] for e in result["dense"]}
    kgs_rows = sorted({r for _, _, r in by if parse_row(r)[2] == "kgs" and
                       parse_row(r)[1] is None})
    if kgs_rows and dense:
        means = {r: sum(v for (_, _, rr), v in by.items() if rr == r) /
                 max(1, sum(1 for k in by if k[2] == r)) for r in kgs_rows}
        best = max(means, key=means.get)
        diffs = [by[(d, o, best)] - dense[d] for d, o in reps if (d, o, best) in by]
        mean, low, high = t_interval(diffs)
        out.append({"claim": f"{best} within {GOAL * 100:.1f} points of dense",
                    "n": len(diffs), "mean": mean, "low": low, "high": high,
                    "verdict": verdict(low, high, threshold=-GOAL, margin=0.0)})
    return out


def table(result: dict[str, Any]) -> str:
    """Mean over replicates per row, then the verdicts."""
    lines = [f"{'row':<20} {'n':>2} {'test top-1':>10} {'sd':>6} {'val pre':>7} "
             f"{'val post':>8} {'val end':>7} {'energy':>6} {'MAC red.':>8}"]
    dense = result["dense"]
    if dense:
        vals = [e["test_top1"] for e in dense]
        lines.append(f"{'dense':<20} {len(vals):>2} {_mean(vals):>10.4f} {_sd(vals):>6.4f}")
    for row in dict.fromkeys(r["row"] for r in result["rows"]):
        rs = [r for r in result["rows"] if r["row"] == row]

        def m(key: str, rs=rs) -> str:
            vals = [r[key] for r in rs if r.get(key) is not None]
            return f"{_mean(vals):.3f}" if vals else "-"

        tops = [r["test_top1"] for r in rs]
        lines.append(f"{row:<20} {len(rs):>2} {_mean(tops):>10.4f} {_sd(tops):>6.4f} "
                     f"{m('val_before_prune'):>7} {m('val_after_prune'):>8} {m('val_end'):>7} "
                     f"{m('pruned_energy'):>6} {_mean([r['mac_reduction'] for r in rs]):>7.2f}x")
    if result.get("chosen"):
        lines.append("chosen on validation: " + ", ".join(
            f"{k} {v:g}" for k, v in result["chosen"].items()))
    for v in result.get("verdicts", []):
        lines.append(f"{v['claim']:<40} n={v['n']} mean {v['mean'] * 100:+.2f} points, "
                     f"90% CI [{v['low'] * 100:+.2f}, {v['high'] * 100:+.2f}] -> {v['verdict']}")
    return "\n".join(lines)


def _mean(vals: list[float]) -> float:
    return sum(vals) / max(len(vals), 1)


def _sd(vals: list[float]) -> float:
    if len(vals) < 2:
        return 0.0
    mu = _mean(vals)
    return math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1))


def _write(result: dict[str, Any], out_dir: Path | None, name: str, plot: bool = False) -> None:
    if out_dir is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))
    if plot:
        _plot(result, out_dir / f"{name}.png")


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(dict.fromkeys(r["row"] for r in result["rows"]))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, row in enumerate(rows):
        tops = [r["test_top1"] for r in result["rows"] if r["row"] == row]
        ax.scatter([i] * len(tops), tops, alpha=0.6)
        ax.plot([i - 0.2, i + 0.2], [_mean(tops)] * 2, color="black")
    dense = [e["test_top1"] for e in result["dense"]]
    if dense:
        ax.axhline(_mean(dense), ls="--", color="grey", label="dense (mean)")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(rows)), rows, rotation=20, fontsize=7)
    ax.set_ylabel("test top-1 (generated moving shapes)")
    ax.set_title(f"{result['model']}, {result['config']['preset']}: replicates and means")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test profile")
    parser.add_argument("--plane", action="store_true",
                        help="also run every <method>/kgs row with the Winograd-compatible "
                             "plane scheme at the same rates (equal MACs up to rounding) and "
                             "judge KGS - plane per method")
    parser.add_argument("--ablations", action="store_true",
                        help="rows: reweighted/kgs and its ablations (VARIANTS: plain P, one "
                             "round, raw norms) at reweighted's chosen lambda, judged as "
                             "reweighted - variant")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads in all (split among --jobs)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="rows trained at once in worker processes (default: 2 when "
                             "there are at least 2 threads, else 1)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--name", default="pruning_accuracy", help="output file stem")
    parser.add_argument("--dense-cache", type=Path, default=DEFAULT_CACHE, metavar="DIR",
                        help="keep the trained dense models here and reuse them when a run "
                             "has the same dense settings (default: %(default)s)")
    parser.add_argument("--no-dense-cache", action="store_true",
                        help="train the dense models and keep nothing")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override BenchConfig fields, e.g. --set train_clips=600 "
                             "dense_seeds=0,1")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = QUICK if args.quick else BenchConfig()
    for item in args.set:
        key, value = item.split("=", 1)
        current = getattr(config, key)
        if key == "grid":  # grid=reweighted:1e-3:4e-3,admm:0.1
            parsed = tuple((p[0], tuple(float(v) for v in p[1:]))
                           for p in (x.split(":") for x in value.split(",")))
        elif isinstance(current, tuple):
            kind = type(current[0]) if current else str
            parsed = tuple(kind(v) for v in value.split(","))
        else:
            parsed = type(current)(value)
        config = dataclasses.replace(config, **{key: parsed})
    if args.ablations:
        config = dataclasses.replace(config, rows=ABLATION_ROWS)
    if args.plane:  # after --set, so that rows=... picks the KGS rows that get twins
        config = with_plane(config)
    jobs = args.jobs or (2 if args.threads >= 2 else 1)
    if jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be at least 1")
    result = run(config, args.out, not args.no_progress, args.name, jobs=jobs,
                 threads=args.threads,
                 dense_cache=None if args.no_dense_cache else args.dense_cache)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
