"""The types every dataset layout shares: the files of one case, what a scan of a folder finds, a layout.

This module imports none of the layout scanners (`oss_net.data.layouts`), so the readers of a case
(`channels`, `borders`, `cases`) and the scanners all build on it without an import circle.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from oss_net.data.dataset_info import DatasetInfo
from oss_net.datasets import DatasetError


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case: images in channel order, the label and the border map when present."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None
    border: Path | None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset; `case_id` is "*" when it concerns no single case."""

    case_id: str
    message: str


@dataclass(frozen=True)
class LayoutScan:
    """Everything found in a dataset folder: its description, labelled and unlabelled cases, and problems.

    A case with a problem is left out of `training`/`test`, so each problem is reported once.
    """

    info: DatasetInfo
    training: tuple[CaseFiles, ...]
    test: tuple[CaseFiles, ...]
    problems: tuple[Problem, ...]

    def raise_problems(self, root: Path) -> None:
        """One DatasetError listing every problem, if any."""
        if self.problems:
            lines = "\n".join(problem.message for problem in self.problems)
            raise DatasetError(f"{root}: {len(self.problems)} problem(s):\n{lines}")


# discover(root, split, split_file, border_dir, seed, fold) -> the cases of one split, sorted by case id
Discover = Callable[[Path, str, str | Path | None, str | Path | None, int, int], list[CaseFiles]]


@dataclass(frozen=True)
class Layout:
    """One dataset layout, as the registry `oss_net.data.layouts.LAYOUTS` holds it.

    Attributes:
        name: the dataset's name in `oss_net.datasets.DATASETS`.
        detect: whether a folder has this layout (`detect_dataset` asks the layouts in registry order).
        discover: the cases of one split (see `Discover`); every problem of the folder raises one DatasetError.
        info: the dataset's channels, modalities and labels (`DatasetInfo`), its labelled cases counted.
        scan: every case and every problem of a folder without raising for the problems
            (root, border_dir, check_grids) -> LayoutScan; None for layouts read case by case (BraTS, LiTS).
        read_case: one case given by its own folder or file (root, border_dir) -> CaseFiles; None where a
            case cannot stand alone.
    """

    name: str
    detect: Callable[[Path], bool]
    discover: Discover
    info: Callable[[Path], DatasetInfo]
    scan: Callable[[Path, str | Path | None, bool], LayoutScan] | None = None
    read_case: Callable[[Path, str | Path | None], CaseFiles] | None = None
