"""Paper Table 2 analogue: training and inference memory of O-Net, OSS-Net A-D and the two U-Nets.

    python -m benchmarks.bench_memory            # CPU: device-free counts at the paper's sizes (~1 min)
    python -m benchmarks.bench_memory --size gpu # torch.cuda.max_memory_allocated at the paper's sizes

The paper's claim (docs/reference.md §13.2; figures in `benchmarks.paper`): OSS-Net C trains in 2.59 GiB
where the 3D residual U-Net needs 14.41 GiB (5.6x). Every figure here is in GiB (2^30 bytes).
Both are checkable here without a GPU:

- Training activations: the bytes autograd saves for backward during the forward + loss of the project's
  one training step (`oss_net.training.step.step_losses`, counted by `oss_net.models.memory.saved_tensor_bytes`),
  on the *meta* device at the real sizes, so nothing is computed or allocated and no scaling is needed. Every
  PAU counts as the fused kernel (saves its input only). One volume per step (activations scale linearly with
  the batch); OSS-Net decodes 2^14 points per volume; the 3D U-Net sees the whole volume at its network grid
  (BraTS 256x256x160, LiTS 224^3 as the paper); the 2D U-Net one slice at native resolution (the paper's
  figure is per slice).
- Parameter state: weights + gradients + two Adam moments = 4x the parameter bytes, a separate column.
- Inference: the peak of the bytes held by live tensors (inputs, patches, activations; weights added)
  during encode + decode of 2^14 or 2^17 points in one chunk, again on the meta device: a dispatch mode
  counts each storage when an op creates it and releases it when its last tensor dies.
- GPU (size="gpu"): torch.cuda.max_memory_allocated of one `train_step` with Adam, and of the inference calls.
- Cross-check (size="cpu", not smoke): a subprocess runs one real `train_step` (SGD: no optimiser state) of
  C and of the 3D U-Net at 1/64 of the BraTS size (grid /4 per axis, 2^14/64 points) and reports its
  peak-RSS growth, next to the device-free count for the same step.

The figure to check: `ratio_unet3d_over_C` = 3D U-Net / C training activations at the same (BraTS) grid;
the target is >= 6x (paper 5.6x with totals).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchmarks.common import RESULTS_DIR, bench_main, benchmark_device, format_table, to_gib, write_result
from benchmarks.paper import TABLE2_DATASETS, UNET3D_LITS_NATIVE_TRAIN_GIB, table2_gib
from oss_net.io import atomic_write
from oss_net.models import build_model, get_config, is_dense
from oss_net.models.memory import saved_tensor_bytes
from oss_net.models.unet import build_unet, get_unet_config
from oss_net.training.step import step_losses, train_step
from pade_activation_unit import PAU

OSS_MODELS: tuple[str, ...] = ("O-Net", "A", "B", "C", "D")
UNET_MODELS: tuple[str, ...] = ("unet3d", "unet2d")
MODELS: tuple[str, ...] = OSS_MODELS + UNET_MODELS
TRAIN_POINTS = 2**14
INFERENCE_POINTS: tuple[int, ...] = (2**14, 2**17)


def build(name: str, dataset: str, device: torch.device | str, **overrides: Any) -> nn.Module:
    """The model `name` (Table-1 name or unet3d/unet2d) at `dataset` size, built directly on `device`.

    The 2D U-Net trains on one slice per step unless overridden: the paper's 2D figure is per slice.
    """
    with torch.device(device):
        if name == "unet2d":
            overrides = {"training_slices": 1, **overrides}
        if name in UNET_MODELS:
            return build_unet(get_unet_config(name, dataset, **overrides))
        return build_model(get_config(name, dataset, **overrides))


def unet_input_shape(model: nn.Module) -> tuple[int, int, int]:
    """The grid one U-Net training/inference call sees: the network grid (3D) or one native slice (2D)."""
    config = model.config
    shape = list(config.network_shape)
    if config.name == "unet2d":
        shape[config.slice_axis] = 1
    return tuple(shape)


def training_batch(model: nn.Module, points: int, device: torch.device | str) -> dict[str, torch.Tensor]:
    """One random batch of `model`'s real size, as the data pipeline gives it (`collate_samples` keys).

    One volume [1, C, *volume_shape] with its label [1, *volume_shape] and, for OSS-Net, `points` points
    [1, N, 3] with their labels [1, N, 1]. On the meta device shapes only.
    """
    config = model.config
    batch = {
        "volume": torch.randn(1, config.in_channels, *config.volume_shape, device=device),
        "label": torch.randint(0, 2, (1, *config.volume_shape), dtype=torch.uint8, device=device),
    }
    if not is_dense(model):
        batch["coords"] = torch.rand(1, points, 3, device=device) * (torch.tensor(config.volume_shape, device=device) - 1)
        batch["labels"] = torch.randint(0, 2, (1, points, 1), device=device).float()
    return batch


def training_forward(model: nn.Module, points: int, device: torch.device | str) -> Callable[[], torch.Tensor]:
    """A closure running the forward + loss of the one training step (`oss_net.training.step`) on a random
    batch of the real size; returns the loss that `train_step` back-propagates."""
    batch = training_batch(model, points, device)
    return lambda: step_losses(model, batch).total


def inference_call(model: nn.Module, points: int, device: torch.device | str) -> Callable[[], torch.Tensor]:
    """A closure that creates the inputs and predicts, as one inference call would (inputs count as memory).

    OSS-Net: encode the volume, fold the decoder for it, decode `points` points (with their patches) in one
    chunk. 3D U-Net: the dense
    prediction of the whole volume (the point count does not matter). 2D U-Net: one slice.
    """
    config = model.config

    if config.name == "unet3d":
        return lambda: model.predict_volume(torch.randn(1, config.in_channels, *config.volume_shape, device=device))
    if config.name == "unet2d":
        return lambda: torch.sigmoid(model(torch.randn(1, config.in_channels, *unet_input_shape(model), device=device)))

    def predict() -> torch.Tensor:
        volume = torch.randn(1, config.in_channels, *config.volume_shape, device=device)
        coords = torch.rand(1, points, 3, device=device) * (torch.tensor(config.volume_shape, device=device) - 1)
        patches = torch.randn(1, points, config.patch_channels, 7, 7, 7, device=device) if config.patches else None
        return model.decode(coords, model.fold(model.encode(volume)), patches)  # folded, as the predictor does

    return predict


def parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def pau_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, PAU)]


def training_activation_bytes(model: nn.Module, points: int = TRAIN_POINTS, device: torch.device | str = "meta") -> int:
    """Bytes saved for backward by the forward + loss of one training step (PAUs counted as the fused kernel)."""
    model.train()
    forward = training_forward(model, points, device)
    return saved_tensor_bytes(forward, exclude=list(model.parameters()), opaque_modules=pau_modules(model))


class PeakLiveBytes(TorchDispatchMode):
    """Peak of the bytes held by live tensor storages created while the mode is active.

    Every op output is keyed by its storage; a storage counts from its first tensor until its last tensor
    is garbage-collected (views share the key). `external` storages (weights) are never counted. Inside an
    `opaque` module (a PAU), temporaries are ignored and only the module's output is counted, as for a
    fused kernel. Works on the meta device, where nothing is allocated.
    """

    def __init__(self, external: list[torch.Tensor] = (), opaque: list[nn.Module] = ()) -> None:
        super().__init__()
        self._external = {t.untyped_storage()._cdata for t in external}
        self._storages: dict[int, list[int]] = {}  # key -> [bytes, live tensors]
        self._inside = 0
        self.live = 0
        self.peak = 0
        self._handles = [m.register_forward_pre_hook(self._enter) for m in opaque]
        self._handles += [m.register_forward_hook(self._leave) for m in opaque]

    def __exit__(self, *args: Any) -> None:
        for handle in self._handles:
            handle.remove()
        super().__exit__(*args)

    def _enter(self, module: nn.Module, inputs: Any) -> None:
        self._inside += 1

    def _leave(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._inside -= 1
        if not self._inside:
            self._track(output)

    def _release(self, key: int) -> None:
        entry = self._storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[key]

    def _track(self, outputs: Any) -> None:
        for tensor in tree_flatten(outputs)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            key = tensor.untyped_storage()._cdata
            if key in self._external:
                continue
            entry = self._storages.get(key)
            if entry is None:
                entry = self._storages[key] = [tensor.untyped_storage().nbytes(), 0]
                self.live += entry[0]
                self.peak = max(self.peak, self.live)
            entry[1] += 1
            weakref.finalize(tensor, self._release, key)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        outputs = func(*args, **(kwargs or {}))
        if not self._inside:
            self._track(outputs)
        return outputs


def inference_peak_bytes(model: nn.Module, points: int, device: torch.device | str = "meta") -> int:
    """Peak live tensor bytes (weights excluded) of one inference call, measured device-free."""
    model.eval()
    call = inference_call(model, points, device)
    with torch.inference_mode(), PeakLiveBytes(list(model.parameters()) + list(model.buffers()), pau_modules(model)) as tracker:
        call()
    return tracker.peak


def cpu_row(name: str, dataset: str) -> dict[str, Any]:
    """One Table-2 row from device-free counts at the real sizes."""
    model = build(name, dataset, "meta")
    params = parameter_bytes(model)
    activations = training_activation_bytes(model)
    row: dict[str, Any] = {
        "model": name,
        "dataset": dataset,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_act_GiB": to_gib(activations),
        "param_state_GiB": to_gib(4 * params),
        "train_total_GiB": to_gib(activations + 4 * params),
    }
    for points in INFERENCE_POINTS:
        row[f"infer_2^{points.bit_length() - 1}_GiB"] = to_gib(inference_peak_bytes(model, points) + params)
    row.update(table2_gib(name, dataset))
    return row


def gpu_row(name: str, dataset: str) -> dict[str, Any]:
    """One Table-2 row from torch.cuda.max_memory_allocated at the real sizes (OOM is recorded, not raised)."""
    device = torch.device("cuda")
    row: dict[str, Any] = {"model": name, "dataset": dataset}
    model = build(name, dataset, device)
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        batch = training_batch(model.train(), TRAIN_POINTS, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, batch, optimizer)
        torch.cuda.synchronize()
        row["train_GiB"] = to_gib(torch.cuda.max_memory_allocated())
        optimizer.zero_grad(set_to_none=True)
        del optimizer, batch
    except torch.cuda.OutOfMemoryError:
        row["train_GiB"] = "OOM"
    torch.cuda.empty_cache()
    for points in INFERENCE_POINTS:
        key = f"infer_2^{points.bit_length() - 1}_GiB"
        try:
            model.eval()
            call = inference_call(model, points, device)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                call()
            torch.cuda.synchronize()
            row[key] = to_gib(torch.cuda.max_memory_allocated())
        except torch.cuda.OutOfMemoryError:
            row[key] = "OOM"
        torch.cuda.empty_cache()
    row.update(table2_gib(name, dataset))
    return row


# One real CPU training step in a fresh process: its peak-RSS growth against the device-free count. SGD
# keeps no state, so the peak is the step's activations and gradients, as counted.
_RSS_PROBE = """
import json, resource, sys, torch
from benchmarks.bench_memory import build, training_batch
from oss_net.training.step import train_step
name, dataset, shape, points = sys.argv[1], sys.argv[2], tuple(json.loads(sys.argv[3])), int(sys.argv[4])
torch.manual_seed(0)
overrides = {"volume_shape": shape} if name not in ("unet3d", "unet2d") else {"volume_shape": shape, "input_shape": shape}
model = build(name, dataset, "cpu", **overrides).train()
batch = training_batch(model, points, "cpu")
optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
with open("/proc/self/status") as status:
    before = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
train_step(model, batch, optimizer)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from pade_activation_unit import backend_for
print(json.dumps({"rss_growth_bytes": (peak - before) * 1024, "pau_backend": backend_for(torch.empty(1))}))
"""


def rss_cross_check(name: str, dataset: str, shape: tuple[int, int, int], points: int) -> dict[str, Any]:
    """Peak RSS growth of one real training step (forward + backward) next to its device-free count."""
    overrides: dict[str, Any] = {"volume_shape": shape}
    if name in UNET_MODELS:
        overrides["input_shape"] = shape
    model = build(name, dataset, "meta", **overrides)
    completed = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, name, dataset, json.dumps(list(shape)), str(points)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )
    probe = json.loads(completed.stdout.strip().splitlines()[-1])
    if probe["pau_backend"] == "reference":  # the pure-PyTorch PAU saves its intermediates: count them as they are
        activations = saved_tensor_bytes(training_forward(model.train(), points, "meta"), exclude=list(model.parameters()))
    else:
        activations = training_activation_bytes(model, points)
    return {"model": name, "dataset": dataset, "grid": "x".join(map(str, shape)), "points": points,
            "pau_backend": probe["pau_backend"], "counted_act_plus_grad_GiB": to_gib(activations + parameter_bytes(model)),
            "rss_growth_GiB": to_gib(probe["rss_growth_bytes"])}


def _plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Grouped log-scale bars: training total and inference at 2^14 / 2^17 per model, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    keys = [k for k in ("train_total_GiB", "train_GiB", "infer_2^14_GiB", "infer_2^17_GiB") if any(k in r for r in rows)]
    datasets = sorted({r["dataset"] for r in rows})
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        subset = [r for r in rows if r["dataset"] == dataset]
        width = 0.8 / len(keys)
        for k, key in enumerate(keys):
            values = [r[key] if isinstance(r.get(key), float) else 0.0 for r in subset]
            axis.bar([i + k * width for i in range(len(subset))], values, width, label=key.replace("_GiB", ""))
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(subset))], [r["model"] for r in subset])
        axis.set_yscale("log")
        axis.set_ylabel("GiB")
        axis.set_title(f"{title}: {dataset}")
        axis.legend(fontsize=7)
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)


def run(size: str = "cpu", smoke: bool = False, models: tuple[str, ...] | None = None,
        datasets: tuple[str, ...] | None = None) -> dict:
    """Table 2 at the paper's sizes; smoke = C and the 3D U-Net on BraTS only (seconds). `models` and
    `datasets` choose the rows instead (benchmarks/gpu_check.sh: C and the 3D U-Net on both datasets);
    both must include C and the 3D U-Net, whose ratio is the figure to check."""
    benchmark_device(size)
    models = models or (("C", "unet3d") if smoke else MODELS)
    datasets = datasets or (("brats",) if smoke else TABLE2_DATASETS)
    if not {"C", "unet3d"} <= set(models):
        raise ValueError(f"models must include 'C' and 'unet3d' (their ratio is the figure to check), got {models}")
    row_fn = gpu_row if size == "gpu" else cpu_row
    rows = [row_fn(name, dataset) for dataset in datasets for name in models]
    key = "train_GiB" if size == "gpu" else "train_act_GiB"
    by_name = {(r["model"], r["dataset"]): r for r in rows}
    ratios = {}
    for dataset in datasets:
        unet, oss = by_name[("unet3d", dataset)].get(key), by_name[("C", dataset)].get(key)
        ratios[dataset] = unet / oss if isinstance(unet, float) and isinstance(oss, float) else None
    result: dict[str, Any] = {
        "size": size,
        "smoke": smoke,
        "measure": "torch.cuda.max_memory_allocated" if size == "gpu" else "device-free (meta): saved-for-backward bytes, peak live bytes",
        "batch": 1,
        "train_points": TRAIN_POINTS,
        "rows": rows,
        f"ratio_unet3d_over_C_{key}": ratios,
        "target_ratio": 6.0,
    }
    if size == "cpu" and not smoke:
        native = build("unet3d", "lits", "meta", input_shape=(512, 512, 512))
        result["unet3d_lits_native_512_train_act_GiB"] = to_gib(training_activation_bytes(native))
        print(f"3D U-Net at native LiTS 512^3: {result['unet3d_lits_native_512_train_act_GiB']:.1f} GiB of activations "
              f"(paper: > {UNET3D_LITS_NATIVE_TRAIN_GIB:g} GiB)")
        result["rss_cross_check"] = [rss_cross_check(name, "brats", (64, 64, 40), TRAIN_POINTS // 64) for name in ("C", "unet3d")]
    print(format_table(rows, ["model", "dataset", "params_M", key, "param_state_GiB", "train_total_GiB",
                              "infer_2^14_GiB", "infer_2^17_GiB", "paper_train_GiB", "paper_infer_2^17_GiB"]))
    print(f"3D U-Net / C ({key}): " + ", ".join(f"{d} {r:.2f}x" if r else f"{d} n/a" for d, r in ratios.items()))
    if "rss_cross_check" in result:
        print(format_table(result["rss_cross_check"]))
    name = "memory" if size == "cpu" else "memory_gpu"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("matplotlib") is None:  # a GPU machine's own python may lack it: figures first
        result["plot"] = "skipped: matplotlib not installed"
    else:
        _plot(rows, str(RESULTS_DIR / f"{name}.png"), "Table 2 analogue")
        result["plot"] = str(RESULTS_DIR / f"{name}.png")
    write_result(name, result)
    return result


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, __doc__, "C and the 3D U-Net on BraTS only", argv)


if __name__ == "__main__":
    raise SystemExit(main())
