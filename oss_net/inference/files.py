"""Inputs given as files or folders → the cases they hold, each checked against the checkpoint.

    resolve_inputs(["imagesTs"], config)                       # an nnU-Net imagesTs folder
    resolve_inputs(["a_flair.nii.gz", "a_t1.nii.gz", ...], config)   # one case's channel files
    resolve_inputs(["dicom_folder"], config, series_uid="1.2...")    # one series of a DICOM folder

Inputs, each turned into cases with ids taken from the file names (image files: `.nii`, `.nii.gz`, `.nrrd`,
`.nhdr`, `.mha`, `.mhd`, `oss_net.io.IMAGE_SUFFIXES`):
- image files named `<case>_XXXX<ext>` (nnU-Net): grouped by `<case>`, channels ordered by XXXX;
- other image files given together: the channels of one case, in the order given; its id is the first
  file's stem. A 4-D file (Decathlon), or a file whose pixels hold several components, given alone holds as
  many channels as its last axis;
- a folder of `<case>_XXXX` files (an nnU-Net imagesTs folder): its cases, as above;
- a BraTS case folder (`<case>_{flair,t1,t1ce,t2}.nii.gz`): one case named after the folder;
- a DICOM series folder (GDCM's series reader): one case named after the folder; a folder holding several
  series needs `series_uid` (the error lists them), and a DICOM file stands for its series;
- another folder of image files: one case per file; a folder of case folders: each of them.
Every case is checked against the checkpoint (channel count and, where known, channel names; all
channels on one grid, from the headers) before anything is written, and every problem is reported in
one error. Channels are never guessed: among several files each fills exactly one channel (a 4-D file
among them is refused), and a file whose name says it is a label (`_seg`, `label`, `mask`, ...) is
refused as an image. `oss_net.inference.segmenter` predicts them (`oss-net-predict`, `Segmenter.segment_many`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from oss_net.data import CaseFiles, DatasetError
from oss_net.data.channels import check_case_grids
from oss_net.data.dataset_info import BRATS_INFO, LITS_INFO
from oss_net.data.formats import describe_series, dicom_series, is_dicom_file
from oss_net.data.layouts.brats import BRATS_MODALITIES, brats_file_role, read_brats_case
from oss_net.data.nifti import open_image
from oss_net.io import IMAGE_SUFFIXES, OSSNetError, image_stem

from .options import InferenceError

NNUNET_CHANNEL_STEM = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
# A word of a file name that says the file is a label, not an image channel (`BraTS20_001_seg`, `labels-3`).
LABEL_WORDS = frozenset({"seg", "segm", "segmentation", "label", "labels", "labelmap", "mask", "gt", "groundtruth"})


def nnunet_channel(path: Path) -> re.Match | None:
    """The (case, channel) match of an nnU-Net channel file name `<case>_XXXX<ext>`, or None."""
    stem = image_stem(path)
    return None if stem is None else NNUNET_CHANNEL_STEM.match(stem)


# ---------------------------------------------------------------- inputs -> cases


def resolve_inputs(inputs: Sequence[str | Path], config: Any, series_uid: str | None = None) -> list[CaseFiles]:
    """The cases of `inputs` (see the module docstring), each checked against `config`; one error for all problems.

    `series_uid`: the DICOM series to read from a folder holding several."""
    problems: list[str] = []
    if not inputs:
        raise InferenceError("no input given (-i FILE [FILE ...] or -i FOLDER)")
    paths = [Path(p) for p in inputs]
    cases: list[CaseFiles] = []
    files = []
    for path in paths:
        if path.is_dir():
            cases += folder_cases(path, config, problems, series_uid)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder (check the path)")
    cases += file_cases(files, config, problems)
    problems += duplicate_problems(cases)
    for case in cases:
        problems += case_problems(case, config)
    if problems:
        raise InferenceError(f"{len(problems)} problem(s) with the input, nothing written: " + "; ".join(problems))
    return cases


def file_cases(paths: Sequence[Path], config: Any, problems: list[str]) -> list[CaseFiles]:
    """nnU-Net-named files grouped by case; a DICOM file is its series' case; any other image files together are
    the channels of one case."""
    dicom = [p for p in paths if image_stem(p) is None and is_dicom_file(p)]
    not_images = [p for p in paths if image_stem(p) is None and p not in dicom]
    problems += [f"{p}: not an image file; give {', '.join(IMAGE_SUFFIXES)} files, or a DICOM series" for p in not_images]
    paths = [p for p in paths if image_stem(p) is not None]
    cases = [CaseFiles(p.parent.name, case_images([p], problems), None, None) for p in dicom]
    if not paths:
        return cases
    if all(nnunet_channel(p) for p in paths):
        return cases + nnunet_cases(paths, config, problems)
    return cases + [CaseFiles(image_stem(paths[0]), case_images(paths, problems), None, None)]


def folder_cases(folder: Path, config: Any, problems: list[str], series_uid: str | None = None) -> list[CaseFiles]:
    """The cases of one folder: nnU-Net files, a BraTS case, one case per image file, a DICOM series, or case
    subfolders."""
    entries = [e for e in sorted(folder.iterdir()) if not e.name.startswith(".")]
    images = [e for e in entries if e.is_file() and image_stem(e) is not None]
    if not images:
        dicom = dicom_case(folder, series_uid, problems) if any(e.is_file() for e in entries) else None
        if dicom is not None:
            return [dicom]
        subfolders = [e for e in entries if e.is_dir()]
        if not subfolders and not any(e.is_file() and is_dicom_file(e) for e in entries):
            problems.append(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) and no DICOM series in this "
                            "folder; give the folder holding the scans")
        return [case for sub in subfolders for case in folder_cases(sub, config, problems, series_uid)]
    if all(nnunet_channel(p) for p in images):
        return nnunet_cases(images, config, problems)
    if any(brats_file_role(p.name) in BRATS_MODALITIES for p in images):
        return [case for case in [brats_case(folder, config, problems)] if case is not None]
    odd = [p.name for p in images if nnunet_channel(p)]
    if odd:
        problems.append(f"{folder}: mixes nnU-Net channel files ({odd[0]}, ...) with other image files; "
                        "keep one kind per folder")
        return []
    return [CaseFiles(image_stem(p), case_images([p], problems), None, None) for p in images]


def dicom_case(folder: Path, series_uid: str | None, problems: list[str]) -> CaseFiles | None:
    """The case of a DICOM series folder (named after the folder), or None when it holds no series. A folder of
    several series needs `series_uid`; the chosen series is given by its first slice, which stands for it."""
    try:
        series = dicom_series(folder)
    except DatasetError as error:
        problems.append(str(error))
        return None
    if not series:
        return None
    if series_uid is None and len(series) == 1:
        return CaseFiles(folder.name, (folder,), None, None)
    if series_uid is None or series_uid not in series:
        what = "no DICOM series " + series_uid if series_uid else f"{len(series)} DICOM series"
        problems.append(f"{folder}: {what} (choose one with --series_uid UID): {describe_series(folder, series)}")
        return None
    return CaseFiles(folder.name, (series[series_uid][0],), None, None)


def nnunet_cases(paths: Sequence[Path], config: Any, problems: list[str]) -> list[CaseFiles]:
    """`<case>_XXXX` files grouped by case, channels ordered by XXXX, which must run 0000, 0001, ... without gaps."""
    groups: dict[str, dict[int, Path]] = {}
    for path in paths:
        match = nnunet_channel(path)
        groups.setdefault(match.group("case"), {})[int(match.group("channel"))] = path
    cases = []
    names = expected_channel_names(config)
    for case_id, channels in sorted(groups.items()):
        missing = [i for i in range(max(channels) + 1) if i not in channels]
        if missing:
            what = ", ".join(f"{case_id}_{i:04d}" + (f" ({names[i]})" if names and i < len(names) else "") for i in missing)
            problems.append(f"{channels[max(channels)]}: case {case_id} has no channel file {what}")
            continue
        cases.append(CaseFiles(case_id, case_images([channels[i] for i in sorted(channels)], problems), None, None))
    return cases


def brats_case(folder: Path, config: Any, problems: list[str]) -> CaseFiles | None:
    """A BraTS case folder, its modalities in the checkpoint's channel order (flair, t1, t1ce, t2 for BraTS)."""
    try:
        found = read_brats_case(folder)
    except DatasetError as error:
        problems.append(f"{error} (give a complete case folder, or its files with -i)")
        return None
    by_role = dict(zip(BRATS_MODALITIES, found.images))
    names = [name.casefold() for name in expected_channel_names(config) or BRATS_MODALITIES]
    if not set(names) <= set(by_role):
        problems.append(f"{folder}: a BraTS case folder holds {', '.join(BRATS_MODALITIES)}, but the checkpoint expects "
                        f"channels {', '.join(expected_channel_names(config) or ())}; give its files with -i in that order")
        return None
    return CaseFiles(found.case_id, tuple(by_role[name] for name in names), None, None)


def case_images(paths: Sequence[Path], problems: list[str]) -> tuple[Path, ...]:
    """`CaseFiles.images` for these files: a 4-D file given alone repeated once per channel (`oss_net.data.channels`).

    Channels are never guessed: among several files each must be one 3-D channel, and no file may be named as a
    label (`says_label`).
    """
    seen = set()
    images: list[Path] = []
    for path in paths:
        if path in seen:
            problems.append(f"{path}: given twice")
            continue
        seen.add(path)
        if says_label(path):
            problems.append(f"{path}: the file name says it is a label or segmentation, not an image channel; "
                            "give the image files only")
            continue
        channels = channels_in_file(path, problems)
        if channels > 1 and len(paths) > 1:
            problems.append(f"{path}: a 4-D file of {channels} channels among {len(paths)} channel files; each file "
                            "given with others fills exactly one channel (give the 4-D file alone, or one 3-D file "
                            "per channel)")
            continue
        images += [path] * channels
    return tuple(images)


def says_label(path: Path) -> bool:
    """True when a word of the file name (split at anything but letters and digits) is one of LABEL_WORDS."""
    words = re.split(r"[^a-z0-9]+", (image_stem(path) or path.name).casefold())
    return not LABEL_WORDS.isdisjoint(words)


def channels_in_file(path: Path, problems: list[str]) -> int:
    """Channels of one image file from its header (`open_image`, every check): the last axis of a 4-D file (or a
    file of several components per pixel), else 1 (0 when unreadable)."""
    try:
        shape = open_image(path).shape
    except OSSNetError as error:
        problems.append(str(error))
        return 0
    return int(shape[3]) if len(shape) == 4 and shape[3] > 1 else 1


def expected_channel_names(config: Any) -> tuple[str, ...] | None:
    """The checkpoint's channel names in order: its fingerprint's, BraTS's and LiTS's own, else None."""
    fingerprint = getattr(config, "fingerprint", None)
    if fingerprint is not None:
        return tuple(fingerprint.channel_names)
    info = {"brats": BRATS_INFO, "lits": LITS_INFO}.get(str(config.dataset))
    return info.channel_names if info is not None and info.num_channels == int(config.in_channels) else None


def case_problems(case: CaseFiles, config: Any) -> list[str]:
    """Channel count, channel names given in another order, and channels on different grids (headers only)."""
    if not case.images:
        return []
    expected = int(config.in_channels)
    names = expected_channel_names(config)
    described = f"{expected} channel(s)" + (f" ({', '.join(names)})" if names else "")
    if len(case.images) != expected:
        given = ", ".join(str(p) for p in dict.fromkeys(case.images))
        return [f"{given}: case {case.case_id} has {len(case.images)} channel(s) but the checkpoint expects {described}; "
                f"give them in that order (-i a.nii.gz b.nii.gz ... or <case>_0000.nii.gz, <case>_0001.nii.gz, ...)"]
    problems = misordered_channels(case, names) if names else []
    try:
        check_case_grids(case)
    except OSSNetError as error:
        problems.append(str(error))
    return problems


def misordered_channels(case: CaseFiles, names: Sequence[str]) -> list[str]:
    """A file whose name ends in another channel's name (`..._t1.nii.gz` given as FLAIR) is given out of order."""
    lookup = {name.casefold(): index for index, name in enumerate(names)}
    problems = []
    for index, path in enumerate(case.images):
        stem = (image_stem(path) or path.name).casefold()
        claimed = next((lookup[n] for n in sorted(lookup, key=len, reverse=True)
                        if stem == n or stem.endswith(f"_{n}") or stem.endswith(f"-{n}")), None)
        if claimed is not None and claimed != index and len(set(case.images)) == len(case.images):
            problems.append(f"{path}: looks like channel {names[claimed]} but is given as channel {index + 1} "
                            f"({names[index]}); the checkpoint expects the order {', '.join(names)}")
    return problems


def duplicate_problems(cases: Sequence[CaseFiles]) -> list[str]:
    """Two inputs giving the same case id would write the same output file."""
    first: dict[str, CaseFiles] = {}
    problems = []
    for case in cases:
        if case.case_id in first:
            problems.append(f"{case.images[0] if case.images else case.case_id}: case id {case.case_id!r} is also the id "
                            f"of {first[case.case_id].images[0]}; both would write the output files of {case.case_id}")
        first.setdefault(case.case_id, case)
    return problems
