"""Official split files of UCF101 and HMDB51.

* UCF101 (``ucfTrainTestlist/``): ``classInd.txt`` (``"1 ApplyEyeMakeup"``),
  ``trainlist0K.txt`` (``"ApplyEyeMakeup/v_..._c01.avi 1"``) and ``testlist0K.txt``
  (``"ApplyEyeMakeup/v_..._c01.avi"``).
* HMDB51 (``testTrainMulti_7030_splits/``): one ``<class>_test_split<K>.txt`` per class, lines
  ``"video.avi T"`` with T = 1 training, 2 testing, 0 unused.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["read_split"]

_HMDB = re.compile(r"^(?P<cls>.+)_test_split(?P<fold>\d)\.txt$")


def _ucf101(split_dir: Path, split: str, fold: int) -> tuple[list[str], list[tuple[str, int]]]:
    classes: list[str] = []
    for line in (split_dir / "classInd.txt").read_text().splitlines():
        if line.strip():
            index, name = line.split()
            if int(index) != len(classes) + 1:
                raise ValueError(f"{split_dir / 'classInd.txt'}: indices must be 1, 2, ...")
            classes.append(name)
    lookup = {c: i for i, c in enumerate(classes)}
    list_file = split_dir / f"{'train' if split == 'train' else 'test'}list{fold:02d}.txt"
    entries = []
    for line in list_file.read_text().splitlines():
        if not line.strip():
            continue
        rel = line.split()[0]
        cls = rel.split("/")[0]
        if cls not in lookup:
            raise ValueError(f"{list_file}: class {cls!r} is not in classInd.txt")
        entries.append((rel, lookup[cls]))
    return classes, entries


def _hmdb51(split_dir: Path, split: str, fold: int) -> tuple[list[str], list[tuple[str, int]]]:
    files = {}
    for f in split_dir.iterdir():
        m = _HMDB.match(f.name)
        if m and int(m["fold"]) == fold:
            files[m["cls"]] = f
    classes = sorted(files)
    wanted = "1" if split == "train" else "2"
    entries = []
    for i, cls in enumerate(classes):
        for line in files[cls].read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == wanted:
                entries.append((f"{cls}/{parts[0]}", i))
    return classes, entries


def read_split(
    split_dir: str | Path, split: str = "train", fold: int = 1
) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes and ``(class/video, label)`` entries of one official split.

    The format is recognised from the files: ``classInd.txt`` means UCF101, files named
    ``<class>_test_split<K>.txt`` mean HMDB51.

    Args:
        split_dir: Folder holding the split files.
        split: ``"train"`` or ``"test"``.
        fold: Split number (1-3 for both datasets).
    """
    split_dir = Path(split_dir)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if (split_dir / "classInd.txt").exists():
        return _ucf101(split_dir, split, fold)
    if split_dir.is_dir() and any(_HMDB.match(f.name) for f in split_dir.iterdir()):
        return _hmdb51(split_dir, split, fold)
    raise ValueError(
        f"{split_dir}: no UCF101 (classInd.txt) or HMDB51 (*_test_split{fold}.txt) split files"
    )
