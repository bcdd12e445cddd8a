"""Predictor: encode a volume once, then refine its occupancy coarse to fine through the decoder.

    predictor = Predictor(load_model("best.pt"), PredictOptions(mode="auto"), device="cuda")
    prediction = predictor.predict(case.image)        # image [C, *volume_shape] on the model grid
    prediction.occupancy                              # [*volume_shape] float32 probabilities (CPU)

Modes: "standard" evaluates the whole first lattice; "prior" only where the encoder's low-res
segmentation says so (docs/reference.md §8.2); "both" runs the two, logs their disagreement in voxels, and
keeps the prior grid (as the original did); "auto" is "prior" when the configuration has the
segmentation head and "standard" (logged) otherwise. Asking for "prior" or "both" on a
configuration without the head is an error instead of the original's crash (docs/reference.md §12.2).

The refinement rule ("ours" or "original", `oss_net.inference.lattice`) defaults to the one of the
checkpoint's mode: "original" for a paper-mode configuration (`oss_net.compat`), "ours" otherwise.

Per case the predictor encodes once, asks the model to fold the decoder for that volume (`OSSNet.fold`:
the batch norms and latent 0 go into the GEMM weights, `oss_net.models.decoder.FoldedDecoder`), pads the
patch source once, then decodes every chunk of every stage with those. The options arrive checked
(`PredictOptions`); the predictor checks only what needs the model.

The lattice holds K class probabilities per voxel, the decoder gives its outputs: `lattice_classes`,
`class_values` and `decoder_outputs` translate between the two (the background of exclusive mode is
left out of the lattice and put back after it).

The U-Net baselines have no decoder to query: `make_predictor` (the one place that tells them apart)
gives them a `DensePredictor`, which returns the same `Prediction` with mode "dense".
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from oss_net.compat import behaviour
from oss_net.data import PatchSource
from oss_net.data.grid import inverse_orientation, reorient
from oss_net.geometry import SpacedGrid, grid_at_spacing
from oss_net.labels import scheme_of
from oss_net.models import Encoding, is_dense
from oss_net.precision import autocast

from .defaults import CHUNK_SIZE, CPU_CHUNK_SIZE, THRESHOLD
from .lattice import OccupancyLattice, RefineStats, lattice_indices, refine_lattice, seed_from_segmentation, spaced_stages
from .options import InferenceError, PredictOptions

logger = logging.getLogger(__name__)


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
    grid: SpacedGrid | None = None  # with --output_spacing: the output grid `occupancy` lies on (the input's axes)

    @property
    def mask_model_grid(self) -> torch.Tensor:
        """Binary foreground [*volume_shape] bool on the model grid."""
        return self.occupancy > self.threshold


@dataclass(frozen=True)
class QueryGrid:
    """The grid a refinement lattice runs on: the model grid (`scale` None: integer voxel queries), or an output
    grid at another spacing in the model's axis order, whose voxel u' along axis a lies at model-grid coordinate
    u'·scale_a + offset_a (`oss_net.data.GridMeta.spaced_axes`), queried there between voxel centres."""

    shape: tuple[int, int, int]
    stages: tuple[int, ...]
    scale: tuple[float, float, float] | None = None
    offset: tuple[float, float, float] | None = None

    @classmethod
    def spaced(cls, meta: Any, grid: SpacedGrid, stages: Sequence[int]) -> "QueryGrid":
        """The output grid `grid` of the case `meta`, with `stages` scaled to it (`spaced_stages`)."""
        shape, scale, offset = meta.spaced_axes(grid)
        return cls(shape, spaced_stages(stages, scale), tuple(float(v) for v in scale), tuple(float(v) for v in offset))

    def positions(self, stride: int, device: torch.device) -> list[torch.Tensor]:
        """Model-grid coordinates [n_a] float64 of the stride lattice's points along each axis."""
        return [self.to_model_axis(lattice_indices(n, stride, device), axis) for axis, n in enumerate(self.shape)]

    def to_model_axis(self, indices: torch.Tensor, axis: int) -> torch.Tensor:
        return indices.double() * self.scale[axis] + self.offset[axis]

    def to_model(self, indices: torch.Tensor) -> torch.Tensor:
        """Lattice indices [N, 3] → model-grid coordinates [N, 3] float64."""
        return torch.stack([self.to_model_axis(indices[:, axis], axis) for axis in range(3)], dim=1)


class Predictor:
    """The encode → refine steps of one model with its `PredictOptions`.

    Args:
        model: an OSSNet (`encode`, `fold`, `decode`, `config`). It is put in eval mode and moved to `device`.
        options: mode, stages, chunk_size, amp, threshold, recheck_boundary, refinement (checked there).
        device: where the model runs (default: where its parameters are).

    Attributes `mode`, `refinement` and `chunk_size` hold the resolved values ("auto", None and None
    decided for this model and device).
    """

    def __init__(self, model: nn.Module, options: PredictOptions = PredictOptions(),
                 device: torch.device | str | None = None) -> None:
        self.config = model.config
        self.stages = options.stages
        self.refinement = options.refinement if options.refinement is not None else behaviour(self.config.compat).refinement
        if options.recheck_boundary and self.refinement != "ours":
            raise InferenceError("recheck_boundary widens the window of refinement 'ours'; "
                                 f"refinement {self.refinement!r} has its own (use --refinement ours)")
        self.mode = resolved_mode(options.mode, self.config)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype  # the input's, so a float64 model runs in float64
        self.chunk_size = options.chunk_size if options.chunk_size is not None else default_chunk_size(self.device)
        self.amp = options.amp
        self.threshold = float(options.threshold)
        self.recheck_boundary = options.recheck_boundary
        self.output_spacing = options.output_spacing

    def predict(self, image: Any, query: QueryGrid | None = None) -> Prediction:
        """Occupancy of one volume `image [C, *volume_shape]` (numpy or torch) on the model grid (or on `query`'s grid,
        in the model's axis order: `predict_spaced`), computed in the model's dtype (float32, or float64 for a model
        loaded so)."""
        volume = torch.as_tensor(image).to(self.device, self.dtype)[None]  # [1, C, D, H, W]
        query = query if query is not None else QueryGrid(self.config.volume_shape, self.stages)
        modes = ("standard", "prior") if self.mode == "both" else (self.mode,)
        grids: dict[str, torch.Tensor] = {}
        runs: dict[str, dict[str, Any]] = {}
        with torch.inference_mode():
            for mode in modes:
                grids[mode], runs[mode] = self._run(volume, mode, query)
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

    def predict_spaced(self, image: Any, meta: Any, spacing: float | Sequence[float]) -> Prediction:
        """`predict` on the grid covering the input's box at `spacing` mm (`oss_net.geometry.grid_at_spacing` of the
        case's `meta`): the lattice runs on that grid, its points queried at their model-grid coordinates, with the
        stages scaled so the first lattice is as coarse in mm as the model grid's (`spaced_stages`). The occupancy
        comes back in the input's axis order, [K?, *grid.shape], with `Prediction.grid`."""
        grid = grid_at_spacing(meta.affine, meta.input_shape, spacing)
        prediction = self.predict(image, QueryGrid.spaced(meta, grid, self.stages))
        occupancy = reorient(prediction.occupancy, inverse_orientation(meta.orientation))  # [K?, *grid.shape]
        return dataclasses.replace(prediction, occupancy=occupancy, grid=grid)

    def _run(self, volume: torch.Tensor, mode: str, query: QueryGrid) -> tuple[torch.Tensor, dict[str, Any]]:
        """One mode on `volume [1, C, *S]`: encode, fold the decoder, pad the patch source once, refine on `query`'s
        grid. (grid [K, *query.shape], run record)"""
        _synchronize(self.device)
        start = time.perf_counter()
        with autocast(self.amp, self.device):
            encoding = self.model.fold(self.model.encode(volume))  # the decoder folded for this volume
        source = self._patch_source(volume)
        flags = behaviour(self.config.compat)  # paper mode: the original's seed upsampling and lattices (model grid)
        scheme = scheme_of(self.config)
        seed = self._seed(encoding, query) if mode == "prior" else None
        lattice = OccupancyLattice(
            query.shape, query.stages, seed=seed, threshold=self.threshold,
            classes=lattice_classes(self.config), recheck_boundary=self.recheck_boundary, device=self.device,
            refinement=self.refinement, last_index=flags.lattice_last_index or query.scale is not None,
            rule=scheme.rule(self.threshold),
        )
        _synchronize(self.device)
        encode_seconds = time.perf_counter() - start
        decode = self._decoder(source, encoding, self.amp)
        stats = refine_lattice(lattice, decode if query.scale is None else lambda index: decode(query.to_model(index)),
                               self.chunk_size)
        grid = lattice.to_dense()
        _synchronize(self.device)
        seconds = time.perf_counter() - start
        logger.info("%s inference (%s refinement): %.3f s, %d points evaluated", mode, self.refinement, seconds,
                    stats.points_evaluated)
        return grid, _run_record(stats, seconds, encode_seconds)

    def _seed(self, encoding: Encoding, query: QueryGrid) -> torch.Tensor:
        """The prior seed on `query`'s first lattice; on an output grid always cell-centred (paper mode's
        corner-aligned upsampling is defined on the model grid's lattice only)."""
        flags = behaviour(self.config.compat)
        segmentation = encoding.segmentation[0].float()
        keep_classes = scheme_of(self.config).mode != "binary"
        if query.scale is None:
            return seed_from_segmentation(segmentation, self.config.volume_shape, query.stages[0],
                                          align_corners=flags.seed_align_corners, last_index=flags.lattice_last_index,
                                          keep_classes=keep_classes)
        return seed_from_segmentation(segmentation, self.config.volume_shape, query.stages[0], keep_classes=keep_classes,
                                      positions=query.positions(query.stages[0], self.device))

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
        decoder module (not folded: gradients flow through it) runs in the model's dtype (float32 unless loaded
        otherwise) whatever `amp` says.
        """
        volume = torch.as_tensor(image).to(self.device, self.dtype)[None]  # [1, C, D, H, W]
        with torch.no_grad():
            encoding = self.model.encode(volume)
        decode = self._decoder(self._patch_source(volume), encoding, amp="off")
        return lambda points: decode(points.to(self.dtype))[:, 0]

    def predict_case(self, case: Any) -> Prediction:
        """`predict` on a loaded `oss_net.data.Case` (its `image` is already on the model grid), or `predict_spaced`
        at the options' `output_spacing`."""
        if self.output_spacing is not None:
            return self.predict_spaced(case.image, case.meta, self.output_spacing)
        return self.predict(case.image)


class DensePredictor:
    """A U-Net baseline's whole-volume prediction, as a `Predictor` look-alike for the shared writers.

    Args:
        model: a U-Net (`predict_volume`, `config`). It is put in eval mode and moved to `device`.
        options: of `PredictOptions` only amp (autocast of the forward pass) and threshold apply.
        device: where the model runs (default: where its parameters are).
    """

    mode = "dense"
    refinement = None  # one dense pass: nothing is refined
    chunk_size = None  # the whole volume at once

    def __init__(self, model: nn.Module, options: PredictOptions = PredictOptions(),
                 device: torch.device | str | None = None) -> None:
        self.config = model.config
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.amp = options.amp
        self.threshold = float(options.threshold)

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
    """Points per decoder call when none is asked for: CPU_CHUNK_SIZE on the CPU, where a small chunk keeps
    its patches and the decoder's activations in cache, CHUNK_SIZE (the original's) on a GPU, which wants
    large batches."""
    return CPU_CHUNK_SIZE if device.type == "cpu" else CHUNK_SIZE


def resolved_mode(mode: str, config: Any) -> str:
    """"auto" → prior with a segmentation head, standard without (logged); prior / both need the head."""
    has_head = bool(config.segmentation_head)
    if mode in ("prior", "both") and not has_head:
        raise InferenceError(f"mode {mode!r} needs the encoder's segmentation head, which configuration "
                             f"{config.name!r} does not have; use --mode standard (or auto)")
    if mode != "auto":
        return mode
    if not has_head:
        logger.info("configuration %s has no segmentation head: mode auto falls back to standard", config.name)
    return "prior" if has_head else "standard"


def make_predictor(model: nn.Module, options: PredictOptions = PredictOptions(),
                   device: torch.device | str | None = None) -> Predictor | DensePredictor:
    """The predictor for `model`: a `Predictor`, or a `DensePredictor` for a U-Net, which ignores mode,
    stages, chunk_size, recheck_boundary and refinement (logged when one was set)."""
    if not is_dense(model):
        return Predictor(model, options, device)
    if options.output_spacing is not None:
        raise InferenceError(f"--output_spacing queries an occupancy network between voxel centres; {model.config.name} "
                             "(a U-Net baseline) predicts on its model grid only: drop --output_spacing and resample "
                             "its output instead")
    defaults = PredictOptions()
    ignored = [name for name in ("chunk_size", "mode", "recheck_boundary", "refinement", "stages")
               if getattr(options, name) != getattr(defaults, name)]
    if ignored:
        logger.info("%s predicts densely: %s do not apply and are ignored", model.config.name, ", ".join(ignored))
    return DensePredictor(model, options, device)


def select_device(cpu: bool = False, cuda_devices: str | None = None) -> torch.device:
    """The CPU when asked for or without a GPU, else CUDA; `cuda_devices` sets CUDA_VISIBLE_DEVICES first."""
    if cuda_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_devices
    if cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


# The refinement lattice holds the K class probabilities. In exclusive mode the decoder's background output
# is left out there (1 − the classes' sum, exact for a softmax), so the prior mode's "unseeded = 0" holds
# for every channel the lattice refines.


def lattice_classes(config: Any) -> int:
    """Channels of the refinement lattice: the decoder's outputs, without the background of exclusive mode."""
    return config.number_of_classes - (1 if scheme_of(config).mode == "exclusive" else 0)


def class_values(config: Any, outputs: torch.Tensor) -> torch.Tensor:
    """Decoder outputs [N, outputs] -> the class / region probabilities [N, lattice_classes] (the background of
    exclusive mode left out): what the lattice refines and sampled validation scores."""
    return outputs[:, 1:] if scheme_of(config).mode == "exclusive" else outputs


def decoder_outputs(config: Any, grid: torch.Tensor) -> torch.Tensor:
    """The refined lattice [lattice_classes, *S] -> decoder outputs [outputs, *S] (the background put back first)."""
    if scheme_of(config).mode != "exclusive":
        return grid
    return torch.cat([(1.0 - grid.sum(dim=0, keepdim=True)).clamp(min=0.0), grid])


def model_grid_masks(config: Any, prediction: Prediction, case: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) bool masks on the model grid for dense validation: [*S] foreground for a binary
    model (as the paper), [K, *S] per class or region otherwise (the dataset's values mapped by the scheme)."""
    scheme = scheme_of(config)
    if scheme.mode == "binary":
        return prediction.mask_model_grid, torch.from_numpy(case.label > 0)
    occupancy = prediction.occupancy.numpy().reshape(scheme.outputs, *case.image.shape[1:])  # [outputs, *S]
    label_map = scheme.label_map(occupancy, prediction.threshold)
    predicted = scheme.label_map_masks(label_map)
    return torch.from_numpy(predicted), torch.from_numpy(scheme.label_map_masks(np.asarray(case.raw_label)))


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
