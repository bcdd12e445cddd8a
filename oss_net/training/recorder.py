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

from oss_net.compat import SAMPLED_LOSS, VALIDATION_SCORES
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


PANELS = (  # (title, metric name prefixes, log scale)
    ("loss", ("train/loss", "train/aux_loss", SAMPLED_LOSS), True),
    ("validation Dice / IoU", VALIDATION_SCORES, False),
    ("learning rate", ("train/lr",), True),
    ("PAU |coefficients|, change per epoch", ("pau/",), False),
)


def write_progress_plot(rows: list[tuple[int, int, str, float]], path: Path) -> None:
    """Four panels of curves against the iteration (an Agg canvas: no display, no global backend).

    Fixed margins rather than tight_layout, which costs seconds per figure on a busy CPU.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for iteration, _, name, value in rows:
        series[name].append((iteration, value))
    figure = Figure(figsize=(10, 6.5))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.94, wspace=0.25, hspace=0.35)
    for index, (title, prefixes, log_scale) in enumerate(PANELS):
        axis = figure.add_subplot(2, 2, index + 1)
        axis.set_title(title, fontsize=9)
        axis.tick_params(labelsize=7)
        names = sorted(n for n in series if n.startswith(prefixes) and n != "train/loss_total")
        for name in names:
            xs, ys = zip(*series[name])
            axis.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None, markersize=3, linewidth=1.0)
            if log_scale and min(ys) > 0:
                axis.set_yscale("log")
        if names:
            axis.legend(fontsize=6, loc="best")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())
