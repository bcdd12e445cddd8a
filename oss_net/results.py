"""Table-1 style results of training runs: mean ± std over runs of each run's best validation score.

    python -m oss_net.results runs/*_full_brats runs/*_full2_brats --json table1.json --markdown table1.md

This is how the paper's numbers were made (docs/reference.md §9): for every run, each validation
score's maximum over the run's validations (Dice and IoU separately, so they may come from different
epochs), then the mean and the standard deviation (numpy's, ddof 0) over the runs of one
configuration, dataset and mode. The scores are read from the run folder as training wrote them:
`hyperparameters.json` (what was trained) and `metrics.csv` (every validation).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from oss_net.compat import SAMPLED_DICE, SAMPLED_IOU, VALIDATION_SCORES
from oss_net.io import OSSNetError, atomic_save_json, atomic_write
from oss_net.models import CONFIG_NAMES, TABLE1_ALIASES
from oss_net.training.loop import HYPERPARAMETERS_NAME
from oss_net.training.recorder import CSV_NAME, read_metrics_csv

TABLE_SCORES = ((SAMPLED_DICE, "Dice"), (SAMPLED_IOU, "IoU"))  # the paper's Table 1 columns, per dataset
DATASET_TITLES = {"brats": "BraTS", "lits": "LiTS"}


class ResultsError(OSSNetError):
    """A run folder without the files training writes, or without a single validation."""


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """One run's identity and its best score per validation metric.

    Returns {"run_dir", "network_config", "dataset", "compat", "validations", "best": {name: max},
    "best_iteration": {name: iteration of that max}}.
    """
    run_dir = Path(run_dir)
    settings_path, metrics_path = run_dir / HYPERPARAMETERS_NAME, run_dir / CSV_NAME
    for path in (settings_path, metrics_path):
        if not path.is_file():
            raise ResultsError(f"{path}: not found; is {run_dir} a training run folder?")
    try:
        settings = json.loads(settings_path.read_text())["settings"]
    except (ValueError, KeyError) as error:
        raise ResultsError(f"{settings_path}: not a training run's hyperparameters ({error})") from None
    series: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for iteration, _, name, value in read_metrics_csv(metrics_path):
        if name in VALIDATION_SCORES and math.isfinite(value):
            series[name].append((value, iteration))
    if not series:
        raise ResultsError(f"{metrics_path}: no validation scores ({', '.join(VALIDATION_SCORES)}); "
                           "was the run trained with --test and validated at least once?")
    best = {name: max(values, key=lambda pair: pair[0]) for name, values in series.items()}
    return {
        "run_dir": str(run_dir), "network_config": settings["network_config"], "dataset": settings["dataset"],
        "compat": settings.get("compat", "ours"), "validations": max(len(values) for values in series.values()),
        "best": {name: value for name, (value, _) in best.items()},
        "best_iteration": {name: iteration for name, (_, iteration) in best.items()},
    }


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """{"mean", "std", "runs"}: the mean and the population standard deviation (ddof 0) of `values`."""
    mean = sum(values) / len(values)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)), "runs": len(values)}


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (configuration, dataset, mode): mean ± std over its runs of every best score they share."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["network_config"], run["dataset"], run["compat"])].append(run)
    rows = []
    for (config, dataset, compat), members in sorted(groups.items(), key=lambda item: _row_order(*item[0])):
        shared = [name for name in VALIDATION_SCORES if all(name in run["best"] for run in members)]
        rows.append({"network_config": config, "row": table1_row(config), "dataset": dataset, "compat": compat,
                     "runs": [run["run_dir"] for run in members],
                     "scores": {name: mean_std([run["best"][name] for run in members]) for name in shared}})
    return rows


def table1_row(network_config: str) -> str:
    """The paper's row name of a configuration ("full" -> "C"), or the name itself."""
    names = {target: alias for alias, target in TABLE1_ALIASES.items()}
    return names.get(network_config, network_config)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Table 1 as markdown: a line per (configuration, mode), "mean ± std (runs)" per dataset and score."""
    datasets = sorted({row["dataset"] for row in rows}, key=lambda d: (d not in DATASET_TITLES, d))
    header = ["Model", "mode"] + [f"{DATASET_TITLES.get(d, d)} {title}" for d in datasets for _, title in TABLE_SCORES]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        line = cells.setdefault((row["row"], row["compat"]), {})
        for name, title in TABLE_SCORES:
            score = row["scores"].get(name)
            line[f"{DATASET_TITLES.get(row['dataset'], row['dataset'])} {title}"] = (
                "–" if score is None else f"{score['mean']:.4f} ± {score['std']:.4f} ({score['runs']})")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (model, compat), line in cells.items():
        lines.append("| " + " | ".join([model, compat] + [line.get(column, "–") for column in header[2:]]) + " |")
    lines.append("")
    lines.append("Sampled-point scores on the model grid (`val/sampled_*`, docs/metrics.md): per run the best over its "
                 "validations, then mean ± std (ddof 0) over runs; the number of runs in brackets.")
    return "\n".join(lines) + "\n"


def results(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """{"runs": [read_run(...)], "table": aggregate(...)} for the given run folders."""
    if not run_dirs:
        raise ResultsError("no run folders given")
    runs = [read_run(run_dir) for run_dir in run_dirs]
    return {"runs": runs, "table": aggregate(runs)}


def _row_order(config: str, dataset: str, compat: str) -> tuple:
    order = ["vanilla_o_net_wide", "A", "B", "full", "full2"]  # Table 1: O-Net, A, B, C, D
    order += [name for name in CONFIG_NAMES if name not in order]
    return (order.index(config) if config in order else len(order), config, compat, dataset)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oss_net.results", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="training run folders")
    parser.add_argument("--json", type=Path, default=None, help="write runs and table as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the markdown table here")
    arguments = parser.parse_args(argv)
    try:
        result = results(arguments.run_dirs)
        table = markdown_table(result["table"])
        if arguments.json is not None:
            atomic_save_json(result, arguments.json)
        if arguments.markdown is not None:
            with atomic_write(arguments.markdown, "w") as handle:
                handle.write(table)
    except OSSNetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
