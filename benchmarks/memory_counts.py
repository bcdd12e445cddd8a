"""Device-free memory of the models at their real sizes: what `bench_memory`, `memory_steps` and `memory_curve` count.

- Training activations: the bytes autograd saves for backward during the forward + loss of the project's
  one training step (`oss_net.training.step.step_losses`, counted by `oss_net.models.memory`), on the
  *meta* device at the real sizes, so nothing is computed or allocated and no scaling is needed. Every
  PAU counts as the fused kernel (saves its input only). With activation recomputation
  (`oss_net.models.recompute`): what the forward keeps plus the largest block's own activations, which the
  backward pass holds while it recomputes that block.
- Inference: the peak of the bytes held by live tensors during one call, again on the meta device: a
  dispatch mode counts each storage when an op creates it and releases it when its last tensor dies.

Every figure is in bytes here; the benchmarks turn them into GiB (`benchmarks.common.to_gib`).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from oss_net.models import build_model, get_config, is_dense, recomputed_blocks, set_activation_recomputation
from oss_net.models.memory import largest_saved_bytes_within, saved_tensor_bytes
from oss_net.models.unet import build_unet, get_unet_config
from oss_net.training.step import step_losses
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


def training_activation_bytes(model: nn.Module, points: int = TRAIN_POINTS, device: torch.device | str = "meta",
                              recompute: bool = False) -> int:
    """Activation bytes one training step holds for backward at its peak (PAUs counted as the fused kernel).

    Without recomputation: what the forward + loss save for backward. With it (`oss_net.models.recompute`):
    what the forward keeps (the blocks' inputs and everything outside the blocks) plus the largest block's
    own activations, which the backward pass holds while it recomputes that block.
    """
    model.train()
    forward = training_forward(model, points, device)
    weights, opaque = list(model.parameters()), pau_modules(model)
    if not recompute:
        return saved_tensor_bytes(forward, exclude=weights, opaque_modules=opaque)
    blocks = recomputed_blocks(model)
    previous = [block.recompute for block in blocks]
    set_activation_recomputation(model, True)
    try:
        kept = saved_tensor_bytes(forward, exclude=weights, opaque_modules=opaque, recomputed_modules=blocks)
    finally:
        for block, state in zip(blocks, previous):
            block.recompute = state
    return kept + largest_saved_bytes_within(forward, blocks, exclude=weights, opaque_modules=opaque)


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


PARAMETER_STATE_FACTOR = 4  # weights + gradients + Adam's two moments, in parameter bytes


def build_at(name: str, dataset: str, grid: tuple[int, int, int], device: torch.device | str) -> nn.Module:
    """`build` on the model grid `grid`: OSS-Net's volume_shape; a U-Net's volume and network grid (it runs
    at `grid` itself, with no resize: at LiTS's 512^3 the native U-Net, not the paper's 224^3 one)."""
    overrides: dict[str, Any] = {"volume_shape": tuple(grid)}
    if name in UNET_MODELS:
        overrides["input_shape"] = tuple(grid)
    return build(name, dataset, device, **overrides)


def training_memory_bytes(model: nn.Module, recompute: bool = False, points: int = TRAIN_POINTS) -> tuple[int, int]:
    """(activations, parameter state) of one training step of `model` (built on the meta device), in bytes."""
    return training_activation_bytes(model, points, recompute=recompute), PARAMETER_STATE_FACTOR * parameter_bytes(model)
