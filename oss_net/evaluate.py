"""`oss-net-evaluate PRED_DIR LABEL_DIR`: score a folder of predictions against a folder of labels.

    oss-net-evaluate inference_output Dataset027_ACDC/labelsTr -o scores   # every label, named by dataset.json
    oss-net-evaluate out/ data/MICCAI_BraTS2020_TrainingData --regions WT --nsd surfel
    python -m oss_net.evaluate preds labels --labels 1 2 --tolerance_mm 2

Files are paired by case id, nnU-Net style: `<case><ext>` in either folder, any image format
(`.nii.gz`, `.nii`, `.nrrd`, `.nhdr`, `.mha`, `.mhd`; read through `oss_net.data.nifti`, with every header
check); a folder may instead hold one sub-folder per case, as `oss-net-infer` writes
(`<case>/<case>_mask<ext>`) and BraTS ships its labels (`<case>/<case>_seg.nii.gz`). Each prediction must lie
on its label's grid (same shape and affine); a prediction at another spacing (`--output_spacing`) is refused
with the command that resamples its label onto it (`python -m oss_net.resample_label`). Scored per case and
per structure: by default every label of the
dataset the labels belong to, by its name (a dataset.json in LABEL_DIR or its parent, or a known layout:
FLARE21, BraTS, LiTS; a dataset.json's regions are scored as regions), else every value found in the
label files as `label_<value>`; `--labels` narrows that to some values, `--foreground` scores every
non-zero value as one structure and `--regions` the BraTS regions WT/TC/ET. The metrics are those of
`oss_net.metrics` (Dice, IoU, HD95 in mm, NSD at a tolerance, volumes in ml). Written to OUT:
`summary.json`, `summary.csv` (per-case rows, then mean / median / undefined rows per structure) and
one PNG of per-case box plots per metric. A label without a prediction is counted and listed.

OUT may not be (or lie inside) PRED_DIR or LABEL_DIR, and a file there with one of these names that this
package did not write is never replaced without `--overwrite`. Scoring a folder against itself is a
warning (every score is perfect by construction). What the metrics warn about (an empty mask makes HD95
undefined) is said once per case in words, never as a library's raw warning line.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from oss_net.cli_errors import add_verbose_flag, run_command
from oss_net.data.dataset_info import BRATS_INFO, FLARE_INFO, LITS_INFO
from oss_net.data.layouts import detect_dataset
from oss_net.data.layouts.msd import read_msd_info
from oss_net.data.layouts.nnunet import read_nnunet_info
from oss_net.data.nifti import LABEL_VALUES, read_header, read_label_map
from oss_net.datasets import DatasetError
from oss_net.io import (
    OSSNetError, atomic_save_json, atomic_write, check_output_folder, image_stem, image_suffix, record_outputs,
    refuse_foreign_outputs, refuse_output_in_inputs,
)
from oss_net.labels import BRATS_REGIONS
from oss_net.metrics import (
    METRIC_KEYS,
    NSD_DEFINITIONS,
    NSD_TOLERANCE_MM,
    VOLUME_KEYS,
    brats_regions,
    evaluate_case,
    spacing_from_affine,
    volumes_ml,
)

SCORES = METRIC_KEYS + VOLUME_KEYS
STATISTICS = ("mean", "median", "undefined")  # undefined: how many cases have NaN (e.g. HD95, one mask empty)
CASE_FILE_SUFFIXES = ("_mask", "_seg", "_segm")  # inside a case folder: our prediction, BraTS labels
AFFINE_TOLERANCE_MM = 1e-3
OUTPUT_FILES = ("summary.json", "summary.csv", *(f"{key}.png" for key in SCORES))
RESAMPLE_COMMAND = "python -m oss_net.resample_label"  # oss_net.resample_label: a label on a prediction's grid
logger = logging.getLogger(__name__)


class EvaluationError(OSSNetError):
    """Folders that cannot be scored: nothing to pair, a prediction off its label's grid, a bad label."""


def case_files(folder: Path) -> dict[str, Path]:
    """Case id → image file: `<case><ext>` in `folder`, else `<case>/<case>{_mask,_seg,_segm}<ext>`."""
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: not a folder (check the path)")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = image_stem(path)
        if path.is_file() and stem is not None:
            found[stem] = path
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in found):
        names = {f"{sub.name}{suffix}".lower() for suffix in CASE_FILE_SUFFIXES}
        matches = [p for p in sorted(sub.iterdir()) if p.is_file() and (image_stem(p) or "").lower() in names]
        if matches:
            found[sub.name] = matches[0]
    return found


def load_pair(pred_path: Path, label_path: Path, dataset: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, label, affine) as integer arrays on one grid, or one error naming both files.

    `dataset` ("brats" for --regions): both files' values must be of its label set; else any non-negative
    integer is a label.
    """
    label_shape, label_affine, _ = read_header(label_path)  # the label first: a bad label is named as such
    pred_shape, pred_affine, _ = read_header(pred_path)
    if pred_shape != label_shape or not np.allclose(pred_affine, label_affine, atol=AFFINE_TOLERANCE_MM):
        raise EvaluationError(grid_mismatch_message(pred_path, (pred_shape, pred_affine), label_path,
                                                    (label_shape, label_affine)))
    allowed = LABEL_VALUES[dataset] if dataset else None
    pred = read_label_map(pred_path, allowed, dataset).array.astype(np.int64)
    label = read_label_map(label_path, allowed, dataset).array.astype(np.int64)
    return pred, label, label_affine


def grid_mismatch_message(pred_path: Path, pred_grid: tuple[tuple[int, ...], np.ndarray], label_path: Path,
                          label_grid: tuple[tuple[int, ...], np.ndarray]) -> str:
    """Why a prediction and its label (each grid: shape, affine) cannot be compared voxel by voxel, and the command
    that puts the label on the prediction's grid (a prediction written at `--output_spacing` is on a finer grid of
    the same box)."""
    def described(grid: tuple[tuple[int, ...], np.ndarray]) -> str:
        spacing = ", ".join(f"{v:.4g}" for v in spacing_from_affine(grid[1]))
        return f"shape {tuple(grid[0])}, spacing ({spacing}) mm"

    stem = image_stem(label_path) or label_path.name
    return (f"{pred_path} ({described(pred_grid)}) and its label {label_path} ({described(label_grid)}) lie on "
            f"different grids (shape or affine): scores compare voxels of one grid. Resample the label onto the "
            f"prediction's grid (nearest neighbour, its values kept): {RESAMPLE_COMMAND} {label_path} {pred_path} "
            f"labels_resampled/{stem}{image_suffix(label_path) or '.nii.gz'}, then score against labels_resampled")


FOREGROUND = {"foreground": ()}  # the structure of --foreground: every non-zero value
# Where a layout's label names come from: its fixed description, or its dataset.json (read alone, no scan).
LABEL_NAMES = {"brats": lambda root: BRATS_INFO, "lits": lambda root: LITS_INFO, "flare": lambda root: FLARE_INFO,
               "nnunet": read_nnunet_info, "msd": read_msd_info}


def dataset_labels(label_dir: Path) -> dict[str, tuple[int, ...]]:
    """{name: values} of the dataset `label_dir` belongs to (its layout detected in it or in its parent: a
    dataset.json, FLARE21, BraTS, LiTS), the background left out; {} when neither is a dataset's folder."""
    for root in (label_dir, label_dir.parent):
        try:
            labels = LABEL_NAMES[detect_dataset(root)](root).labels
        except DatasetError:
            continue
        return {name: value if isinstance(value, tuple) else (value,) for name, value in labels.items()
                if value not in (0, (0,))}
    return {}


def structure_values(label_paths: Sequence[Path], label_dir: Path, labels: Sequence[int] | None
                     ) -> dict[str, tuple[int, ...]]:
    """{structure name: label values} to score: the dataset's labels by name (`dataset_labels`), else every value
    found in the label files as `label_<value>`; `labels` keeps those values only (named as the dataset does)."""
    named = dataset_labels(label_dir)
    if not named or labels:
        found = sorted(set(labels or ()) or {int(v) for path in label_paths
                                             for v in np.unique(read_label_map(path).array)} - {0})
        names = {values[0]: name for name, values in named.items() if len(values) == 1}
        return {names.get(value, f"label_{value}"): (value,) for value in found}
    return named


def structures(pred: np.ndarray, label: np.ndarray, pred_path: Path, values: dict[str, tuple[int, ...]],
               regions: Sequence[str] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Name → (prediction mask, label mask): each structure of `values` (`structure_values`, or FOREGROUND),
    or BraTS regions.

    A prediction holding only 0 and 1 is a binary whole-tumour mask: it has the region WT only.
    """
    if not regions:
        if values == FOREGROUND:
            return {"foreground": (pred > 0, label > 0)}
        return {name: (np.isin(pred, members), np.isin(label, members)) for name, members in values.items()}
    label_regions = brats_regions(label)
    binary = not np.any((pred != 0) & (pred != 1))
    pred_regions = {"WT": pred > 0} if binary else brats_regions(pred)
    missing = [r for r in regions if r not in pred_regions]
    if missing:
        raise EvaluationError(f"{pred_path}: a binary prediction (0/1) is a whole-tumour mask; regions "
                              f"{', '.join(missing)} need a BraTS label map (1, 2, 4)")
    return {region: (pred_regions[region], label_regions[region]) for region in regions}


def score_case(case: str, pred_path: Path, label_path: Path, values: dict[str, tuple[int, ...]],
               regions: Sequence[str] | None, tolerance_mm: float, nsd_definition: str) -> list[dict[str, Any]]:
    """One row per structure: case, structure, the metrics and the volumes."""
    pred, label, affine = load_pair(pred_path, label_path, "brats" if regions else None)
    spacing = spacing_from_affine(affine)
    rows = []
    for name, (pred_mask, label_mask) in structures(pred, label, pred_path, values, regions).items():
        row: dict[str, Any] = {"case": case, "structure": name}
        row.update(evaluate_case(pred_mask, label_mask, spacing, tolerance_mm, nsd_definition=nsd_definition))
        row.update(volumes_ml(pred_mask, label_mask, spacing))
        rows.append(row)
    return rows


def statistics(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Structure → score → {mean, median (NaNs left out; NaN if all are), undefined (NaN count)}."""
    result: dict[str, dict[str, dict[str, float | int]]] = {}
    for name in dict.fromkeys(row["structure"] for row in rows):
        result[name] = {}
        for key in SCORES:
            values = np.array([row[key] for row in rows if row["structure"] == name], dtype=np.float64)
            finite = values[~np.isnan(values)]
            result[name][key] = {
                "mean": float(finite.mean()) if finite.size else math.nan,
                "median": float(np.median(finite)) if finite.size else math.nan,
                "undefined": int(np.isnan(values).sum()),
            }
    return result


def evaluate_folders(pred_dir: str | Path, label_dir: str | Path, output_dir: str | Path,
                     labels: Sequence[int] | None = None, regions: Sequence[str] | None = None,
                     tolerance_mm: float = NSD_TOLERANCE_MM, nsd_definition: str = "voxel",
                     foreground: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Score every labelled case that has a prediction, per structure (module docstring: every label by
    default, `labels`, `regions` or the `foreground`); write summary.json / .csv and the box plots.

    Returns the summary (as written to summary.json, NaN as null there). `overwrite`: replace files of
    `output_dir` with an output's name that this package did not write there (refused otherwise).
    """
    if sum(map(bool, (labels, regions, foreground))) > 1:
        raise EvaluationError("give one of --labels, --regions and --foreground")
    check_output_folder(output_dir)  # before the scoring, which may take long
    refuse_output_in_inputs(output_dir, [pred_dir, label_dir], "-o")
    refuse_foreign_outputs(output_dir, OUTPUT_FILES, overwrite)
    if Path(pred_dir).resolve() == Path(label_dir).resolve():
        logger.warning("%s is both the prediction and the label folder: every case is scored against itself, so every "
                       "score is perfect by construction", pred_dir)
    predictions, references = case_files(Path(pred_dir)), case_files(Path(label_dir))
    paired = [case for case in references if case in predictions]
    if not paired:
        raise EvaluationError(f"no prediction in {pred_dir} matches a label in {label_dir} "
                              f"({len(predictions)} predictions, {len(references)} labels, paired by file name); name each "
                              "prediction as its label, <case>.nii.gz")
    values = FOREGROUND if foreground else {} if regions else structure_values(
        [references[case] for case in paired], Path(label_dir), labels)
    rows: list[dict[str, Any]] = []
    for case in tqdm(paired, desc="evaluate", unit="case", disable=None):
        with warnings.catch_warnings(record=True) as caught:  # said in words below, never as a raw warning line
            warnings.simplefilter("always")
            rows.extend(score_case(case, predictions[case], references[case], values, regions, tolerance_mm,
                                   nsd_definition))
        for message in dict.fromkeys(warning_in_words(warning.message) for warning in caught):
            logger.warning("%s: %s", case, message)
    summary = {
        "cases": len(paired),
        "missing_predictions": [case for case in references if case not in predictions],
        "unlabelled_predictions": [case for case in predictions if case not in references],
        "settings": {"pred_dir": str(pred_dir), "label_dir": str(label_dir), "labels": list(labels or []),
                     "regions": list(regions or []), "foreground": foreground,
                     "structures": {name: list(members) for name, members in values.items()},
                     "tolerance_mm": tolerance_mm, "nsd": nsd_definition},
        "statistics": statistics(rows),
        "per_case": rows,
    }
    write_outputs(Path(output_dir), summary)
    return summary


def warning_in_words(message: Warning | str) -> str:
    """A warning raised while scoring, as a sentence about the case: without the library's function name, file and
    line; an undefined metric says what its NaN means in the summary."""
    text = str(message)
    context, separator, rest = text.partition(": ")
    if separator and " " not in context:  # "evaluate_case: ..." -> "..."
        text = rest
    if "undefined" in text:
        text += " (left out of the mean and median, counted under 'undefined')"
    return text


def json_safe(value: Any) -> Any:
    """NaN and infinities as None, recursively, so the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def write_outputs(output_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json, summary.csv and `<score>.png` for every score."""
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_json(json_safe(summary), output_dir / "summary.json")
    columns = ["case", "structure", *SCORES]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in summary["per_case"]:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    for name, scores in summary["statistics"].items():
        for statistic in STATISTICS:
            writer.writerow({"case": statistic, "structure": name,
                             **{key: f"{scores[key][statistic]:.6g}" for key in SCORES}})
    with atomic_write(output_dir / "summary.csv", "w") as handle:
        handle.write(buffer.getvalue())
    for key in SCORES:
        boxplot_png(summary["per_case"], key, output_dir / f"{key}.png")
    record_outputs(output_dir, OUTPUT_FILES)


def boxplot_png(rows: Sequence[dict[str, Any]], key: str, path: Path) -> None:
    """Box plot of one score over the cases, one box per structure, each case drawn as a dot."""
    # late on purpose: matplotlib adds 0.65-1.1 s (measured, 2 busy cores) to the command's start of 2.5-4 s
    # (`--help`, a bad folder), and only the plots, written last, need it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(row["structure"] for row in rows))
    values = [[row[key] for row in rows if row["structure"] == name and not math.isnan(row[key])] for name in names]
    figure = Figure(figsize=(2.4 + 1.4 * len(names), 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.boxplot(values, showfliers=False)
    axes.set_xticks(range(1, len(names) + 1), names)
    for position, column in enumerate(values, start=1):
        axes.plot(np.full(len(column), position), column, "o", alpha=0.5, markersize=4)
    axes.set_title(boxplot_title(rows, key, len(names)), fontsize=10)
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")


def boxplot_title(rows: Sequence[dict[str, Any]], key: str, structures: int) -> str:
    """"dice per case and label (2 cases × 4 labels)", and how many values are undefined (left out of the boxes)."""
    cases = len(dict.fromkeys(row["case"] for row in rows))
    kind = ("structure" if structures == 1 else "region" if rows[0]["structure"] in dict(BRATS_REGIONS)
            else "label") if rows else "structure"
    undefined = sum(1 for row in rows if math.isnan(row[key]))
    left_out = f", {undefined} undefined left out" if undefined else ""
    return f"{key} per case and {kind} ({counted(cases, 'case')} × {counted(structures, kind)}{left_out})"


def counted(count: int, word: str) -> str:
    """"1 case", "2 cases"."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oss-net-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="predictions: <case>.nii.gz or <case>/<case>_mask.nii.gz")
    parser.add_argument("label_dir", metavar="LABEL_DIR", help="labels: <case>.nii.gz or <case>/<case>_seg.nii.gz")
    parser.add_argument("-o", "--output_dir", default="evaluation", help="where the summary goes (default: %(default)s)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--labels", nargs="+", type=int,
                       help="score these label values only (default: every label of the dataset, by its name, else "
                            "every value in the label files)")
    which.add_argument("--regions", nargs="+", choices=tuple(dict(BRATS_REGIONS)), help="score these BraTS regions")
    which.add_argument("--foreground", action="store_true", help="score every non-zero value as one structure")
    parser.add_argument("--tolerance_mm", type=float, default=NSD_TOLERANCE_MM, help="NSD tolerance in mm (default: %(default)s)")
    parser.add_argument("--nsd", default="voxel", choices=NSD_DEFINITIONS,
                        help="voxel: surface voxels counted; surfel: area-weighted (DeepMind surface-distance)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files in the output folder with an output's name that this tool did not write "
                             "there (refused otherwise)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate, print the table of means; an error prints one line (oss_net.cli_errors): status 2 for bad input."""
    parser = build_parser()
    add_verbose_flag(parser)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_command(lambda: evaluate_and_print(arguments), prog=parser.prog, verbose=arguments.verbose)


def evaluate_and_print(arguments: argparse.Namespace) -> None:
    """Score the folders named on the command line and print the table of means."""
    summary = evaluate_folders(arguments.pred_dir, arguments.label_dir, arguments.output_dir, arguments.labels,
                               arguments.regions, arguments.tolerance_mm, arguments.nsd, arguments.foreground,
                               arguments.overwrite)
    width = max([12, *(len(name) + 2 for name in summary["statistics"])])
    print(f"{'mean of':<{width}}" + "".join(f"{key:>10}" for key in METRIC_KEYS) + f"{'undefined':>11}")
    for name, scores in summary["statistics"].items():
        undefined = sum(scores[key]["undefined"] for key in METRIC_KEYS)
        print(f"{name:<{width}}" + "".join(f"{scores[key]['mean']:>10.4f}" for key in METRIC_KEYS) + f"{undefined:>11}")
    missing = summary["missing_predictions"]
    print(f"{summary['cases']} cases scored; {len(missing)} label(s) without a prediction"
          + (f": {', '.join(missing)}" if missing else ""))
    print(f"results in {Path(arguments.output_dir).resolve()} (summary.csv, summary.json, <metric>.png)")


if __name__ == "__main__":
    sys.exit(main())
