"""Run every benchmark at one size and collect the results.

    python -m benchmarks.run --size cpu      # what `make bench` runs: minutes on 2 cores (the full BraTS-size scan included)
    python -m benchmarks.run --size gpu      # the paper's sizes, on a GPU machine (`make bench-gpu`: gpu_check.sh)
    python -m benchmarks.run --smoke         # seconds: what the test suite runs

Each benchmark module has `run(size, smoke) -> dict` and writes benchmarks/results/<name>.json itself; this
runner adds benchmarks/results/summary.md with every table and the wall time of each benchmark. Memory
figures are in GiB (`benchmarks.common.to_gib`); the paper's figures come from `benchmarks.paper`.
"infer_cpu_brats" is bench_infer's end-to-end BraTS-size scan (`--size cpu-brats`): standard, prior and
the 3D U-Net on the CPU, so that one `make bench` gives the full-scan table next to the PAU and decoder ones.
"resolution" is bench_resolution (two demo trainings on 18 analytic shapes, 6 test shapes predicted at 0.5 mm three
ways: about 2 minutes), on the CPU only.
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback

from benchmarks.common import RESULTS_DIR, format_table
from oss_net.io import atomic_write

BENCHMARKS = ("pau", "decoder", "model", "data", "train", "infer", "infer_cpu_brats", "classes", "memory", "chunks",
              "resolution")
# benchmarks that run another module at their own size: name -> (module, {runner size: its size}); a runner
# size not listed skips the benchmark (the full scan is a CPU figure; `--size gpu` times BraTS size on the GPU)
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "infer_cpu_brats": ("infer", {"cpu": "cpu-brats"}),
    "resolution": ("resolution", {"cpu": "cpu"}),  # trains two demo models on the CPU: no GPU size
}


def run_all(size: str, smoke: bool, names: tuple[str, ...] = BENCHMARKS) -> dict[str, dict]:
    """Run the named benchmarks; a failing one is recorded with its error and the others still run."""
    results: dict[str, dict] = {}
    for name in names:
        module_name, sizes = VARIANTS.get(name, (name, {size: size}))
        if size not in sizes:
            continue
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.bench_{module_name}")
            result = module.run(size=sizes[size], smoke=smoke)
            results[name] = {"status": "ok", "seconds": time.perf_counter() - start, "result": result}
        except Exception as error:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            results[name] = {"status": f"failed: {error}", "seconds": time.perf_counter() - start, "result": {}}
    return results


def write_summary(results: dict[str, dict], size: str) -> None:
    """benchmarks/results/summary.md: one section per benchmark with its rows as a table (its `columns` when
    it names them) and its `headline` sentence when it has one."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    lines = [f"# Benchmark results (size={size})", "", "Memory in GiB (2^30 bytes).", ""]
    lines.append(format_table([{"benchmark": n, "status": r["status"], "seconds": r["seconds"]} for n, r in results.items()]))
    for name, record in results.items():
        result = record["result"] if isinstance(record["result"], dict) else {}
        rows = result.get("rows")
        lines += ["", f"## {name}", ""]
        raw = "```\n" + json.dumps(result, indent=1, default=str)[:4000] + "\n```"
        lines.append(format_table(rows, result.get("columns")) if rows else raw)
        if result.get("headline"):  # the benchmark's figures in one sentence
            lines += ["", result["headline"]]
    with atomic_write(RESULTS_DIR / "summary.md", "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--size", choices=("cpu", "gpu"), default="cpu", help="problem sizes (default: cpu)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds per benchmark")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    args = parser.parse_args(argv)
    results = run_all(args.size, args.smoke, tuple(args.only or BENCHMARKS))
    write_summary(results, args.size)
    print(f"\nwrote {RESULTS_DIR / 'summary.md'}")
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
