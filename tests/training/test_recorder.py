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


def test_progress_plot_has_a_panel_per_kind_and_no_two_series_look_alike():
    """Three regions: Dice and IoU in panels of their own, a colour per region (the mean black), a style per metric."""
    from matplotlib.colors import to_hex

    from oss_net.training.recorder import PANELS, progress_figure

    rows = [(1, 0, "train/loss", 0.5), (1, 0, "train/loss_total", 0.6), (1, 0, "train/aux_loss", 0.1),
            (1, 0, "train/lr", 1e-3), (1, 0, "pau/numerator_mean_abs", 0.3), (1, 0, "pau/change_l2", 0.01)]
    for iteration in (2, 4):
        for metric in ("val/sampled_dice", "val/dense_dice_model_grid", "val/sampled_iou", "val/dense_iou_model_grid"):
            rows += [(iteration, 1, f"{metric}{suffix}", 0.5 + iteration / 10) for suffix in ("", "_WT", "_TC", "_ET")]
    figure = progress_figure(rows)
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == [title for title, _, _ in PANELS]
    loss, dice, iou = figure.axes[:3]
    assert [line.get_label() for line in loss.lines] == ["occupancy", "segmentation (aux)"]  # not the total
    for axis in (dice, iou):
        looks = [(to_hex(line.get_color()), line.get_linestyle()) for line in axis.lines]
        assert len(looks) == 8 and len(set(looks)) == 8  # 2 metrics x (mean + 3 regions), none alike
        assert len({colour for colour, _ in looks}) == 4 and ("#000000", "-") in looks
        assert sorted(line.get_label() for line in axis.lines)[:2] == ["dense, model grid, ET", "dense, model grid, TC"]
    assert max(len(axis.lines) for axis in figure.axes) == 8
