"""benchmarks/gpu_check.py and gpu_check.sh: the pieces of the GPU check that run without a GPU.

The whole rehearsal (`bash benchmarks/gpu_check.sh --rehearse`, about 2 minutes) is too slow for the suite;
these tests cover the step log, the summary, the error paths and one real step through the shell.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

SCRIPT = gpu_check.REPO / "benchmarks" / "gpu_check.sh"


@pytest.fixture
def gpu_results(results_dir, monkeypatch) -> Path:
    monkeypatch.delenv("GPU_CHECK_RESULTS", raising=False)
    return results_dir


def write_step(folder: Path, step: str, record: dict | None, code: int, seconds: int, limit: int) -> None:
    with open(folder / gpu_check.STEP_LOG, "a") as log:
        log.write(f"{step}\t{code}\t{seconds}\t{limit}\n")
    if record is not None:
        (folder / f"gpu_{step}.json").write_text(json.dumps(record))


def test_sanitizer_output_gives_the_error_count_or_why_there_is_none():
    assert gpu_check.parse_sanitizer("========= COMPUTE-SANITIZER\nprobe: ...\n========= ERROR SUMMARY: 0 errors\n") == (0, "")
    assert gpu_check.parse_sanitizer("========= ERROR SUMMARY: 1 error\n") == (1, "")
    assert gpu_check.parse_sanitizer("========= ERROR SUMMARY: 12 errors\n") == (12, "")
    count, why = gpu_check.parse_sanitizer("========= Error: Device not supported\n")
    assert count is None and "does not support this device" in why
    assert gpu_check.parse_sanitizer("Segmentation fault\n") == (None, "compute-sanitizer printed no ERROR SUMMARY")


def test_summary_takes_each_status_from_the_step_or_from_the_shell(gpu_results, capsys):
    ok = {"status": "ok", "figures": [gpu_check.figure("GB/s", 3900.0, "copy"), gpu_check.figure("ms", 0.5)]}
    write_step(gpu_results, "pau", ok, 0, 31, 120)
    write_step(gpu_results, "infer", {"status": "ok"}, 124, 150, 150)  # a stale JSON must not hide the timeout
    write_step(gpu_results, "memory", None, 1, 3, 90)
    write_step(gpu_results, "sanitizer", None, 125, 0, 0)
    rows = gpu_check.summary_rows(gpu_results)
    assert [(r["step"], r["status"], r["s"]) for r in rows] == [
        ("pau", "ok", 31), ("pau", "", ""), ("infer", "failed: timed out after 150 s", 150),
        ("memory", "failed: exit 1 before writing its result", 3),
        ("sanitizer", "skipped: out of time (total budget spent)", 0)]
    assert (rows[0]["figure"], rows[0]["value"], rows[0]["reference"]) == ("GB/s", "3900", "copy")
    assert gpu_check.step_summary(rehearse=False, total_seconds=184) == 1
    written = json.loads((gpu_results / "gpu_summary.json").read_text())
    assert written["failed_steps"] == ["infer", "memory"] and written["total_seconds"] == 184
    assert "| pau | ok | 31 | GB/s | 3900 | copy |" in capsys.readouterr().out


def test_a_step_missing_a_module_fails_at_once_naming_it(gpu_results, monkeypatch):
    monkeypatch.setitem(gpu_check.STEP_MODULES, "memory", ("numpy", "no_such_module_for_gpu_check"))
    assert gpu_check.run_step("memory", rehearse=True) == 1
    record = json.loads((gpu_results / "gpu_memory.json").read_text())
    assert record["status"].startswith("failed: needs no_such_module_for_gpu_check, not installed here")
    assert gpu_check.missing_modules(("numpy", "no_such_module_for_gpu_check")) == ["no_such_module_for_gpu_check"]


def test_gpu_test_files_are_the_files_with_gpu_marked_tests():
    files = gpu_check.gpu_test_files()
    assert {"tests/pade_activation_unit/test_cuda_kernel.py", "tests/data/test_patches.py",
            "tests/data/test_borders.py", "tests/meshing/test_refine.py"} <= set(files)
    assert "tests/benchmarks/test_gpu_check.py" not in files


def test_sanitizer_probe_runs_the_kernel_forward_and_backward():
    assert gpu_check.step_probe(rehearse=True) == {"status": "ok", "device": "cpu"}


def run_script(*arguments: str, folder: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_RESULTS": str(folder)}
    return subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True, env=environment,
                          cwd=gpu_check.REPO, timeout=300)


def test_script_rejects_unknown_arguments_and_documents_itself(tmp_path):
    bad = run_script("--fast", folder=tmp_path)
    assert bad.returncode == 64 and "unknown argument '--fast'" in bad.stderr
    usage = run_script("--help", folder=tmp_path)
    assert usage.returncode == 0 and "--rehearse" in usage.stdout and "--fetch-wheels" in usage.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a CUDA device")
def test_script_without_gpu_stops_after_env_with_exit_2(tmp_path):
    stopped = run_script("pau", folder=tmp_path)
    assert stopped.returncode == gpu_check.NO_CUDA_EXIT
    assert "no CUDA device" in stopped.stdout and not (tmp_path / "gpu_pau.json").exists()
    assert json.loads((tmp_path / "gpu_summary.json").read_text())["failed_steps"] == ["env"]


def test_script_rehearsal_runs_a_step_on_the_cpu_and_logs_it(tmp_path):
    rehearsal = run_script("--rehearse", "env", folder=tmp_path)
    assert rehearsal.returncode == 0, rehearsal.stdout[-2000:]
    env = json.loads((tmp_path / "gpu_env.json").read_text())
    assert env["torch"] == torch.__version__ and env["cuda_available"] == torch.cuda.is_available()
    assert (tmp_path / "gpu_steps.tsv").read_text().startswith("env\t0\t")
    assert json.loads((tmp_path / "gpu_summary.json").read_text())["failed_steps"] == []
    assert (tmp_path / "gpu_check.log").read_text().count("| env |") == 5  # the table: one row per env figure


def test_a_step_that_raises_is_recorded_as_failed_with_the_error(gpu_results, monkeypatch):
    def broken(rehearse: bool) -> dict:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setitem(gpu_check.STEP_FUNCTIONS, "pau", broken)
    assert gpu_check.run_step("pau", rehearse=True) == 1
    record = json.loads((gpu_results / "gpu_pau.json").read_text())
    assert record["status"] == "failed: RuntimeError: CUDA error: an illegal memory access was encountered"
    assert (record["step"], record["rehearse"]) == ("pau", True)
