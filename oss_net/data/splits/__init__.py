"""The original's fixed dataset splits, shipped as package data.

BraTS 2020: the original trained on a fixed list of 324 cases and validated on the other 45
(docs/reference.md §6.1). `original_split` gives that assignment whenever every case of the list
is present, so a full BraTS 2020 training set is split exactly as the paper's; a dataset missing any
of them (a subset, the synthetic demo data) keeps the seeded split. LiTS has no such list: the
original's TrainingData/TestData folders are its split.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Iterable

ORIGINAL_SPLIT_FILES = {"brats": "brats2020_original.txt"}


def original_split_file(dataset: str) -> Path | None:
    """The shipped split file of `dataset`'s original split, or None when the original had none (LiTS)."""
    name = ORIGINAL_SPLIT_FILES.get(dataset)
    return None if name is None else Path(str(resources.files(__name__).joinpath(name)))


@functools.cache
def listed_split(dataset: str) -> dict[str, str]:
    """{case_id: "train" | "val"} of the original's split of `dataset` ({} when there is none)."""
    from oss_net.data.layout import read_split_file  # layout asks this module for the default split

    path = original_split_file(dataset)
    if path is None:
        return {}
    lines = (line.split("#", 1)[0].split() for line in path.read_text().splitlines())
    return read_split_file(path, [tokens[0] for tokens in lines if tokens])


def original_split(dataset: str, case_ids: Iterable[str]) -> dict[str, str] | None:
    """The original's assignment of `case_ids` when every case of its list is among them, else None.

    Cases the list does not name (a larger dataset) train, so the validation set stays the original's.
    """
    listed = listed_split(dataset)
    ids = list(case_ids)
    if not listed or not set(listed) <= set(ids):
        return None
    return {case_id: listed.get(case_id, "train") for case_id in ids}
