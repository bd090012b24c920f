"""Video folders (UCF101 / HMDB51 layouts, splits, corrupt files), clip sampling, and the
generated moving-shapes dataset -- all on tiny clips written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rt3d_prune.data import MovingShapes, VideoFolder, VideoReadError, read_frames, sample_clip
from rt3d_prune.data.synthetic import render_clip


def _frames(t=6, h=20, w=24, value=0):
    rng = np.random.default_rng(value)
    return rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)


def _write_frame_dir(path, frames):
    path.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(path / f"{i + 1:05d}.png")


def _write_gif(path, frames):
    path.parent.mkdir(parents=True, exist_ok=True)
    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:])


def test_readers(tmp_path):
    frames = _frames()
    _write_frame_dir(tmp_path / "a", frames)
    assert np.array_equal(read_frames(tmp_path / "a"), frames)  # png is lossless
    np.save(tmp_path / "b.npy", frames)
    assert np.array_equal(read_frames(tmp_path / "b.npy"), frames)
    _write_gif(tmp_path / "c.gif", frames)
    assert read_frames(tmp_path / "c.gif").shape == frames.shape
    (tmp_path / "d.gif").write_bytes(b"GIF89a not really")
    with pytest.raises(VideoReadError, match=r"d\.gif"):
        read_frames(tmp_path / "d.gif")
    with pytest.raises(VideoReadError, match="no such"):
        read_frames(tmp_path / "missing.npy")


def test_sample_clip_shapes_and_determinism():
    frames = _frames(t=5, h=30, w=40)
    clip = sample_clip(frames, clip_len=8, crop=16, resize=20, train=False)
    assert clip.shape == (3, 8, 16, 16) and clip.dtype == torch.float32
    assert torch.equal(clip, sample_clip(frames, 8, 16, 20, train=False))  # central: fixed
    a = sample_clip(frames, 8, 16, 20, True, np.random.default_rng(1))
    b = sample_clip(frames, 8, 16, 20, True, np.random.default_rng(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="crop"):
        sample_clip(frames, 8, 32, 20)


def _ucf_tree(tmp_path):
    root, splits = tmp_path / "UCF101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    train, test = [], []
    for c, cls in enumerate(("ApplyEyeMakeup", "Archery")):
        for g in range(3):
            name = f"v_{cls}_g0{g + 1}_c01"
            # frames extracted to folders named after the .avi
            _write_frame_dir(root / cls / name, _frames(value=10 * c + g))
            (train if g < 2 else test).append(f"{cls}/{name}.avi")
    (splits / "trainlist01.txt").write_text("".join(f"{p} {1 + ('Arch' in p)}\n" for p in train))
    (splits / "testlist01.txt").write_text("".join(f"{p}\n" for p in test))
    return root, splits


def test_ucf101_splits(tmp_path):
    root, splits = _ucf_tree(tmp_path)
    train = VideoFolder(root, splits, "train", clip_len=4, crop=16, resize=18)
    test = VideoFolder(root, splits, "test", clip_len=4, crop=16, resize=18)
    assert (len(train), len(test)) == (4, 2)
    assert train.classes == ["ApplyEyeMakeup", "Archery"]
    assert sorted(label for _, label in train.samples) == [0, 0, 1, 1]
    clip, label = test[1]
    assert clip.shape == (3, 4, 16, 16) and label == 1


def test_missing_and_corrupt_videos_are_counted_and_skipped(tmp_path):
    root, splits = _ucf_tree(tmp_path)
    with open(splits / "trainlist01.txt", "a") as f:
        f.write("Archery/v_Archery_g09_c01.avi 2\nArchery/v_Archery_g10_c01.avi 2\n")
    (root / "Archery" / "v_Archery_g10_c01.avi").write_bytes(b"\x00" * 10)  # corrupt
    with pytest.warns(UserWarning, match="skipped 1 missing and 1 corrupt"):
        ds = VideoFolder(root, splits, "train", clip_len=4, crop=16, resize=18)
    assert len(ds) == 4


def test_hmdb51_layout_and_plain_folders(tmp_path):
    root, splits = tmp_path / "hmdb", tmp_path / "splits"
    splits.mkdir()
    for c, cls in enumerate(("brush_hair", "cartwheel")):
        lines = []
        (root / cls).mkdir(parents=True)
        for g in range(3):
            np.save(root / cls / f"{cls}_{g}.npy", _frames(value=g + c))
            lines.append(f"{cls}_{g}.avi {1 if g < 2 else 2}")
        (splits / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
    train = VideoFolder(root, splits, "train", clip_len=4, crop=16, resize=18)
    assert len(train) == 4 and train.classes == ["brush_hair", "cartwheel"]
    everything = VideoFolder(root, clip_len=4, crop=16, resize=18)  # no split files
    assert len(everything) == 6


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "cls").mkdir()
    with pytest.raises(ValueError, match="no usable videos"):
        VideoFolder(tmp_path)
    (tmp_path / "cls" / "bad.npy").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="1 corrupt"), pytest.raises(ValueError):
        VideoFolder(tmp_path)


def test_moving_shapes():
    a, b = MovingShapes(24, seed=3), MovingShapes(24, seed=3)
    assert torch.equal(a.clips, b.clips)  # deterministic
    assert not torch.equal(a.clips, MovingShapes(24, seed=4).clips)
    clip, label = a[5]
    assert clip.shape == (3, 16, 32, 32) and label == 5
    assert sorted(set(a.labels.tolist())) == list(range(12))



@pytest.mark.parametrize(("label", "axis", "sign"), [(0, 1, 1), (5, 1, -1), (10, 0, 1), (7, 0, -1)])
def test_moving_shapes_motion(label, axis, sign):
    # without noise and distractors the target is the only pixel with a channel near 1
    rng = np.random.default_rng(0)
    clip = render_clip(label, rng, noise=0.0, distractors=0).astype(np.float32) / 255
    mask = clip.max(axis=3) > 0.7  # [T, H, W]
    coords = [np.argwhere(m).mean(axis=0)[axis] for m in mask]
    assert sign * (coords[-1] - coords[0]) > 5  # moved several pixels the right way


def _write_avi(path, frames):
    """An MPEG-4 .avi as UCF101 ships them, written with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_avi_videos_in_ucf101_layout(tmp_path):
    pytest.importorskip("av", reason="decoding .avi needs PyAV: pip install .[video]")
    smooth = np.repeat(np.linspace(40, 200, 24, dtype=np.uint8)[None, None, :, None],
                       20, axis=1).repeat(3, axis=3)
    frames = np.repeat(smooth, 18, axis=0)  # 18 frames of a smooth ramp: codec-friendly
    _write_avi(tmp_path / "v.avi", frames)
    decoded = read_frames(tmp_path / "v.avi")
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 8  # lossy, but the same picture
    for cls in ("Archery", "Basketball"):
        for g in (1, 2):
            _write_avi(tmp_path / "ucf" / cls / f"v_{cls}_g{g:02d}_c01.avi", frames)
    data = VideoFolder(tmp_path / "ucf", split="test", clip_len=16, crop=16, resize=18)
    assert len(data) == 4
    clip, label = data[0]
    assert tuple(clip.shape) == (3, 16, 16, 16) and label in (0, 1)
