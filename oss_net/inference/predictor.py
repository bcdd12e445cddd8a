"""Predictor: encode a volume once, then refine its occupancy coarse to fine through the decoder.

    predictor = Predictor(load_model("best.pt"), mode="auto", device="cuda")
    prediction = predictor.predict(case.image)        # image [C, *volume_shape] on the model grid
    prediction.occupancy                              # [*volume_shape] float32 probabilities (CPU)

Modes: "standard" evaluates the whole first lattice; "prior" only where the encoder's low-res
segmentation says so (docs/reference.md §8.2); "both" runs the two, logs their disagreement in voxels, and
keeps the prior grid (as the original did); "auto" is "prior" when the configuration has the
segmentation head and "standard" (logged) otherwise. Asking for "prior" or "both" on a
configuration without the head is an error instead of the original's crash (docs/reference.md §12.2).

The refinement rule ("ours" or "original", `oss_net.inference.refine`) defaults to the one of the
checkpoint's mode: "original" for a paper-mode configuration (`oss_net.compat`), "ours" otherwise.

Per case the predictor encodes once (in eval mode without autograd, which also folds the decoder's
batch norms and latent 0 into its GEMM weights for this volume: `oss_net.models.decoder.FoldedDecoder`),
pads the patch source once, then decodes every chunk of every stage with those.

The U-Net baselines have no decoder to query: `make_predictor` (the one place that tells them apart)
gives them a `DensePredictor`, which returns the same `Prediction` with mode "dense".
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from oss_net.compat import behaviour
from oss_net.data import PatchSource
from oss_net.io import OSSNetError
from oss_net.labels import scheme_of
from oss_net.models import Encoding, is_dense
from oss_net.precision import AMP_MODES, autocast

from .classes import class_values, decoder_outputs, lattice_classes
from .defaults import CHUNK_SIZE, CPU_CHUNK_SIZE, MODE, STAGES, THRESHOLD
from .refine import REFINEMENTS, OccupancyLattice, RefineStats, check_stages, refine_lattice, seed_from_segmentation

logger = logging.getLogger(__name__)

MODES = ("auto", "standard", "prior", "both")


class InferenceError(OSSNetError):
    """A user error of inference: a mode the model cannot run, a bad option, a bad output folder."""


@dataclass
class Prediction:
    """The result for one volume.

    occupancy: [*volume_shape] float32 probabilities on the model grid (CPU), the grid of `mode`;
        [K, *volume_shape] for a model of K > 1 classes.
    mode: the mode that produced `occupancy` ("standard", "prior", or "dense" for a U-Net).
    seconds: wall-clock seconds of encoding plus refinement of that grid.
    points_evaluated: decoder queries of that grid (every voxel for a U-Net).
    runs: per mode run, {"seconds", "encode_seconds", "refine_seconds", "points_evaluated", "stages": [...]}.
    disagreement: voxels where standard and prior differ (mode "both" only).
    threshold: probability above which a voxel is foreground.
    """

    occupancy: torch.Tensor
    mode: str
    seconds: float
    points_evaluated: int
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    disagreement: int | None = None
    threshold: float = THRESHOLD

    @property
    def mask_model_grid(self) -> torch.Tensor:
        """Binary foreground [*volume_shape] bool on the model grid."""
        return self.occupancy > self.threshold


class Predictor:
    """Inference settings for one model, and the encode → refine steps.

    Args:
        model: an OSSNet (`encode`, `decode`, `config`). It is put in eval mode and moved to `device`.
        mode: "auto", "standard", "prior" or "both" (see the module docstring).
        stages: refinement strides, coarse to fine, each dividing the previous one.
        chunk_size: most points decoded at once (and patches gathered at once); None: `default_chunk_size(device)`.
        amp: "off", "bf16" or "fp16": autocast dtype of encoder and decoder.
        device: where the model runs (default: where its parameters are).
        threshold: occupancy probability above which a voxel is foreground.
        recheck_boundary: widen the refinement window of rule "ours" (see `OccupancyLattice`).
        refinement: the candidate rule, "ours" or "original"; None: the configuration's compat mode decides.
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = MODE,
        stages: Sequence[int] = STAGES,
        chunk_size: int | None = None,
        amp: str = "off",
        device: torch.device | str | None = None,
        threshold: float = THRESHOLD,
        recheck_boundary: bool = False,
        refinement: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise InferenceError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if amp not in AMP_MODES:
            raise InferenceError(f"unknown amp {amp!r}; expected one of {', '.join(AMP_MODES)}")
        if chunk_size is not None and chunk_size < 1:
            raise InferenceError(f"chunk_size must be >= 1, got {chunk_size}")
        try:
            self.stages = check_stages(stages)
        except ValueError as error:
            raise InferenceError(str(error)) from None
        self.config = model.config
        self.refinement = refinement if refinement is not None else behaviour(self.config.compat).refinement
        if self.refinement not in REFINEMENTS:
            raise InferenceError(f"unknown refinement {self.refinement!r}; expected one of {', '.join(REFINEMENTS)}")
        if recheck_boundary and self.refinement != "ours":
            raise InferenceError("recheck_boundary widens the window of refinement 'ours'; "
                                 f"refinement {self.refinement!r} has its own (use --refinement ours)")
        has_head = bool(self.config.segmentation_head)
        if mode in ("prior", "both") and not has_head:
            raise InferenceError(
                f"mode {mode!r} needs the encoder's segmentation head, which configuration "
                f"{self.config.name!r} does not have; use --mode standard (or auto)"
            )
        if mode == "auto":
            mode = "prior" if has_head else "standard"
            if not has_head:
                logger.info("configuration %s has no segmentation head: mode auto falls back to standard", self.config.name)
        self.mode = mode
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype  # the input's, so a float64 model runs in float64
        self.chunk_size = int(chunk_size) if chunk_size is not None else default_chunk_size(self.device)
        self.amp = amp
        self.threshold = float(threshold)
        self.recheck_boundary = bool(recheck_boundary)

    def predict(self, image: Any) -> Prediction:
        """Occupancy of one volume `image [C, *volume_shape]` (numpy or torch) on the model grid, computed in the
        model's dtype (float32, or float64 for a model loaded so)."""
        volume = torch.as_tensor(image).to(self.device, self.dtype)[None]  # [1, C, D, H, W]
        modes = ("standard", "prior") if self.mode == "both" else (self.mode,)
        grids: dict[str, torch.Tensor] = {}
        runs: dict[str, dict[str, Any]] = {}
        with torch.inference_mode():
            for mode in modes:
                grids[mode], runs[mode] = self._run(volume, mode)
        kept = modes[-1]
        disagreement = None
        if len(modes) == 2:
            decide = scheme_of(self.config).rule(self.threshold).decide
            disagreement = int((decide(grids["standard"]) != decide(grids["prior"])).any(dim=0).sum())
            logger.info("standard and prior disagree in %d voxels", disagreement)
        grid = decoder_outputs(self.config, grids[kept])  # [K, *volume_shape] (exclusive: the background first)
        return Prediction(
            occupancy=(grid[0] if len(grid) == 1 else grid).float().cpu(),
            mode=kept,
            seconds=runs[kept]["seconds"],
            points_evaluated=runs[kept]["points_evaluated"],
            runs=runs,
            disagreement=disagreement,
            threshold=self.threshold,
        )

    def _run(self, volume: torch.Tensor, mode: str) -> tuple[torch.Tensor, dict[str, Any]]:
        """One mode on `volume [1, C, *S]`: encode (and fold the decoder), pad the patch source once, refine.
        (grid [K, *S], run record)"""
        _synchronize(self.device)
        start = time.perf_counter()
        with autocast(self.amp, self.device):
            encoding = self.model.encode(volume)
        source = self._patch_source(volume)
        seed = None
        flags = behaviour(self.config.compat)  # paper mode: the original's seed upsampling and lattices
        scheme = scheme_of(self.config)
        if mode == "prior":
            seed = seed_from_segmentation(encoding.segmentation[0].float(), self.config.volume_shape, self.stages[0],
                                          align_corners=flags.seed_align_corners, last_index=flags.lattice_last_index,
                                          keep_classes=scheme.mode != "binary")
        lattice = OccupancyLattice(
            self.config.volume_shape, self.stages, seed=seed, threshold=self.threshold,
            classes=lattice_classes(self.config), recheck_boundary=self.recheck_boundary, device=self.device,
            refinement=self.refinement, last_index=flags.lattice_last_index, rule=scheme.rule(self.threshold),
        )
        _synchronize(self.device)
        encode_seconds = time.perf_counter() - start
        stats = refine_lattice(lattice, self._decoder(source, encoding, self.amp), self.chunk_size)
        grid = lattice.to_dense()
        _synchronize(self.device)
        seconds = time.perf_counter() - start
        logger.info("%s inference (%s refinement): %.3f s, %d points evaluated", mode, self.refinement, seconds,
                    stats.points_evaluated)
        return grid, _run_record(stats, seconds, encode_seconds)

    def _patch_source(self, volume: torch.Tensor) -> PatchSource | None:
        """The case's padded (and pooled) volume [1, C, *S] to gather every chunk's patches from; None without patches."""
        if not self.config.patches:
            return None
        return PatchSource(volume, large=self.config.large_patches, pooling=self.config.large_patch_pooling)

    def _decoder(self, source: PatchSource | None, encoding: Encoding, amp: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """points [N, 3] (model-grid voxel coordinates, any dtype, may require grad) -> probabilities [N, K],
        with the patches at the points (interpolated between voxel centres) gathered on the device from the case's source."""

        def decode(points: torch.Tensor) -> torch.Tensor:
            query = points.to(self.device)[None]  # [1, N, 3]
            patches = source.gather(query.detach()) if source is not None else None
            with autocast(amp, self.device):
                return class_values(self.config, self.model.decode(query, encoding, patches)[0].float())  # [N, K]

        return decode

    def point_decoder(self, image: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """A differentiable decoder of one volume for mesh refinement: points [N, 3] float → probabilities [N].

        Points are model-grid voxel coordinates and may require grad; the latents are computed once
        without grad, the patches are interpolated at the points (no gradient flows through them), and the
        decoder runs in the model's dtype (float32 unless loaded otherwise) whatever `amp` says.
        """
        volume = torch.as_tensor(image).to(self.device, self.dtype)[None]  # [1, C, D, H, W]
        with torch.no_grad():
            encoding = self.model.encode(volume)
        decode = self._decoder(self._patch_source(volume), encoding, amp="off")
        return lambda points: decode(points.to(self.dtype))[:, 0]

    def predict_case(self, case: Any) -> Prediction:
        """`predict` on a loaded `oss_net.data.Case` (its `image` is already on the model grid)."""
        return self.predict(case.image)


class DensePredictor:
    """A U-Net baseline's whole-volume prediction, as a `Predictor` look-alike for the shared writers.

    Args:
        model: a U-Net (`predict_volume`, `config`). It is put in eval mode and moved to `device`.
        amp: "off", "bf16" or "fp16": autocast dtype of the forward pass.
        device: where the model runs (default: where its parameters are).
        threshold: probability above which a voxel is foreground.
    """

    mode = "dense"
    refinement = None  # one dense pass: nothing is refined

    def __init__(self, model: nn.Module, amp: str = "off", device: torch.device | str | None = None, threshold: float = THRESHOLD) -> None:
        if amp not in AMP_MODES:
            raise InferenceError(f"unknown amp {amp!r}; expected one of {', '.join(AMP_MODES)}")
        self.config = model.config
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.amp = amp
        self.threshold = float(threshold)

    def predict(self, image: Any) -> Prediction:
        """Probabilities of one volume `image [C, *volume_shape]` (numpy or torch) on the model grid."""
        volume = torch.as_tensor(image, dtype=torch.float32).to(self.device)[None]  # [1, C, D, H, W]
        with torch.inference_mode():
            _synchronize(self.device)
            start = time.perf_counter()
            with autocast(self.amp, self.device):
                probabilities = self.model.predict_volume(volume)[0, 0].float()  # [*volume_shape]
            _synchronize(self.device)
            seconds = time.perf_counter() - start
        voxels = probabilities.numel()
        logger.info("dense inference: %.3f s, %d voxels", seconds, voxels)
        return Prediction(
            occupancy=probabilities.cpu(), mode=self.mode, seconds=seconds, points_evaluated=voxels,
            runs={self.mode: {"seconds": seconds, "points_evaluated": voxels}}, threshold=self.threshold,
        )

    def predict_case(self, case: Any) -> Prediction:
        """`predict` on a loaded `oss_net.data.Case`."""
        return self.predict(case.image)


def default_chunk_size(device: torch.device) -> int:
    """Points per decoder call when none is asked for: CPU_CHUNK_SIZE on the CPU, where a smaller chunk keeps
    its patches in cache, CHUNK_SIZE (the original's) on a GPU, which wants large batches."""
    return CPU_CHUNK_SIZE if device.type == "cpu" else CHUNK_SIZE


def make_predictor(model: nn.Module, **options: Any) -> Predictor | DensePredictor:
    """The predictor for `model` with `Predictor`'s options; a U-Net ignores mode, stages, chunk_size,
    recheck_boundary and refinement (logged when one was set)."""
    if not is_dense(model):
        return Predictor(model, **options)
    ignored = sorted(k for k in options if k not in ("amp", "device", "threshold"))
    if ignored:
        logger.info("%s predicts densely: %s do not apply and are ignored", model.config.name, ", ".join(ignored))
    return DensePredictor(model, **{k: v for k, v in options.items() if k not in ignored})


def _run_record(stats: RefineStats, seconds: float, encode_seconds: float) -> dict[str, Any]:
    """{"seconds" (end to end), "encode_seconds" (encoder, folded decoder, patch source), "refine_seconds",
    "points_evaluated", "stages"}."""
    record = stats.to_dict()
    record["refine_seconds"] = record.pop("seconds")
    record["seconds"] = seconds
    record["encode_seconds"] = encode_seconds
    return record


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so wall-clock times are the work's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
