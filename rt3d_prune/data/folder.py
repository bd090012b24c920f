"""UCF101 / HMDB51-style video folders: ``root/<class>/<video file or frame folder>``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .clips import sample_clip
from .readers import VideoReadError, is_video, read_frames
from .splits import read_split

__all__ = ["VideoFolder"]


def _resolve(root: Path, rel: str) -> Path | None:
    """The file or frame folder of a split entry; frames are often extracted to a folder
    named after the video (``v_x.avi`` -> ``v_x/``) or saved in another format."""
    path = root / rel
    if path.exists():
        return path
    stem = path.with_suffix("")
    if stem.is_dir():
        return stem
    if path.parent.is_dir():
        for candidate in sorted(path.parent.glob(stem.name + ".*")):
            if is_video(candidate):
                return candidate
    return None


class VideoFolder(Dataset):
    """Videos in class folders, optionally restricted to an official split.

    Items are ``(clip [3, clip_len, crop, crop] float32, label)``.

    Args:
        root: Dataset root with one folder per class.
        split_dir: Folder of UCF101 or HMDB51 split files; ``None`` uses every video found
            (classes are the sorted folder names).
        split: ``"train"`` or ``"test"`` (random vs central clips; also selects split entries).
        fold: Split number.
        clip_len, crop, resize: See :func:`~rt3d_prune.data.clips.sample_clip`.
        verify: Decode every video once now and drop the corrupt ones (slower to construct,
            but training never meets a bad file). Without it, a video that fails later is
            replaced by another one, with a warning.
        seed: Seed of the clip sampling.

    Raises:
        ValueError: No usable video was found.
    """

    def __init__(self, root: str | Path, split_dir: str | Path | None = None,
                 split: str = "train", fold: int = 1, clip_len: int = 16, crop: int = 112,
                 resize: int = 128, verify: bool = True, seed: int = 0) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: dataset root is not a directory")
        self.clip_len, self.crop, self.resize, self.train = clip_len, crop, resize, split == "train"
        self.rng = np.random.default_rng(seed)
        if split_dir is not None:
            self.classes, entries = read_split(split_dir, split, fold)
        else:
            self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            entries = [
                (f"{cls}/{v.name}", i)
                for i, cls in enumerate(self.classes)
                for v in sorted((self.root / cls).iterdir())
                if is_video(v)
            ]
        self.samples: list[tuple[Path, int]] = []
        missing, corrupt = [], []
        for rel, label in entries:
            path = _resolve(self.root, rel)
            if path is None:
                missing.append(rel)
                continue
            if verify:
                try:
                    read_frames(path)
                except VideoReadError:
                    corrupt.append(rel)
                    continue
            self.samples.append((path, label))
        if missing or corrupt:
            warnings.warn(
                f"{self.root}: skipped {len(missing)} missing and {len(corrupt)} corrupt videos "
                f"(first: {(missing + corrupt)[0]})",
                stacklevel=2,
            )
        self.skipped = {"missing": missing, "corrupt": corrupt}
        if not self.samples:
            raise ValueError(f"{self.root}: no usable videos ({split} split)")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(len(self.samples)):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                frames = read_frames(path)
            except VideoReadError as exc:
                warnings.warn(f"skipping unreadable video: {exc}", stacklevel=2)
                continue
            clip = sample_clip(frames, self.clip_len, self.crop, self.resize, self.train,
                               self.rng)
            return clip, label
        raise VideoReadError(f"{self.root}: no readable video left")
