"""The run's summary: `summary.json` and `summary.csv` rewritten from the finished cases' records,
the table `oss-net-infer` prints, and the per-class table of a model of several classes or regions.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from oss_net.io import atomic_save_json, atomic_write, record_outputs
from oss_net.metrics import METRIC_KEYS, summarise

from . import outputs
from .discovery import BadCase

SUMMARY_FILES = ("summary.json", "summary.csv")
SUMMARY_COLUMNS = ("case", "dice", "iou", "hd95_mm", "nsd", "seconds", "points_evaluated", "mode", "disagreement")
TABLE_COLUMNS = ("dice", "iou", "hd95_mm", "nsd", "seconds")  # what the closing table shows per case


def read_finished(output_dir: Path, case_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Metrics records of the finished cases among `case_ids`, in that order."""
    records = []
    for case_id in case_ids:
        path = outputs.case_folder(output_dir, case_id) / outputs.METRICS_FILE
        if path.is_file():
            records.append(json.loads(path.read_text()))
    return records


def write_summary(output_dir: Path, case_ids: Sequence[str], skipped: Sequence[BadCase] = ()) -> list[dict[str, Any]]:
    """summary.json (the per-case records, a row per skipped case, then a "mean" row) and summary.csv with the same columns.

    A skipped case's row holds its reason under "skipped"; the mean row counts them as "skipped_cases".
    """
    records = read_finished(output_dir, case_ids)
    # JSON stores an undefined metric as null; summarise wants NaN there (it counts undefined HD95s)
    numeric = [{k: float("nan") if v is None else v for k, v in r.items() if v is not None or k in METRIC_KEYS}
               for r in records]
    mean_row = {"case": "mean", **(summarise(numeric) if records else {"cases": 0})}
    if skipped:
        mean_row["skipped_cases"] = len(skipped)
    rows = [*records, *({"case": case.case_id, "skipped": case.reason} for case in skipped), outputs.json_ready(mean_row)]
    atomic_save_json(rows, output_dir / SUMMARY_FILES[0])
    columns = list(SUMMARY_COLUMNS) + sorted({k for r in rows for k in r} - set(SUMMARY_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    with atomic_write(output_dir / SUMMARY_FILES[1], "w") as handle:
        handle.write(buffer.getvalue())
    record_outputs(output_dir, SUMMARY_FILES)
    return rows


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary rows as an aligned text table; a case without a label shows "-" for its metrics."""
    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"

    width = max([len(str(row["case"])) for row in rows] + [4])
    lines = [f"{'case':<{width}}" + "".join(f"{key:>10}" for key in TABLE_COLUMNS)]
    lines += [f"{row['case']:<{width}}" + "".join(f"{cell(row, key):>10}" for key in TABLE_COLUMNS) for row in rows]
    return "\n".join(lines)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


def class_report(summary: list[dict[str, Any]]) -> str:
    """Per class or region (in the model's order, the cases' "classes"), the mean Dice, IoU and HD95 over the
    cases of `summary.json` (its "mean" row)."""
    mean = next((row for row in summary if row.get("case") == "mean"), {})
    names = next((row["classes"].split(",") for row in summary if row.get("classes")), [])

    def cell(value: Any) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

    lines = ["", "per class / region (mean over validation cases, input grid)",
             f"{'region':<12} {'dice':>7} {'iou':>7} {'hd95 mm':>8}"]
    lines += [f"{name:<12} {cell(mean.get(f'dice_{name}')):>7} {cell(mean.get(f'iou_{name}')):>7} "
              f"{cell(mean.get(f'hd95_mm_{name}')):>8}" for name in names]
    return "\n".join(lines)
