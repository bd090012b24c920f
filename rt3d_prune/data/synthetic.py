"""A procedurally generated video-classification dataset: moving shapes.

Each clip shows one large *target* shape (square, disk or triangle) moving in one of four
directions (right, left, down, up); the class is shape x direction (12 classes). To make the
task need real spatio-temporal features, clips add a random smooth background, Gaussian noise,
random colours, sizes, speeds and start positions, and small *distractor* shapes of every kind
moving in random directions. Direction classes differ only in the order of frames, so a
per-frame model cannot solve them.

Clips are generated deterministically from ``(seed, index)``, stored as uint8.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["MOTIONS", "SHAPES", "MovingShapes", "render_clip"]

SHAPES: tuple[str, ...] = ("square", "disk", "triangle")
MOTIONS: tuple[str, ...] = ("right", "left", "down", "up")
_DIRS = {"right": (0.0, 1.0), "left": (0.0, -1.0), "down": (1.0, 0.0), "up": (-1.0, 0.0)}


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: np.ndarray, cx: np.ndarray,
                r: float) -> np.ndarray:
    """Boolean ``[T, H, W]`` masks of a shape of radius ``r`` centred at ``(cy[t], cx[t])``."""
    dy = yy[None] - cy[:, None, None]
    dx = xx[None] - cx[:, None, None]
    if shape == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if shape == "disk":
        return dy * dy + dx * dx <= r * r
    # triangle pointing up: apex at -r, base at +r
    return (dy <= r * 0.8) & (np.abs(dx) <= (dy + r) * 0.6)


def render_clip(
    label: int,
    rng: np.random.Generator,
    frames: int = 16,
    size: int = 32,
    noise: float = 0.12,
    distractors: int = 3,
) -> np.ndarray:
    """One clip of class ``label`` as uint8 ``[frames, size, size, 3]``."""
    shape, motion = SHAPES[label // len(MOTIONS)], MOTIONS[label % len(MOTIONS)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # smooth random background: a colour gradient
    gy, gx = rng.uniform(-0.25, 0.25, 3), rng.uniform(-0.25, 0.25, 3)
    base = rng.uniform(0.25, 0.45, 3)
    video = (base + gy * (yy[..., None] / size - 0.5) + gx * (xx[..., None] / size - 0.5))
    video = np.broadcast_to(video, (frames, size, size, 3)).copy()
    t = np.arange(frames, dtype=np.float32)
    objects = []
    for _ in range(distractors):
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.2, 1.0)
        objects.append((SHAPES[rng.integers(len(SHAPES))], rng.uniform(1.5, 3.0),
                        rng.uniform(0, size, 2), speed * np.array([np.sin(angle), np.cos(angle)]),
                        rng.uniform(0.0, 1.0, 3)))
    # the target: starts on the side it moves away from, so it crosses the frame
    r = rng.uniform(4.0, 6.5)
    speed = rng.uniform(0.9, 1.4)
    direction = np.array(_DIRS[motion])
    travel = speed * (frames - 1)
    along = size / 2 - direction.sum() * travel / 2 + rng.uniform(-3, 3)
    across = rng.uniform(r + 1, size - r - 1)
    start = np.array([along, across]) if direction[0] != 0 else np.array([across, along])
    colour = rng.uniform(0.0, 1.0, 3)
    colour[rng.integers(3)] = 1.0  # bright in at least one channel
    objects.append((shape, r, start, speed * direction, colour))
    for kind, radius, p0, v, c in objects:
        mask = _shape_mask(kind, yy, xx, p0[0] + v[0] * t, p0[1] + v[1] * t, radius)
        video[mask] = c
    video += rng.normal(0.0, noise, video.shape)
    return (np.clip(video, 0.0, 1.0) * 255).astype(np.uint8)


class MovingShapes(Dataset):
    """The moving-shapes dataset; items are ``(clip [3, T, H, W] float32, label)``.

    Args:
        num_clips: Dataset length (labels are balanced: ``index % 12``).
        seed: Different seeds give disjoint random clips (use different seeds for train/test).
        frames: Clip length.
        size: Frame height and width.
        noise: Standard deviation of the additive Gaussian noise (on a 0..1 scale).
        distractors: Number of small random shapes per clip.
    """

    num_classes: int = len(SHAPES) * len(MOTIONS)

    def __init__(self, num_clips: int, seed: int = 0, frames: int = 16, size: int = 32,
                 noise: float = 0.12, distractors: int = 3) -> None:
        if num_clips < 1:
            raise ValueError("num_clips must be positive")
        self.labels = torch.arange(num_clips) % self.num_classes
        clips = np.empty((num_clips, frames, size, size, 3), np.uint8)
        for i in range(num_clips):
            rng = np.random.default_rng([seed, i])
            clips[i] = render_clip(int(self.labels[i]), rng, frames, size, noise, distractors)
        # [N, 3, T, H, W], kept as uint8 (4x less memory) and normalized per item
        self.clips = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip = self.clips[index].float().div_(255.0).sub_(0.5).div_(0.25)
        return clip, int(self.labels[index])
