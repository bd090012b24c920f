"""Read a video as uint8 frames ``[T, H, W, 3]`` from the formats found in dataset folders.

* a directory of frame images (``.jpg``/``.jpeg``/``.png``/``.bmp``), sorted by name -- the
  usual layout after extracting UCF101 / HMDB51 frames;
* ``.gif`` (multi-frame, via Pillow) and ``.npy`` (a saved ``[T, H, W, 3]`` uint8 array);
* ``.avi``/``.mp4``/``.mkv``/``.webm`` through PyAV or OpenCV when one is installed (neither
  is a dependency of RT3D: extract frames instead, e.g. ``ffmpeg -i v.avi v/%05d.jpg``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "VideoReadError", "is_video", "read_frames"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".gif", ".npy")


class VideoReadError(RuntimeError):
    """A video that is missing, empty or cannot be decoded."""


def is_video(path: Path) -> bool:
    """Whether ``path`` looks like one video: a known video file or a folder of frames."""
    if path.is_dir():
        return any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
    return path.suffix.lower() in VIDEO_SUFFIXES


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)


def _read_images(path: Path) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    frames = []
    for f in files:
        with Image.open(f) as img:
            frames.append(np.asarray(img.convert("RGB")))
    return frames


def _read_gif(path: Path) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as img:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)]


def _read_container(path: Path) -> list[np.ndarray]:
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    try:
        import cv2
    except ImportError:
        raise VideoReadError(
            f"{path}: decoding {path.suffix} needs PyAV or OpenCV (pip install av); "
            "or extract the frames to a folder of images"
        ) from None
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])  # BGR -> RGB
    cap.release()
    return frames


def read_frames(path: str | Path) -> np.ndarray:
    """All frames of a video as uint8 ``[T, H, W, 3]``.

    Raises:
        VideoReadError: Missing, unreadable, empty or inconsistently sized video.
    """
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"{path}: no such file or directory")
    try:
        if path.is_dir():
            frames = _read_images(path)
        elif path.suffix.lower() == ".gif":
            frames = _read_gif(path)
        elif path.suffix.lower() == ".npy":
            frames = list(np.load(path, allow_pickle=False))
        else:
            frames = _read_container(path)
        frames = [_rgb(np.asarray(f)) for f in frames]
        if not frames:
            raise VideoReadError(f"{path}: no frames")
        return np.stack(frames)
    except VideoReadError:
        raise
    except Exception as exc:  # any decoder error means a corrupt file
        raise VideoReadError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from exc
