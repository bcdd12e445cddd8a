"""Data path: one training sample from the cache vs from NIfTI, and the device gather vs a naive unfold gather.

    python -m benchmarks.bench_data            # BraTS size (240×240×155 → 256×256×160), 2^14 points
    python -m benchmarks.bench_data --smoke    # tiny, a few seconds

A "training sample" is what one step needs per volume: the dataset item (read or memory-map,
z-score/pad, border band, 2^14 points and their labels) plus the 7³ + 14³→7³ patches. Both paths must
give the same item (`items_agree`) and both gathers the same patches (`gathers_agree`). The naive
gather is the original's method: zero-pad, `unfold` into a [C, D, H, W, k, k, k] view and index it
per point on the CPU (then average-pool the large windows).

A second table gives the preprocessing seconds per case of every dataset layout (`load_case` from
NIfTI, no cache, no border band): BraTS pads, LiTS resamples, nnU-Net / Decathlon / FLARE21 are
reoriented, normalised by their fingerprint (of their two labelled cases) and resampled to the
fingerprint's grid. Their ratio to BraTS per input megavoxel compares the fingerprint pipeline with the paper's.

The full-size synthetic inputs take far longer to write than to time, so a full run keeps them under
build/bench_inputs/ (`INPUTS_DIR`), one folder per layout, shape, case count, seed and generator source;
a second run reads the same files instead of writing them again (`inputs_seconds` says how long it took).
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from benchmarks.common import bench_main, benchmark_device, format_table, time_call, write_result
from oss_net import io
from oss_net.data import OSSNetDataset, dataset_info, discover, gather_patches, generate_borders, load_case
from oss_net.data import synthetic, synthetic_layouts
from oss_net.data.fingerprint import compute_fingerprint
from oss_net.data.synthetic import write_synthetic_dataset
from oss_net.data.synthetic_layouts import write_layout_dataset
from oss_net.models import demo_config, get_config, network_config

# Input shapes of the preprocessing table: smoke (tiny) and full (typical scans of each dataset).
LAYOUT_SHAPES = {
    "brats": ((60, 60, 38), (240, 240, 155)),
    "lits": ((40, 40, 24), (512, 512, 96)),
    "nnunet": ((32, 28, 20), (160, 160, 120)),
    "msd": ((28, 28, 20), (160, 160, 120)),
    "flare": ((32, 32, 16), (512, 512, 96)),
}
FINGERPRINT_CASES = 2  # labelled cases each fingerprinted layout is written with; BraTS and LiTS time one case
INPUTS_DIR = Path(__file__).resolve().parents[1] / "build" / "bench_inputs"
# What the synthetic inputs depend on: a change to any of these files writes them afresh.
GENERATOR_SOURCES = (synthetic.__file__, synthetic_layouts.__file__, io.__file__)


def naive_unfold_gather(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The original's CPU gather for one volume `[C, D, H, W]` and `[N, 3]` points → `[N, 2C, 7, 7, 7]`."""
    index = coords.long()
    small = F.pad(volume, [3] * 6)
    for axis in (1, 2, 3):
        small = small.unfold(axis, 7, 1)  # view [C, D, H, W, 7, 7, 7]
    large = F.pad(volume, [7, 6] * 3)
    for axis in (1, 2, 3):
        large = large.unfold(axis, 14, 1)  # view [C, D, H, W, 14, 14, 14]
    small_patches = small[:, index[:, 0], index[:, 1], index[:, 2]].transpose(0, 1)  # [N, C, 7, 7, 7]
    large_patches = large[:, index[:, 0], index[:, 1], index[:, 2]].transpose(0, 1)  # [N, C, 14, 14, 14]
    return torch.cat([small_patches, F.avg_pool3d(large_patches, 2)], dim=1)


def generator_hash() -> str:
    """A short hash of the synthetic generators' source (`GENERATOR_SOURCES`)."""
    digest = hashlib.sha256()
    for source in GENERATOR_SOURCES:
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:12]


def synthetic_inputs(layout: str, shape: Sequence[int], cases: int, inputs_dir: Path, seed: int = 0) -> Path:
    """The dataset root of `cases` labelled synthetic `layout` cases of `shape`, written once under `inputs_dir`.

    The folder is named by layout, shape, cases, seed and `generator_hash()`, so a changed generator writes
    afresh (its stale folder is removed); it is written aside and renamed into place, so it is whole or absent.
    """
    name = f"{layout}_{'x'.join(map(str, shape))}_{cases}cases_seed{seed}"
    entry = inputs_dir / f"{name}_{generator_hash()}"
    if not entry.exists():
        inputs_dir.mkdir(parents=True, exist_ok=True)
        for stale in [*inputs_dir.glob(f"{name}_*"), *inputs_dir.glob(f".{name}_*")]:  # older source, interrupted
            shutil.rmtree(stale)
        partial = Path(tempfile.mkdtemp(prefix=f".{name}_", dir=inputs_dir))
        root = (write_synthetic_dataset(layout, partial / "data", cases, shape, seed) if layout in ("brats", "lits")
                else write_layout_dataset(layout, partial / "data", cases, shape, seed, test_cases=0))
        (partial / "root.txt").write_text(root.relative_to(partial).as_posix())
        partial.rename(entry)
    return entry / (entry / "root.txt").read_text()


def run(size: str = "cpu", smoke: bool = False) -> dict:
    shape, grid, samples = ((60, 60, 38), (64, 64, 40), 2**10) if smoke else ((240, 240, 155), (256, 256, 160), 2**14)
    device = benchmark_device(size)
    config = demo_config("D", "brats", volume_shape=grid)
    repeats = 1 if smoke else 3
    with tempfile.TemporaryDirectory() as folder:
        inputs_dir = Path(folder) / "inputs" if smoke else INPUTS_DIR
        start = time.perf_counter()
        root = synthetic_inputs("brats", shape, 1, inputs_dir)
        inputs_seconds = time.perf_counter() - start
        generate_borders("brats", root, Path(folder) / "borders", progress=False)  # both paths read the stored map
        cases = discover("brats", root, "all", border_dir=Path(folder) / "borders")
        from_nifti = OSSNetDataset(cases, config, samples, border_balance=0.5, augment=True)
        cached = OSSNetDataset(cases, config, samples, border_balance=0.5, augment=True, cache_dir=Path(folder) / "cache")
        start = time.perf_counter()
        cached[0]  # builds the cache entry
        build_seconds = time.perf_counter() - start

        sync = torch.cuda.synchronize if device.type == "cuda" else None
        item_nifti = time_call(lambda: from_nifti[0], repeats=repeats, warmup=0)
        item_cache = time_call(lambda: cached[0], repeats=repeats, warmup=0)
        item = cached[0]
        items_agree = all(torch.equal(value, item[key]) if isinstance(value, torch.Tensor) else value == item[key]
                          for key, value in from_nifti[0].items())
    volume, coords = item["volume"], item["coords"]
    on_device = volume[None].to(device), coords[None].to(device)
    device_seconds = time_call(lambda: gather_patches(*on_device, large=True), repeats=repeats, synchronize=sync)
    naive_patches = naive_unfold_gather(volume, coords)  # the warm-up run, whose patches are checked below
    naive_seconds = time_call(lambda: naive_unfold_gather(volume, coords), repeats=repeats, warmup=0)
    same = torch.allclose(gather_patches(volume[None], coords[None], large=True)[0], naive_patches, atol=1e-6)
    rows = [
        {"step": "dataset item from NIfTI", "seconds": item_nifti},
        {"step": "dataset item from cache", "seconds": item_cache},
        {"step": f"gather_patches ({device.type})", "seconds": device_seconds},
        {"step": "naive unfold gather (cpu)", "seconds": naive_seconds},
        {"step": "training sample from NIfTI (item + gather)", "seconds": item_nifti + device_seconds},
        {"step": "training sample from cache (item + gather)", "seconds": item_cache + device_seconds},
    ]
    result = {
        "size": size, "smoke": smoke, "device": str(device), "volume_shape": list(grid), "input_shape": list(shape),
        "points": samples, "threads": torch.get_num_threads(), "rows": rows, "cache_build_seconds": build_seconds,
        "nifti_over_cache": (item_nifti + device_seconds) / (item_cache + device_seconds),
        "item_nifti_over_cache": item_nifti / item_cache, "naive_over_device_gather": naive_seconds / device_seconds,
        "gathers_agree": bool(same), "items_agree": bool(items_agree),
    }
    print(format_table(rows))
    print(f"NIfTI / cache: item {result['item_nifti_over_cache']:.2f}×, sample {result['nifti_over_cache']:.2f}×   "
          f"naive / device gather: "
          f"{result['naive_over_device_gather']:.2f}×   (cache build {build_seconds:.2f} s, items agree: {items_agree}, "
          f"gathers agree: {same})")
    return add_preprocess_table(result, smoke, repeats, inputs_seconds)


def add_preprocess_table(result: dict, smoke: bool, repeats: int, inputs_seconds: float) -> dict:
    """Add the preprocessing table to `result`, print it and write the JSON."""
    with tempfile.TemporaryDirectory() as folder:
        inputs_dir = Path(folder) if smoke else INPUTS_DIR
        start = time.perf_counter()
        roots = {dataset: synthetic_inputs(dataset, shapes[0] if smoke else shapes[1],
                                           1 if dataset in ("brats", "lits") else FINGERPRINT_CASES, inputs_dir)
                 for dataset, shapes in LAYOUT_SHAPES.items()}
        result["inputs_seconds"] = inputs_seconds + time.perf_counter() - start
        result["inputs_dir"] = "(temporary)" if smoke else str(INPUTS_DIR)
        layout_rows = preprocess_rows(roots, smoke, repeats)
    brats_rate = layout_rows[0]["seconds"] / layout_rows[0]["input_megavoxels"]
    result["preprocess_rows"] = layout_rows
    result["preprocess_per_megavoxel_over_brats"] = {
        row["dataset"]: (row["seconds"] / row["input_megavoxels"]) / brats_rate for row in layout_rows}
    print(format_table(layout_rows))
    print(f"(synthetic inputs: {result['inputs_seconds']:.1f} s to write or reuse, in {result['inputs_dir']})")
    result["json"] = str(write_result("data", result))
    return result


def preprocess_rows(roots: dict[str, Path], smoke: bool, repeats: int) -> list[dict]:
    """Seconds to preprocess one case of each layout (NIfTI → model grid) under `roots`, with its shapes."""
    rows = []
    for dataset, root in roots.items():
        shape = LAYOUT_SHAPES[dataset][0 if smoke else 1]
        cases = discover(dataset, root, "all")
        fingerprint_seconds = 0.0
        if dataset in ("brats", "lits"):
            config = demo_config("C", dataset) if smoke else get_config("C", dataset)
        else:
            start = time.perf_counter()
            fingerprint = compute_fingerprint(cases, dataset_info(dataset, root))
            fingerprint_seconds = time.perf_counter() - start
            config = network_config("C", dataset, demo=smoke, fingerprint=fingerprint)
        seconds = time_call(lambda: load_case(cases[0], config, with_border=False), repeats=repeats, warmup=0)
        rows.append({"dataset": dataset, "input_shape": "×".join(map(str, shape)),
                     "model_grid": "×".join(map(str, config.volume_shape)), "channels": config.in_channels,
                     "input_megavoxels": config.in_channels * float(torch.tensor(shape).prod()) / 1e6,
                     "seconds": seconds, "fingerprint_seconds": fingerprint_seconds})
    return rows


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, "tiny volumes, a few seconds", argv)


if __name__ == "__main__":
    raise SystemExit(main())
