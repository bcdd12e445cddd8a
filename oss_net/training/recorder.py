"""Run logging on rank 0: TensorBoard scalars, `metrics.csv` and `progress.png` of the same values.

The CSV and the plot are rewritten atomically from the rows held in memory, so they are never
half-written. On resume the rows after the checkpoint's iteration are dropped (they will be
recomputed) and TensorBoard is told to purge its events from that step on.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from oss_net.compat import DENSE_DICE, DENSE_IOU, SAMPLED_DICE, SAMPLED_IOU, SAMPLED_LOSS
from oss_net.io import atomic_write

CSV_NAME = "metrics.csv"
PLOT_NAME = "progress.png"
TENSORBOARD_DIR = "tensorboard"
CSV_COLUMNS = ("iteration", "epoch", "name", "value")


class Recorder:
    """Collects (iteration, epoch, name, value) rows; rank 0 writes them, other ranks drop them."""

    def __init__(self, run_dir: Path, enabled: bool, resume_iteration: int | None = None) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.rows: list[tuple[int, int, str, float]] = []
        self._writer = None
        if not enabled:
            return
        if resume_iteration is not None:
            self.rows = [row for row in read_metrics_csv(run_dir / CSV_NAME) if row[0] <= resume_iteration]
        from torch.utils.tensorboard import SummaryWriter

        purge_step = None if resume_iteration is None else resume_iteration + 1
        self._writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=purge_step)

    def log(self, iteration: int, epoch: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self.rows.append((iteration, epoch, name, float(value)))
            self._writer.add_scalar(name, float(value), iteration)

    def flush(self, plot: bool = True) -> None:
        """Rewrite metrics.csv (and progress.png) from the rows so far."""
        if not self.enabled:
            return
        self._writer.flush()
        with atomic_write(self.run_dir / CSV_NAME, "w") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(self.rows)
        if plot:
            write_progress_plot(self.rows, self.run_dir / PLOT_NAME)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics_csv(path: Path) -> list[tuple[int, int, str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [(int(r["iteration"]), int(r["epoch"]), r["name"], float(r["value"])) for r in csv.DictReader(handle)]


# (title, the metrics it draws as (name, legend label), log scale). A metric of several classes is also logged per
# class as `<name>_<class>`: in a panel holding such series each class has its colour (the mean over the classes
# black) and each metric its line style; otherwise each metric has its colour.
PANELS = (
    ("loss", (("train/loss", "occupancy"), ("train/aux_loss", "segmentation (aux)"), (SAMPLED_LOSS, "validation")),
     True),
    ("validation Dice", ((DENSE_DICE, "dense, model grid"), (SAMPLED_DICE, "sampled points")), False),
    ("validation IoU", ((DENSE_IOU, "dense, model grid"), (SAMPLED_IOU, "sampled points")), False),
    ("learning rate", (("train/lr", "learning rate"),), True),
    ("PAU |coefficients|", (("pau/numerator_mean_abs", "numerator, mean"), ("pau/numerator_max_abs", "numerator, max"),
                            ("pau/denominator_mean_abs", "denominator, mean"),
                            ("pau/denominator_max_abs", "denominator, max")), False),
    ("PAU coefficients' change per epoch (L2)", (("pau/change_l2", "change"),), False),
)
# Colour-blind-safe and distinct (Okabe-Ito, then more): the first for a metric's mean, then one per class.
SERIES_COLOURS = ("#000000", "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#f0e442",
                  "#8c564b", "#7f7f7f", "#bcbd22", "#17becf")
LINE_STYLES = ("solid", "dashed", "dotted", "dashdot")
NOT_PLOTTED = ("train/loss_total",)  # the sum of the two losses drawn


def panel_series(series: dict[str, Any], metrics: tuple[tuple[str, str], ...]) -> list[tuple[str, str, str, str]]:
    """What one panel draws: (series name, legend label, colour, line style) per logged series of its metrics."""
    classes: list[str] = []
    found = []
    for number, (metric, label) in enumerate(metrics):
        for name in sorted(series):
            if name not in NOT_PLOTTED and (name == metric or name.startswith(metric + "_")):
                suffix = name[len(metric) + 1:]
                if suffix and suffix not in classes:
                    classes.append(suffix)
                found.append((number, name, label, suffix))
    drawn = []
    for number, name, label, suffix in found:
        if classes:  # colour by class (the mean black), style by metric
            colour = SERIES_COLOURS[(classes.index(suffix) + 1 if suffix else 0) % len(SERIES_COLOURS)]
            drawn.append((name, f"{label}, {suffix or 'mean'}", colour, LINE_STYLES[number % len(LINE_STYLES)]))
        else:
            drawn.append((name, label, SERIES_COLOURS[(number + 1) % len(SERIES_COLOURS)], "solid"))
    return drawn


def progress_figure(rows: list[tuple[int, int, str, float]]) -> Any:
    """The panels of `PANELS` against the iteration, on an Agg canvas (no display, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for iteration, _, name, value in rows:
        series[name].append((iteration, value))
    figure = Figure(figsize=(11, 10))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.06, top=0.96, wspace=0.22, hspace=0.4)
    for index, (title, metrics, log_scale) in enumerate(PANELS):
        axis = figure.add_subplot(3, 2, index + 1)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("iteration", fontsize=7)
        axis.tick_params(labelsize=7)
        drawn = panel_series(series, metrics)
        for name, label, colour, style in drawn:
            xs, ys = zip(*series[name])
            axis.plot(xs, ys, label=label, color=colour, linestyle=style, marker="o" if len(xs) < 30 else None,
                      markersize=3, linewidth=1.2)
            if log_scale and min(ys) > 0:
                axis.set_yscale("log")
        if drawn:
            axis.legend(fontsize=6, loc="best", ncol=2 if len(drawn) > 4 else 1)
    return figure


def write_progress_plot(rows: list[tuple[int, int, str, float]], path: Path) -> None:
    """`progress_figure` as a PNG, atomically. Fixed margins rather than tight_layout, which costs seconds per figure
    on a busy CPU."""
    buffer = io.BytesIO()
    progress_figure(rows).savefig(buffer, format="png", dpi=80)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())
