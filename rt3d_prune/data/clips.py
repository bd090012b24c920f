"""Clip sampling: a fixed number of frames, resized and cropped, as a normalized tensor."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["sample_clip"]

# Kinetics / C3D-style per-channel normalization
_MEAN = torch.tensor([0.43216, 0.394666, 0.37645]).view(3, 1, 1, 1)
_STD = torch.tensor([0.22803, 0.22145, 0.216989]).view(3, 1, 1, 1)


def sample_clip(
    frames: np.ndarray,
    clip_len: int = 16,
    crop: int = 112,
    resize: int = 128,
    train: bool = True,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Sample one clip from a video.

    Temporal: ``clip_len`` consecutive frames from a random (train) or central (test) start;
    shorter videos are looped. Spatial: the short side is resized to ``resize``, then a
    ``crop x crop`` random (train, plus random horizontal flip) or central crop.

    Args:
        frames: uint8 ``[T, H, W, 3]``.

    Returns:
        float32 ``[3, clip_len, crop, crop]``, normalized.
    """
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
    rng = rng if rng is not None else np.random.default_rng()
    t = frames.shape[0]
    start = int(rng.integers(0, max(t - clip_len, 0) + 1)) if train else max(t - clip_len, 0) // 2
    index = (start + np.arange(clip_len)) % t
    clip = torch.from_numpy(np.ascontiguousarray(frames[index])).permute(3, 0, 1, 2).float()
    h, w = clip.shape[2:]
    scale = resize / min(h, w)
    size = (max(resize, round(h * scale)), max(resize, round(w * scale)))
    clip = F.interpolate(clip, size=size, mode="bilinear", align_corners=False)
    if train:
        y = int(rng.integers(0, size[0] - crop + 1))
        x = int(rng.integers(0, size[1] - crop + 1))
    else:
        y, x = (size[0] - crop) // 2, (size[1] - crop) // 2
    clip = clip[:, :, y : y + crop, x : x + crop]
    if train and rng.random() < 0.5:
        clip = clip.flip(-1)
    return ((clip / 255.0 - _MEAN) / _STD).contiguous()
