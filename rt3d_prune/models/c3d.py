"""C3D (Tran et al., ICCV 2015) and width-reduced variants of the same topology."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

#: Output channels of conv1, conv2, conv3a, conv3b, conv4a, conv4b, conv5a, conv5b in the paper.
C3D_WIDTHS: tuple[int, ...] = (64, 128, 256, 256, 512, 512, 512, 512)
#: The paper's layer names, which pruning presets refer to.
C3D_CONV_NAMES: tuple[str, ...] = (
    "conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b",
)
# pool after conv1, conv2, conv3b, conv4b, conv5b: (kernel == stride, padding)
_POOLS = (
    ((1, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (0, 0, 0)),
    ((2, 2, 2), (0, 1, 1)),  # the original pool5 pads H and W: 7x7 -> 4x4, 8192 features
)


def _pool_out(size: int, k: int, p: int) -> int:
    return (size + 2 * p - k) // k + 1


class C3D(nn.Module):
    """C3D: eight 3x3x3 convolutions, five max-pools, three fully connected layers.

    With the defaults this is the network of the paper (78.4 M parameters, 38.5 G MACs for a
    16x112x112 clip). Conv layers are attributes named as in the paper (``conv1`` ...
    ``conv5b``) so that pruning presets can name them.

    Args:
        num_classes: Output classes (101 for UCF101).
        widths: Output channels of the eight convolutions.
        fc_dim: Width of fc6 and fc7.
        input_size: ``(frames, height, width)`` of a clip; fixes fc6's input size.
        in_channels: Input channels (3 for RGB).
        batch_norm: Add BatchNorm3d after every convolution. The original has none; small
            variants trained from scratch converge much faster with it.
        dropout: Dropout probability before fc7 and fc8.
    """

    def __init__(
        self,
        num_classes: int = 101,
        widths: Sequence[int] = C3D_WIDTHS,
        fc_dim: int = 4096,
        input_size: Sequence[int] = (16, 112, 112),
        in_channels: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(widths) != 8:
            raise ValueError(f"C3D needs 8 conv widths, got {len(widths)}")
        chans = (in_channels, *widths)
        for i, name in enumerate(C3D_CONV_NAMES):
            setattr(self, name, nn.Conv3d(chans[i], chans[i + 1], 3, padding=1))
            if batch_norm:
                setattr(self, f"bn{name[4:]}", nn.BatchNorm3d(chans[i + 1]))
        self.batch_norm = batch_norm
        self.pools = nn.ModuleList(nn.MaxPool3d(k, k, p) for k, p in _POOLS)
        d, h, w = input_size
        for k, p in _POOLS:
            d, h, w = _pool_out(d, k[0], p[0]), _pool_out(h, k[1], p[1]), _pool_out(w, k[2], p[2])
        if min(d, h, w) < 1:
            raise ValueError(f"input_size {tuple(input_size)} is too small for C3D's 5 pools")
        self.fc6 = nn.Linear(widths[-1] * d * h * w, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.fc8 = nn.Linear(fc_dim, num_classes)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def _conv(self, name: str, x: Tensor) -> Tensor:
        x = getattr(self, name)(x)
        if self.batch_norm:
            x = getattr(self, f"bn{name[4:]}")(x)
        return self.relu(x)

    def forward(self, x: Tensor) -> Tensor:
        # pools follow conv1, conv2, conv3b, conv4b and conv5b
        x = self.pools[0](self._conv("conv1", x))
        x = self.pools[1](self._conv("conv2", x))
        x = self.pools[2](self._conv("conv3b", self._conv("conv3a", x)))
        x = self.pools[3](self._conv("conv4b", self._conv("conv4a", x)))
        x = self.pools[4](self._conv("conv5b", self._conv("conv5a", x)))
        x = x.flatten(1)
        x = self.dropout(self.relu(self.fc6(x)))
        x = self.dropout(self.relu(self.fc7(x)))
        return self.fc8(x)
