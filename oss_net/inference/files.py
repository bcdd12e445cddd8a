"""`predict_files`: a checkpoint applied to scans given as files or folders, flat label maps out.

    predict_files(["imagesTs"], "predictions", "best_model.pt")            # an nnU-Net imagesTs folder
    predict_files(["a_flair.nii.gz", "a_t1.nii.gz", ...], "out", "best.pt")  # one case's channel files

Inputs (`resolve_inputs`), each turned into cases with ids taken from the file names:
- NIfTI files named `<case>_XXXX.nii(.gz)` (nnU-Net): grouped by `<case>`, channels ordered by XXXX;
- other NIfTI files given together: the channels of one case, in the order given; its id is the first
  file's stem. A 4-D file (Decathlon) given alone holds as many channels as its last axis;
- a folder of `<case>_XXXX` files (an nnU-Net imagesTs folder): its cases, as above;
- a BraTS case folder (`<case>_{flair,t1,t1ce,t2}.nii.gz`): one case named after the folder;
- another folder of NIfTI files: one case per file; a folder of case folders: each of them.
Every case is checked against the checkpoint (channel count and, where known, channel names; all
channels on one grid, from the headers) before anything is written, and every problem is reported in
one error. Channels are never guessed: among several files each fills exactly one channel (a 4-D file
among them is refused), and a file whose name says it is a label (`_seg`, `label`, `mask`, ...) is
refused as an image. Each case is compared with the checkpoint's training data
(`oss_net.data.outliers`): far outside (spacing, modality, intensity range) is a warning in the log and
in the case's entry of `predictions.json`.

The output folder may not be, or lie inside, an input folder, and an existing file with an output's
name that this package did not write there (`oss_net.io.refuse_foreign_outputs`: e.g. `-o labelsTr`,
whose `<case>.nii.gz` are the user's labels) is never replaced unless `overwrite`; both are refused
before any work. Temporary files of interrupted writes of these outputs are removed.

Outputs, flat in the output folder (what nnU-Net's evaluation and MONAI pair with label files):
`<case>.nii.gz` (uint8 label map on the input's grid, with its affine and header; the class index for
a model of several classes; by `writers.input_grid_labels`), `<case>_probabilities.nii.gz` (float32,
input grid; classes on the 4th axis) with `save_probabilities`, and `<case>_prediction.<format>`
meshes with `mesh`: the `CaseWriter`'s "flat" layout; `predictions.json` lists each case's inputs, label
map and input warnings. Each file is written atomically and the label
map last, so `resume` (`--continue`) skips exactly the cases whose label map exists. Preprocessing
(`oss_net.data.load_case`), the predictor (default `PredictOptions`) and the writer are those of
`oss-net-infer`.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from oss_net.data import CaseFiles, DatasetError, load_case
from oss_net.data.channels import check_case_grids
from oss_net.data.dataset_info import BRATS_INFO, LITS_INFO
from oss_net.data.layouts.brats import BRATS_MODALITIES, brats_file_role, read_brats_case
from oss_net.data.nifti import open_nifti
from oss_net.data.outliers import input_outliers
from oss_net.geometry import preferred_affine
from oss_net.io import (
    OSSNetError, atomic_save_json, foreign_outputs, nifti_stem, prepare_output_folder, record_outputs,
    refuse_foreign_outputs, refuse_output_in_inputs, remove_stale_temporaries,
)
from oss_net.models import load_model

from .options import InferenceError, WriteOptions
from .outputs import flat_mask_path
from .predictor import DensePredictor, Predictor, make_predictor, select_device
from .writers import CaseWriter, flat_output_names

logger = logging.getLogger(__name__)

NNUNET_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$", re.IGNORECASE)
# A word of a file name that says the file is a label, not an image channel (`BraTS20_001_seg`, `labels-3`).
LABEL_WORDS = frozenset({"seg", "segm", "segmentation", "label", "labels", "labelmap", "mask", "gt", "groundtruth"})
RECORDS_FILE = "predictions.json"  # per case: its inputs, its label map and how far it is from training


def predict_files(
    inputs: Sequence[str | Path], output_dir: str | Path, checkpoint: str | Path, *, cpu: bool = False,
    save_probabilities: bool = False, mesh: bool = False, resume: bool = False, overwrite: bool = False,
    prefer: str | None = None,
) -> list[Path]:
    """Predict every case of `inputs` with the model in `checkpoint`; returns the label map paths, one per case.

    overwrite: replace files with an output's name that this package did not write; prefer: sform | qform, the
    affine of an input whose two disagree (`oss_net.geometry.header_affine`).
    """
    with preferred_affine(prefer):
        device = select_device(cpu)
        predictor = make_predictor(load_model(checkpoint, map_location=device), device=device)
        writer = CaseWriter(predictor, WriteOptions(layout="flat", probabilities=save_probabilities, meshes=mesh,
                                                    overlay=False))
        cases = resolve_inputs(inputs, predictor.config)
        output = Path(output_dir)
        names = {files.case_id: flat_output_names(files.case_id, writer.options) for files in cases}
        claim_output_folder(output, cases, inputs, [RECORDS_FILE, *(n for case in names.values() for n in case)],
                            overwrite)
        prepare_output_folder(output)
        removed = remove_stale_temporaries(output, [RECORDS_FILE, *(n for case in names.values() for n in case)])
        if removed:
            logger.info("%s: removed %d temporary file(s) of interrupted writes", output, len(removed))
        records = read_records(output)
        progress = tqdm(cases, desc="predict", unit="case", disable=None)
        for files in progress:
            progress.set_postfix_str(files.case_id)
            if resume and flat_mask_path(output, files.case_id).is_file():
                logger.info("%s: label map exists, skipped (--continue)", files.case_id)
                continue
            records[files.case_id] = predict_and_write(files, predictor, writer, output)
            record_outputs(output, [name for name in names[files.case_id] if (output / name).exists()])
            atomic_save_json({"cases": list(records.values())}, output / RECORDS_FILE)
            record_outputs(output, [RECORDS_FILE])
    return [flat_mask_path(output, files.case_id) for files in cases]


def claim_output_folder(output: Path, cases: Sequence[CaseFiles], inputs: Sequence[str | Path], names: Sequence[str],
                        overwrite: bool) -> None:
    """Before any work: the output folder is no input folder (nor inside one), and holds no file with an output's
    name that this package did not write (unless `overwrite`)."""
    folders = [Path(p) for p in inputs if Path(p).is_dir()]
    folders += [path.parent for files in cases for path in files.images]
    refuse_output_in_inputs(output, folders, "-o")
    refuse_foreign_outputs(output, names, overwrite)


def read_records(output: Path) -> dict[str, dict[str, Any]]:
    """The cases of an earlier run's `predictions.json` that this package wrote (kept by --continue), by case id."""
    if foreign_outputs(output, [RECORDS_FILE]) or not (output / RECORDS_FILE).is_file():
        return {}
    try:
        cases = json.loads((output / RECORDS_FILE).read_text())["cases"]
        return {str(record["case"]): record for record in cases}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def predict_and_write(files: CaseFiles, predictor: Predictor | DensePredictor, writer: CaseWriter,
                      output_dir: Path) -> dict[str, Any]:
    """Load, predict and write one case (the writer's flat layout: the label map last marks it finished); returns
    its entry of predictions.json, with how far the case is from the training data."""
    case = load_case(files, predictor.config, with_border=False)
    outliers = input_outliers(case.input_ranges, case.meta, predictor.config)
    for outlier in outliers:
        logger.warning("%s: far from the training data: %s", files.case_id, outlier)
    writer.write(output_dir, files, case, predictor.predict_case(case))
    if case.meta.resampled_to_fit:
        logger.warning("%s: the scan is larger than the model grid and was resampled to fit (not cropped)", files.case_id)
    return {"case": files.case_id, "inputs": [str(path) for path in dict.fromkeys(files.images)],
            "label_map": flat_mask_path(output_dir, files.case_id).name, "input_warnings": outliers}


# ---------------------------------------------------------------- inputs -> cases


def resolve_inputs(inputs: Sequence[str | Path], config: Any) -> list[CaseFiles]:
    """The cases of `inputs` (see the module docstring), each checked against `config`; one error for all problems."""
    problems: list[str] = []
    if not inputs:
        raise InferenceError("no input given (-i FILE [FILE ...] or -i FOLDER)")
    paths = [Path(p) for p in inputs]
    cases: list[CaseFiles] = []
    files = []
    for path in paths:
        if path.is_dir():
            cases += folder_cases(path, config, problems)
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
    """nnU-Net-named files grouped by case; any other files together are the channels of one case."""
    not_nifti = [p for p in paths if nifti_stem(p) is None]
    problems += [f"{p}: not a NIfTI file; give .nii or .nii.gz files" for p in not_nifti]
    paths = [p for p in paths if p not in not_nifti]
    if not paths:
        return []
    if all(NNUNET_CHANNEL_FILE.match(p.name) for p in paths):
        return nnunet_cases(paths, config, problems)
    return [CaseFiles(nifti_stem(paths[0]), case_images(paths, problems), None, None)]


def folder_cases(folder: Path, config: Any, problems: list[str]) -> list[CaseFiles]:
    """The cases of one folder: nnU-Net files, a BraTS case, one case per NIfTI file, or case subfolders."""
    entries = [e for e in sorted(folder.iterdir()) if not e.name.startswith(".")]
    niftis = [e for e in entries if e.is_file() and nifti_stem(e) is not None]
    if not niftis:
        subfolders = [e for e in entries if e.is_dir()]
        if not subfolders:
            problems.append(f"{folder}: no NIfTI files (.nii, .nii.gz) in this folder; give the folder holding the scans")
        return [case for sub in subfolders for case in folder_cases(sub, config, problems)]
    if all(NNUNET_CHANNEL_FILE.match(p.name) for p in niftis):
        return nnunet_cases(niftis, config, problems)
    if any(brats_file_role(p.name) in BRATS_MODALITIES for p in niftis):
        return [case for case in [brats_case(folder, config, problems)] if case is not None]
    odd = [p.name for p in niftis if NNUNET_CHANNEL_FILE.match(p.name)]
    if odd:
        problems.append(f"{folder}: mixes nnU-Net channel files ({odd[0]}, ...) with other NIfTI files; "
                        "keep one kind per folder")
        return []
    return [CaseFiles(nifti_stem(p), case_images([p], problems), None, None) for p in niftis]


def nnunet_cases(paths: Sequence[Path], config: Any, problems: list[str]) -> list[CaseFiles]:
    """`<case>_XXXX` files grouped by case, channels ordered by XXXX, which must run 0000, 0001, ... without gaps."""
    groups: dict[str, dict[int, Path]] = {}
    for path in paths:
        match = NNUNET_CHANNEL_FILE.match(path.name)
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
    words = re.split(r"[^a-z0-9]+", (nifti_stem(path) or path.name).casefold())
    return not LABEL_WORDS.isdisjoint(words)


def channels_in_file(path: Path, problems: list[str]) -> int:
    """Channels of one NIfTI file from its (checked) header: the last axis of a 4-D file, else 1 (0 when unusable)."""
    try:
        shape = open_nifti(path).image.shape
    except DatasetError as error:
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
        stem = (nifti_stem(path) or path.name).casefold()
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
                            f"of {first[case.case_id].images[0]}; both would write {case.case_id}.nii.gz")
        first.setdefault(case.case_id, case)
    return problems
