"""Slow-R50: the Slow pathway of SlowFast alone (Feichtenhofer et al., ICCV 2019), a 3D
ResNet-50 as PyTorchVideo's ``slow_r50`` builds it.

A 1x7x7 stem (stride 1x2x2) and 1x3x3 max-pool, then ResNet-50's bottleneck stages (3, 4, 6,
3 blocks) whose conv_a is 1x1x1 in res2/res3 and 3x1x1 in res4/res5 and whose conv_b is
1x3x3; nothing strides in time (8 frames stay 8). Module names are PyTorchVideo's
(``blocks.0.conv``, ``blocks.N.res_blocks.M.branch2.conv_a``, ``blocks.5.proj``), so its
state dicts load. 32.45 M parameters with 400 classes.
"""

from __future__ import annotations

from ._pv_blocks import ResNet50


def _slow_stage(i: int, _inner: int):
    # conv_a 1x1x1 in res2/res3, 3x1x1 in res4/res5; conv_b 1x3x3; nothing strides in time
    return (1, 1, 1) if i < 2 else (3, 1, 1), (1, 3, 3), (1, 1, 1) if i == 0 else (1, 2, 2), 1


class SlowR50(ResNet50):
    """Slow-only ResNet-50 (8x8 in the SlowFast paper's notation).

    Args:
        num_classes: Output classes (400 for Kinetics).
        dropout: Dropout probability before the classifier.
    """

    def __init__(self, num_classes: int = 400, dropout: float = 0.5) -> None:
        super().__init__((1, 7, 7), _slow_stage, num_classes, dropout)
