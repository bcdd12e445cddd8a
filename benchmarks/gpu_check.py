"""The steps of benchmarks/gpu_check.sh, one per process: `python -m benchmarks.gpu_check STEP [--rehearse]`.

The shell script gives each step a time limit and a line in the step log; this module does the work. Each
step writes gpu_<step>.json (a "status": "ok", "skipped: ..." or "failed: ...", its "figures" for the
summary, and the full benchmark result) into the results folder, and `summary` prints one table of all
of them. With --rehearse every step runs on the CPU at tiny sizes, and what needs a GPU reports
"skipped: no GPU".

Imports: torch alone for env, build, sanitizer and pau (the PAU package imports nothing from oss_net);
tests, infer and memory import the oss_net stack, which needs the modules in OSS_NET_MODULES. A GPU
machine's own python may lack some (nibabel and trimesh are pure Python and can travel as wheels: see the
shell script's --fetch-wheels); a step that lacks one fails at once and names it, the others still run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import benchmarks.common as common

REPO = Path(__file__).resolve().parents[1]
STEPS: tuple[str, ...] = ("env", "build", "tests", "pau", "memory", "infer", "sanitizer")  # gpu_check.sh's order
OSS_NET_MODULES: tuple[str, ...] = ("numpy", "scipy", "nibabel", "skimage", "matplotlib", "tqdm", "trimesh")
STEP_MODULES: dict[str, tuple[str, ...]] = {"tests": ("pytest",), "infer": OSS_NET_MODULES, "memory": OSS_NET_MODULES}
NO_GPU = "skipped: no GPU"
NO_CUDA_EXIT = 2  # env's exit status when no CUDA device is visible outside a rehearsal: the shell stops
WHEELS_HINT = "see gpu_check.sh --fetch-wheels"  # long form in the shell script's header
PROBE_ELEMENTS = 100_003  # odd: the kernels' tail handling is checked too
SANITIZER_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors?")
STEP_LOG = "gpu_steps.tsv"  # the shell's log: step, exit status, seconds, limit in seconds
REHEARSAL_LITS_GRID = (128, 128, 128)  # the smallest grid LiTS C trains on (its encoder output is 2^3)
REHEARSAL_POINTS = 2**10


def results_dir() -> Path:
    """Where every output of this run goes: GPU_CHECK_RESULTS (the shell sets it), else benchmarks/results."""
    return Path(os.environ.get("GPU_CHECK_RESULTS") or common.RESULTS_DIR)


def send_benchmark_results_here() -> None:
    """Point the benchmark modules' own JSON output at `results_dir()` (a rehearsal must not overwrite
    the figures of a real `make bench` in benchmarks/results)."""
    target = results_dir()
    common.RESULTS_DIR = target
    for name, module in list(sys.modules.items()):
        if name.startswith("benchmarks.") and hasattr(module, "RESULTS_DIR"):
            module.RESULTS_DIR = target


def missing_modules(names: tuple[str, ...]) -> list[str]:
    """The names that cannot be imported here (without importing them)."""
    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except ImportError:  # a finder that refuses the name (GPU_CHECK_BLOCK's, or a broken install)
            return True

    return [name for name in names if absent(name)]


def figure(name: str, value: Any, reference: Any = "") -> dict[str, str]:
    """One line of the summary table."""
    def text(item: Any) -> str:
        return f"{item:.4g}" if isinstance(item, float) else str(item)

    return {"figure": name, "value": text(value), "reference": text(reference)}


def find_sanitizer(cuda_root: Path | None) -> Path | None:
    """compute-sanitizer on PATH, else under the CUDA root (bin/ or compute-sanitizer/), else None."""
    on_path = shutil.which("compute-sanitizer")
    if on_path:
        return Path(on_path)
    roots = [root for root in (cuda_root, os.environ.get("CUDA_HOME"), "/usr/local/cuda") if root]
    for root in map(Path, roots):
        for candidate in (root / "bin" / "compute-sanitizer", root / "compute-sanitizer" / "compute-sanitizer"):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def step_env(rehearse: bool) -> dict[str, Any]:
    """Python, torch, the device and its theoretical DRAM peak, the CUDA toolkit, compute-sanitizer, and
    the optional modules present; fails without a CUDA device unless rehearsing."""
    import torch

    # imported per step: a machine lacking a module fails this step alone (module docstring)
    from benchmarks.bench_pau import dram_peak_gbps
    from pade_activation_unit.build import find_cuda_toolkit

    toolkit, no_toolkit = find_cuda_toolkit()
    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "python": f"{sys.version.split()[0]} ({sys.executable})", "machine": platform.machine(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": cuda,
        "nvcc": f"{toolkit.nvcc}: {toolkit.version}" if toolkit else no_toolkit,
        "compute_sanitizer": str(find_sanitizer(toolkit.root if toolkit else None) or "not found"),
        "missing_modules": missing_modules(OSS_NET_MODULES + ("pytest",)),
    }
    if cuda:
        properties = torch.cuda.get_device_properties(0)
        peak, source = dram_peak_gbps(properties, properties.name)
        info.update({"device": properties.name, "capability": f"{properties.major}.{properties.minor}",
                     "device_memory_GiB": common.to_gib(properties.total_memory), "sms": properties.multi_processor_count,
                     "dram_peak_GBps": peak, "dram_peak_source": source})
    for key, value in info.items():
        print(f"  {key:18} {value}")
    figures = [figure("device", info.get("device", NO_GPU if rehearse else "none")),
               figure("torch", f"{torch.__version__} (CUDA {torch.version.cuda})"),
               figure("nvcc", info["nvcc"].split(": ")[-1]),
               figure("compute-sanitizer", info["compute_sanitizer"]),
               figure("missing modules", ", ".join(info["missing_modules"]) or "none")]
    if not cuda and not rehearse:
        status = (f"failed: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}): run this on a "
                  "GPU machine, or rehearse on the CPU with --rehearse")
    else:
        status = "ok" if cuda else "ok (rehearsal, no GPU)"
    return {"status": status, "figures": figures, **info}


def step_build(rehearse: bool) -> dict[str, Any]:
    """`python -m pade_activation_unit.build` against this python's torch, then load the libraries."""
    completed = subprocess.run([sys.executable, "-m", "pade_activation_unit.build"], cwd=REPO, capture_output=True, text=True)
    print(completed.stdout + completed.stderr, end="")
    if completed.returncode != 0:
        return {"status": f"failed: the PAU build exited {completed.returncode}", "output": completed.stderr[-4000:]}
    # imported after the build above, so the libraries it just compiled are the ones loaded
    from pade_activation_unit import backend_state

    state = backend_state()
    summary = completed.stdout.strip().splitlines()[-1]
    cuda_kernel = "loaded" if state.cuda_kernel else NO_GPU if rehearse else "NOT loaded"
    figures = [figure("backend", state.active), figure("CUDA kernel", cuda_kernel)]
    ok = state.cpu_kernel and (state.cuda_kernel or rehearse)
    return {"status": "ok" if ok else f"failed: kernels not loaded ({state.reason})", "figures": figures,
            "build": summary, "cpu_kernel": state.cpu_kernel, "cuda_kernel": state.cuda_kernel, "reason": state.reason}


def gpu_test_files() -> list[str]:
    """Test files holding tests marked `gpu` (the pyproject marker: needs a CUDA device), repo-relative."""
    return sorted(str(path.relative_to(REPO)) for path in (REPO / "tests").rglob("test_*.py")
                  if "pytest.mark.gpu" in path.read_text())


class OutcomeCounter:
    """A pytest plugin counting passed/failed/skipped tests and collecting the distinct skip reasons."""

    def __init__(self) -> None:
        self.counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
        self.skip_reasons: set[str] = set()

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.skipped:
            self.counts["skipped"] += 1
            self.skip_reasons.add(str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr))
        elif report.failed:
            self.counts["failed" if report.when == "call" else "errors"] += 1
        elif report.when == "call":
            self.counts["passed"] += 1

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.counts["errors"] += 1


def step_tests(rehearse: bool) -> dict[str, Any]:
    """pytest -m gpu on the files holding GPU tests (the compute-sanitizer test is the sanitizer step's).
    Without pytest: skipped, not re-implemented. Without the oss_net stack: only the PAU files, no conftest."""
    if missing_modules(("pytest",)):
        return {"status": "skipped: pytest not installed (the sanitizer and pau steps still run the CUDA kernel)"}
    import pytest

    files, note = gpu_test_files(), ""
    arguments = ["-q", "-m", "gpu", "-k", "not compute_sanitizer", "-p", "no:randomly", "-rs"]
    missing = missing_modules(OSS_NET_MODULES)
    if missing:
        files = [f for f in files if f.startswith("tests/pade_activation_unit/")]
        arguments.append("--noconftest")
        note = f"only the PAU tests ran: the others need {', '.join(missing)} ({WHEELS_HINT})"
    counter = OutcomeCounter()
    exit_code = pytest.main([*arguments, *files], plugins=[counter])
    counts = counter.counts
    if counts["failed"] or counts["errors"] or exit_code not in (0, 5):
        status = f"failed: pytest exit {exit_code}"
    elif not rehearse and counts["passed"] == 0:
        status = "failed: no GPU test ran"
    elif not rehearse and counts["skipped"]:  # a GPU test skipping on a GPU: something it needs is missing
        status = f"failed: {counts['skipped']} GPU tests skipped on the GPU ({sorted(counter.skip_reasons)[0]})"
    else:
        status = f"ok ({note})" if note else "ok"
    value = ", ".join(f"{n} {k}" for k, n in counts.items() if n or k == "passed")
    return {"status": status, "figures": [figure("pytest -m gpu", value, f"{len(files)} files")], "files": files,
            "counts": counts, "skip_reasons": sorted(counter.skip_reasons), "exit_code": exit_code}


def step_probe(rehearse: bool) -> dict[str, Any]:
    """One PAU forward+backward through the compiled kernel: the program compute-sanitizer watches."""
    import torch

    # imported per step: a machine lacking a module fails this step alone (module docstring)
    from pade_activation_unit import PAU, pau

    device = "cpu" if rehearse else "cuda"
    module = PAU().to(device)
    x = torch.randn(PROBE_ELEMENTS, device=device) * 2
    leaves = [t.detach().requires_grad_() for t in (x, module.numerator, module.denominator)]
    output = pau(*leaves, backend=f"{device}-kernel")
    gradients = torch.autograd.grad(output, leaves, torch.randn_like(output))
    finite = all(bool(torch.isfinite(g).all()) for g in (output, *gradients))
    print(f"probe: PAU forward+backward of {PROBE_ELEMENTS} float32 on {device}: {'finite' if finite else 'NOT FINITE'}")
    return {"status": "ok" if finite else "failed: non-finite output or gradient", "device": device}


def parse_sanitizer(output: str) -> tuple[int | None, str]:
    """(error count, "") from compute-sanitizer's output, or (None, why there is no count)."""
    match = SANITIZER_SUMMARY.search(output)
    if match:
        return int(match.group(1)), ""
    if "Device not supported" in output or "not supported" in output.lower():
        return None, "compute-sanitizer does not support this device or runtime (seen on gVisor machines)"
    return None, "compute-sanitizer printed no ERROR SUMMARY"


def step_sanitizer(rehearse: bool) -> dict[str, Any]:
    """compute-sanitizer memcheck over `step_probe` on the GPU; the error count is the figure."""
    if rehearse:
        probe = step_probe(rehearse=True)
        return {"status": f"{NO_GPU} (the probe ran on the CPU: {probe['status']})",
                "figures": [figure("memcheck errors", NO_GPU)]}
    # imported per step: a machine lacking a module fails this step alone (module docstring)
    from pade_activation_unit.build import find_cuda_toolkit

    toolkit, _ = find_cuda_toolkit()
    sanitizer = find_sanitizer(toolkit.root if toolkit else None)
    if sanitizer is None:
        return {"status": "skipped: compute-sanitizer not found (PATH, the CUDA root)",
                "figures": [figure("memcheck errors", "not run")]}
    limit = max(float(os.environ.get("GPU_CHECK_STEP_TIMEOUT", "300")) - 10, 10)
    command = [str(sanitizer), "--tool", "memcheck", "--print-limit", "20",
               sys.executable, "-m", "benchmarks.gpu_check", "probe"]
    try:
        completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"status": f"failed: compute-sanitizer ran past {limit:.0f} s", "figures": [figure("memcheck errors", "timed out")]}
    output = completed.stdout + completed.stderr
    print(output[-3000:], end="")
    errors, why = parse_sanitizer(output)
    if errors is None:
        status = f"failed: {why} (exit {completed.returncode})"
    elif errors:
        status = f"failed: {errors} memcheck errors"
    elif "probe: " not in output or "NOT FINITE" in output:
        status = "failed: the probe did not finish with finite results"
    else:
        status = "ok"
    shown = "n/a" if errors is None else errors
    return {"status": status, "figures": [figure("memcheck errors", shown, f"PAU fwd+bwd, {PROBE_ELEMENTS} float32")],
            "sanitizer": str(sanitizer), "exit_code": completed.returncode, "output_tail": output[-4000:]}


def step_pau(rehearse: bool) -> dict[str, Any]:
    """PAU GB/s at [8*2^14, 512] forward and forward+backward against the copy and DRAM peaks (bench_pau)."""
    import torch

    # imported per step: a machine lacking a module fails this step alone (module docstring)
    from benchmarks.bench_pau import bandwidth_section

    device = torch.device("cpu" if rehearse else "cuda")
    rows, ratios = bandwidth_section(device, smoke=rehearse)
    print(common.format_table(rows))
    kernel = f"{device.type}-kernel"
    unknown = NO_GPU if rehearse else "unknown"
    peak = ratios["dram_peak_GBps"]
    figures = [figure("copy peak (CPU, 16 MiB)" if rehearse else "copy peak (1 GiB clone)", f"{ratios['copy_GBps']:.4g} GB/s"),
               figure("DRAM peak (theoretical)", f"{peak:.4g} GB/s" if peak else unknown, ratios["dram_peak_source"])]
    for row in (row for row in rows if row["implementation"] == kernel):
        share = row["% of DRAM peak"]
        of_peak = f"{share:.3g}% of DRAM peak" if share is not None else f"DRAM peak: {unknown}"
        figures.append(figure(f"{kernel} {row['pass']} {row['shape']}", f"{row['GB/s']:.4g} GB/s",
                              f"{row['% of copy']:.3g}% of copy, {of_peak}"))
    status = "ok" if len(figures) > 2 else "failed: the kernel was not timed (not built?)"
    if rehearse and status == "ok":
        status = "ok (CPU rehearsal)"
    return {"status": status, "figures": figures, "rows": rows, "ratios": ratios}


def step_infer(rehearse: bool) -> dict[str, Any]:
    """BraTS-size seconds per volume of C, prior and standard, fp32 and bf16 (`bench_infer --size gpu`)."""
    # imported per step: a machine lacking a module fails this step alone (module docstring)
    from benchmarks import bench_infer
    from oss_net.inference.defaults import REFINEMENT

    send_benchmark_results_here()
    result = bench_infer.run("cpu", smoke=True) if rehearse else bench_infer.run("gpu")
    rows = {(r["method"], r["amp"]): r for r in result["rows"] if r["refinement"] == REFINEMENT}
    grid = "x".join(map(str, result["volume_shape"]))
    figures = []
    for method in ("prior", "standard"):
        for amp, label in (("off", "fp32"), ("bf16", "bf16")):
            row = rows.get((method, amp))
            value = f"{row['seconds']:.3f} s" if row else NO_GPU
            reference = f"{row['decoder_points']} points ({100 * row['voxel_fraction']:.2f}% of voxels)" if row else ""
            figures.append(figure(f"{method} {label} s/volume, grid {grid}", value, reference))
    figures.append(figure("prior vs standard (fp32)", f"{result['speedup_prior_vs_standard']:.2f}x", "target >= 2x"))
    status = "ok (CPU rehearsal: smoke grid, fp32 only)" if rehearse else "ok"
    return {"status": status, "figures": figures, "result": result}


def step_memory(rehearse: bool) -> dict[str, Any]:
    """Table-2 peak training memory of C and the 3D U-Net next to the paper's (`bench_memory --size gpu`), and
    the real training step of C at the LiTS grid (512^3) with and without recomputation, each in its own process."""
    # imported per step: a machine lacking a module fails this step alone (module docstring)
    from benchmarks import bench_memory
    from benchmarks.paper import TABLE2_DATASETS

    send_benchmark_results_here()
    if rehearse:
        result = bench_memory.run("cpu", smoke=True)
        steps = bench_memory.lits_steps("cpu", REHEARSAL_LITS_GRID, REHEARSAL_POINTS, timeout_s=60)
    else:
        result = bench_memory.run("gpu", models=("C", "unet3d"), datasets=TABLE2_DATASETS)
        steps = result["measured_steps"]
    key = "train_total_GiB" if rehearse else "train_GiB"
    figures = []
    for row in result["rows"]:
        value = row[key]
        shown = f"{value:.2f} GiB" if isinstance(value, float) else str(value)
        label = "device-free count (CPU)" if rehearse else "torch.cuda peak"
        figures.append(figure(f"train {row['model']} {row['dataset']}, {label}", shown, f"paper {row['paper_train_GiB']} GiB"))
    ratios = result[f"ratio_unet3d_over_C_{'train_act_GiB' if rehearse else key}"]
    figures += [figure(f"3D U-Net / C, {dataset}", f"{ratio:.2f}x" if ratio else "n/a", "paper 5.6x (BraTS)")
                for dataset, ratio in ratios.items()]
    for step in steps:
        peak = step.get("peak_rss_GiB", step.get("peak_cuda_GiB"))
        name = f"real step C lits {step['grid']}{' + recompute' if step['recompute'] else ''}, " + (
            "peak RSS (CPU)" if rehearse else "torch.cuda peak of the step")
        value = f"{peak:.2f} GiB, {step['seconds']:.2f} s" if peak is not None else step["status"]
        figures.append(figure(name, value, f"counted {step['predicted_GiB']:.2f} GiB of activations"))
    if rehearse:
        figures.append(figure("train, torch.cuda peak", NO_GPU))
    status = "ok (CPU rehearsal: device-free counts, a small real step)" if rehearse else "ok"
    if any(step["status"] != "measured" for step in steps):
        status = "failed: a real LiTS step did not run (" + "; ".join(step["status"] for step in steps) + ")"
    return {"status": status, "figures": figures, "result": result, "measured_steps": steps}


STEP_FUNCTIONS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "env": step_env, "build": step_build, "tests": step_tests, "pau": step_pau,
    "infer": step_infer, "memory": step_memory, "sanitizer": step_sanitizer,
}


def run_step(name: str, rehearse: bool) -> int:
    """Run one step and write gpu_<name>.json; exit status 0 unless it failed (NO_CUDA_EXIT: no GPU at env)."""
    needed = missing_modules(STEP_MODULES.get(name, ()))
    start = time.perf_counter()
    if needed and name != "tests":
        record: dict[str, Any] = {"status": f"failed: needs {', '.join(needed)}, not installed here ({WHEELS_HINT})"}
    else:
        try:
            record = STEP_FUNCTIONS[name](rehearse)
        except Exception as error:  # recorded for the summary; the shell goes on with the next step
            traceback.print_exc()
            record = {"status": f"failed: {type(error).__name__}: {str(error)[:160]}"}
    record = {"step": name, "rehearse": rehearse, "seconds": time.perf_counter() - start, **record}
    results_dir().mkdir(parents=True, exist_ok=True)
    common.RESULTS_DIR = results_dir()
    common.write_result(f"gpu_{name}", record)
    print(f"gpu_check {name}: {record['status']}")
    if record["status"].startswith("failed"):
        return NO_CUDA_EXIT if name == "env" and "no CUDA device" in record["status"] else 1
    return 0


def read_step_log(path: Path) -> list[dict[str, Any]]:
    """The shell's step log: one line per step, "step<TAB>exit status<TAB>seconds<TAB>limit"."""
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        step, code, seconds, limit = line.split("\t")
        entries.append({"step": step, "exit": int(code), "seconds": int(seconds), "limit": int(limit)})
    return entries


def step_status(entry: dict[str, Any], record: dict[str, Any] | None) -> str:
    """The step's status: its own JSON's, unless the shell saw it time out, run out of budget or die."""
    if entry["exit"] in (124, 137):
        return f"failed: timed out after {entry['limit']} s"
    if entry["exit"] == 125 and entry["limit"] == 0:
        return "skipped: out of time (total budget spent)"
    if record is None:
        return f"failed: exit {entry['exit']} before writing its result"
    return record["status"]


def summary_rows(folder: Path) -> list[dict[str, Any]]:
    """One table: per step its status and seconds, then one row per figure it reported."""
    rows = []
    for entry in read_step_log(folder / STEP_LOG):
        path = folder / f"gpu_{entry['step']}.json"
        record = json.loads(path.read_text()) if path.exists() and entry["exit"] not in (124, 137) else None
        status = step_status(entry, record)
        figures = (record or {}).get("figures") or [figure("", "")]
        for index, item in enumerate(figures):
            first = index == 0
            rows.append({"step": entry["step"], "status": status if first else "", "s": entry["seconds"] if first else "", **item})
    return rows


def step_summary(rehearse: bool, total_seconds: int) -> int:
    """Print the table, write gpu_summary.json; exit 1 when any step failed."""
    folder = results_dir()
    rows = summary_rows(folder)
    failed = sorted({row["step"] for row in rows if row["status"].startswith("failed")})
    title = "GPU check" + (" (REHEARSAL on the CPU: tiny sizes, figures not meaningful)" if rehearse else "")
    print(f"\n{title}: {len(failed)} failed step(s){': ' + ', '.join(failed) if failed else ''}; total {total_seconds} s\n")
    print(common.format_table(rows, ["step", "status", "s", "figure", "value", "reference"]))
    common.RESULTS_DIR = folder
    common.write_result("gpu_summary", {"rehearse": rehearse, "total_seconds": total_seconds,
                                        "failed_steps": failed, "rows": rows})
    print(f"\nwrote {folder}/gpu_*.json")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("step", choices=(*STEPS, "probe", "summary"))
    parser.add_argument("--rehearse", action="store_true", help="on the CPU at tiny sizes; GPU-only parts are skipped")
    parser.add_argument("--total-seconds", type=int, default=0, help="summary: the run's wall time so far")
    args = parser.parse_args(argv)
    if args.step == "summary":
        return step_summary(args.rehearse, args.total_seconds)
    if args.step == "probe":
        return 0 if step_probe(args.rehearse)["status"] == "ok" else 1
    return run_step(args.step, args.rehearse)


if __name__ == "__main__":
    raise SystemExit(main())
