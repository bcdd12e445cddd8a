"""Run logging on rank 0: TensorBoard scalars, `metrics.csv` and `progress.png` of the same values.

The CSV and the plot are rewritten atomically from the rows held in memory, so they are never
half-written. On resume the rows after the checkpoint's iteration are dropped (they will be
recomputed) and TensorBoard is told to purge its events from that step on.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

from oss_net.io import atomic_write

CSV_NAME = "metrics.csv"
PLOT_NAME = "progress.png"
COLUMNS = ("iteration", "epoch", "name", "value")


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
        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)

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
            writer.writerow(COLUMNS)
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


def write_progress_plot(rows: list[tuple[int, int, str, float]], path: Path) -> None:
    """One panel per scalar against the iteration (Agg canvas: no display, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for iteration, _, name, value in rows:
        series[name].append((iteration, value))
    names = sorted(series)
    if not names:
        return
    columns = min(3, len(names))
    panel_rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(4.5 * columns, 3.0 * panel_rows), tight_layout=True)
    FigureCanvasAgg(figure)
    for index, name in enumerate(names):
        axis = figure.add_subplot(panel_rows, columns, index + 1)
        xs, ys = zip(*series[name])
        axis.plot(xs, ys, marker="o" if len(xs) < 30 else None, linewidth=1.0)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("iteration", fontsize=8)
        axis.tick_params(labelsize=7)
        if name.startswith("train/loss") and min(ys) > 0:
            axis.set_yscale("log")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())
