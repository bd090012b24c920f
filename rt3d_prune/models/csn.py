"""ir-CSN-50: the interaction-reduced channel-separated network (Tran et al., ICCV 2019) at
depth 50, as PyTorchVideo's ``create_csn(model_depth=50, stem_pool=nn.MaxPool3d)`` builds it.

A 3x7x7 stem (stride 1x2x2) and 1x3x3 max-pool, then ResNet-50 bottlenecks (3, 4, 6, 3
blocks) whose 3x3x3 conv is depthwise (``groups = channels``) between the two 1x1x1 convs;
res3, res4 and res5 stride 2 in time and space in their first depthwise conv and shortcut.

Naming convention: PyTorchVideo's ``create_csn`` (the same ``Net`` layout as its ResNets:
``blocks.0.conv``, ``blocks.N.res_blocks.M.branch2.conv_{a,b,c}``, ``branch1_conv``,
``blocks.5.proj``). PyTorchVideo publishes a ``csn_r101`` checkpoint with these names;
VMZ's Caffe2 / PyTorch ir-CSN checkpoints (``layer1.0.conv2`` style) need a key mapping.
"""

from __future__ import annotations

from ._pv_blocks import ResNet50


def _csn_stage(i: int, inner: int):
    # 1x1x1 conv_a, depthwise 3x3x3 conv_b; res3-res5 stride 2 in time and space
    return (1, 1, 1), (3, 3, 3), (1, 1, 1) if i == 0 else (2, 2, 2), inner


class IrCSN50(ResNet50):
    """ir-CSN-50: 13.1 M parameters with 400 classes.

    Args:
        num_classes: Output classes (400 for Kinetics).
        dropout: Dropout probability before the classifier (PyTorchVideo's default is 0).
    """

    def __init__(self, num_classes: int = 400, dropout: float = 0.0) -> None:
        super().__init__((3, 7, 7), _csn_stage, num_classes, dropout)
