"""rt3d_prune: the PyTorch half of RT3D -- model zoo, KGS / vanilla pruning, training.

Never imports tvm. The zeros it writes follow the numpy contract in
``rt3d_passes/sparsity.py`` (checked by ``tests/rt3d_prune/test_prune_export_contract.py``).

Modules (import them directly; this package imports nothing so ``rt3d`` starts fast):

* :mod:`rt3d_prune.models` -- ``MODEL_NAMES``, ``build_model``, ``default_input_shape``:
  C3D, R(2+1)D-18, S3D and ``c3d_small``.
* :mod:`rt3d_prune.macs` -- ``count_macs(model, input_shape) -> list[LayerMACs]``.
* :mod:`rt3d_prune.schemes` -- group norms and masks of the ``kgs``, ``plane``
  (Winograd-compatible), ``vanilla``, ``filter`` and ``unstructured`` schemes.
* :mod:`rt3d_prune.config` -- frozen ``SparsityConfig``, ``RegularizerConfig``, ``ADMMConfig``
  and ``MethodConfig``.
* :mod:`rt3d_prune.presets` -- ``get_preset("c3d-3.6x")`` etc., ``PRESET_NAMES``.
* :mod:`rt3d_prune.sparsifier` -- ``GroupSparsifier``: ``prepare(model, config)``,
  ``step()``, ``squash_mask()``.
* :mod:`rt3d_prune.regularizer` -- ``GroupRegularizer``: ``penalty()``, ``reweight()``
  (group lasso / reweighted, optionally BatchNorm-aware norms).
* :mod:`rt3d_prune.admm` -- ``ADMMRegularizer``: ``penalty()``, ``update()``, ``set_stage()``.
* :mod:`rt3d_prune.pipeline` -- heuristic / group lasso / reweighted / ADMM pruning with
  fine-tuning (``prune_and_finetune``, single process).
* :mod:`rt3d_prune.engine` -- ``run_pruning``: the resumable, DDP-capable run behind it and
  ``rt3d prune`` (device, AMP, checkpoints every epoch, logs, plots).
* :mod:`rt3d_prune.distributed` -- device / AMP / ``torchrun`` process-group set-up.
* :mod:`rt3d_prune.pretrained` -- ``load_pretrained``: ``--init`` with the public models' names.
* :mod:`rt3d_prune.oneshot` -- ``prune_oneshot(model, preset)`` for latency benchmarks.
* :mod:`rt3d_prune.checkpoint` -- ``save_checkpoint`` / ``load_checkpoint``.
* :mod:`rt3d_prune.data` -- UCF101 / HMDB51 folders and the generated moving-shapes data.
* :mod:`rt3d_prune.cli` -- ``register(subparsers)``: the ``models`` and ``prune`` commands;
  ``python -m rt3d_prune.cli`` (what ``torchrun -m rt3d_prune.cli prune ...`` runs).
"""
