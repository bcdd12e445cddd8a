"""The run recorder: metrics.csv rows as logged, the rows kept on resume, and nothing written off rank 0."""
from __future__ import annotations

from oss_net.training.recorder import CSV_COLUMNS, CSV_NAME, PLOT_NAME, Recorder, read_metrics_csv

ROWS = [(1, 0, "train/loss", 0.5), (1, 0, "train/lr", 0.001), (2, 0, "train/loss", 0.25), (3, 1, "val/sampled_dice", 0.75)]


def _record(run_dir, rows=ROWS, **options) -> Recorder:
    recorder = Recorder(run_dir, enabled=True, **options)
    for iteration, epoch, name, value in rows:
        recorder.log(iteration, epoch, {name: value})
    return recorder


def test_csv_holds_the_logged_rows_in_order(tmp_path):
    recorder = _record(tmp_path)
    recorder.flush(plot=False)
    recorder.close()
    assert (tmp_path / CSV_NAME).read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert read_metrics_csv(tmp_path / CSV_NAME) == ROWS
    assert not (tmp_path / PLOT_NAME).exists()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_keeps_the_rows_up_to_the_checkpoint(tmp_path):
    _record(tmp_path).flush(plot=False)
    resumed = Recorder(tmp_path, enabled=True, resume_iteration=1)
    assert resumed.rows == ROWS[:2]
    resumed.log(2, 0, {"train/loss": 0.125})
    resumed.flush()
    resumed.close()
    assert read_metrics_csv(tmp_path / CSV_NAME) == [*ROWS[:2], (2, 0, "train/loss", 0.125)]
    assert (tmp_path / PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_disabled_recorder_writes_nothing(tmp_path):
    recorder = Recorder(tmp_path, enabled=False)
    recorder.log(1, 0, {"train/loss": 0.5})
    recorder.flush()
    recorder.close()
    assert recorder.rows == [] and list(tmp_path.iterdir()) == []


def test_a_missing_csv_reads_as_no_rows(tmp_path):
    assert read_metrics_csv(tmp_path / CSV_NAME) == []
