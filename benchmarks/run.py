"""Run every benchmark at one size and collect the results.

    python -m benchmarks.run --size cpu      # what `make bench` runs: minutes on 2 cores
    python -m benchmarks.run --size gpu      # `make bench-gpu`: the paper's sizes, on a GPU machine
    python -m benchmarks.run --smoke         # seconds: what the test suite runs

Each benchmark module has `run(size, smoke) -> dict` and writes benchmarks/results/<name>.json itself; this
runner adds benchmarks/results/summary.md with every table and the wall time of each benchmark. Memory
figures are in GiB (`benchmarks.common.to_gib`); the paper's figures come from `benchmarks.paper`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback

from benchmarks.common import RESULTS_DIR, format_table

BENCHMARKS = ("pau", "decoder", "model", "data", "train", "infer", "classes", "memory", "chunks")


def run_all(size: str, smoke: bool, names: tuple[str, ...] = BENCHMARKS) -> dict[str, dict]:
    """Run the named benchmarks; a failing one is recorded with its error and the others still run."""
    results: dict[str, dict] = {}
    for name in names:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            result = module.run(size=size, smoke=smoke)
            results[name] = {"status": "ok", "seconds": time.perf_counter() - start, "result": result}
        except Exception as error:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            results[name] = {"status": f"failed: {error}", "seconds": time.perf_counter() - start, "result": {}}
    return results


def write_summary(results: dict[str, dict], size: str) -> None:
    """benchmarks/results/summary.md: one section per benchmark with its rows as a table."""
    from oss_net.io import atomic_write

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    lines = [f"# Benchmark results (size={size})", "", "Memory in GiB (2^30 bytes).", ""]
    lines.append(format_table([{"benchmark": n, "status": r["status"], "seconds": r["seconds"]} for n, r in results.items()]))
    for name, record in results.items():
        rows = record["result"].get("rows") if isinstance(record["result"], dict) else None
        lines += ["", f"## {name}", ""]
        lines.append(format_table(rows) if rows else "```\n" + json.dumps(record["result"], indent=1, default=str)[:4000] + "\n```")
    with atomic_write(RESULTS_DIR / "summary.md", "w") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
