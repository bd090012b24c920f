"""Video data: UCF101/HMDB51 folders with official splits, and a generated dataset."""

from .clips import sample_clip
from .folder import VideoFolder
from .readers import VideoReadError, read_frames
from .splits import read_split
from .synthetic import MovingShapes

__all__ = ["MovingShapes", "VideoFolder", "VideoReadError", "read_frames", "read_split",
           "sample_clip"]
