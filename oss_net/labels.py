"""Label modes: what the network predicts from a label map, and how its outputs become a label map again.

- "binary" (the paper's): one sigmoid output, foreground = every non-zero label value.
- "regions": K independent sigmoid outputs for possibly overlapping regions, each a set of label
  values (nnU-Net's region-based training). BraTS default: WT = {1, 2, 4}, TC = {1, 4}, ET = {4}.
- "exclusive": a softmax over background + K classes, each a set of label values that no other
  class shares (LiTS liver / tumour, FLARE liver / kidney / spleen / pancreas).

A `LabelScheme` is the mode plus its class definitions; the model configuration stores both
(`OSSNetConfig.label_mode`, `OSSNetConfig.class_labels`). Outputs: the decoder gives
`scheme.outputs` values per point (K, or K + 1 with the background first in exclusive mode); the
segmentation head gives `scheme.classes_count` sigmoid channels ("class present in the cell").
Label maps are written with the dataset's own values: regions are painted in their order, each with
the value nnU-Net's `regions_class_order` gives it, else the one value it does not share with a later
region (BraTS: WT \\ TC -> 2, TC \\ ET -> 1, ET -> 4, as the BraTS tools do); exclusive maps take the
likeliest output, background included.

One decision rule per mode (`DecisionRule`, `LabelScheme.rule`), used by every consumer: the refinement's
candidates, the label map, the meshes, the probabilities written, sampled and dense validation, metrics.
Exclusive: the argmax over background + classes (the background is 1 − the classes' sum); a class's surface
is where its probability equals the best other one's. Regions and binary: each probability at the threshold.

A leaf module (it imports nothing of the packages), so the models, the metrics and the data share it;
what training draws from a label mode (each class's border band, the auxiliary head's target) is in
`oss_net.data.class_targets`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from oss_net.datasets import DatasetError
from oss_net.geometry import CORNER_OFFSETS, corner_weights, nearest_voxel, trilinear_stencil

LABEL_MODES = ("binary", "regions", "exclusive")
DEFAULT_LABEL_MODE = "binary"
BRATS_REGIONS: tuple[tuple[str, tuple[int, ...]], ...] = (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,)))
LITS_REGIONS: tuple[tuple[str, tuple[int, ...]], ...] = (("liver", (1, 2)), ("tumour", (2,)))
BACKGROUND = "background"

ClassLabels = tuple[tuple[str, tuple[int, ...]], ...]  # (name, label values) per class or region


class LabelValueError(DatasetError):
    """A label map holding values that no class of the label mode accounts for."""


class LabelModeError(DatasetError, ValueError):
    """A label mode whose classes cannot work (overlapping exclusive classes, a region without a value of its own)."""


def normalize_class_labels(class_labels: Any) -> ClassLabels:
    """Lists or dicts (from JSON, checkpoints, dataset.json) as a tuple of (name, (values, ...)) pairs."""
    pairs = class_labels.items() if isinstance(class_labels, dict) else (class_labels or ())
    normalized = []
    for name, values in pairs:
        values = values if isinstance(values, (list, tuple)) else (values,)
        normalized.append((str(name), tuple(int(v) for v in values)))
    return tuple(normalized)


def label_mode_problems(mode: str, class_labels: ClassLabels, outputs: int,
                        regions_class_order: Sequence[int] = ()) -> list[str]:
    """Every inconsistency of a label mode, its classes and the decoder's output count (empty: consistent).

    Binary keeps any output count (a legacy softmax with several outputs); the other modes need
    K regions / classes and K (regions) or K + 1 (exclusive) outputs. `regions_class_order` (regions only)
    names the value each region writes in a label map, one of its own values.
    """
    if mode not in LABEL_MODES:
        return [f"label_mode must be one of {LABEL_MODES}, got {mode!r}"]
    if regions_class_order and mode != "regions":
        return [f"regions_class_order is for label_mode 'regions', not {mode!r}"]
    if mode == "binary":
        return [] if not class_labels else [f"label_mode 'binary' takes no class_labels, got {class_labels}"]
    problems = []
    if not class_labels:
        problems.append(f"label_mode {mode!r} needs class_labels (name, values) for each class")
    names = [name for name, _ in class_labels]
    if len(set(names)) != len(names) or BACKGROUND in names:
        problems.append(f"class names must be distinct and not {BACKGROUND!r}, got {names}")
    if any(not values or min(values) < 1 for _, values in class_labels):
        problems.append(f"every class needs label values >= 1 (0 is the background), got {class_labels}")
    expected = len(class_labels) + (1 if mode == "exclusive" else 0)
    if outputs != expected:
        problems.append(f"label_mode {mode!r} with {len(class_labels)} classes needs number_of_classes = {expected}, "
                        f"got {outputs}")
    if mode == "exclusive":
        values = [v for _, vs in class_labels for v in vs]
        if len(set(values)) != len(values):
            problems.append(f"exclusive classes may not share label values, got {class_labels}")
    elif regions_class_order:
        if len(regions_class_order) != len(class_labels) or any(
                value not in values for value, (_, values) in zip(regions_class_order, class_labels)):
            problems.append(f"regions_class_order must give each region one of its own values, got "
                            f"{list(regions_class_order)} for {class_labels}")
    elif class_labels and any(len(own) != 1 for own in _own_values(class_labels)):
        problems.append(f"each region needs exactly one label value that no later region has, to write label maps "
                        f"(order the regions from the largest, or give regions_class_order), got {class_labels}")
    return problems


def _own_values(class_labels: ClassLabels) -> list[set[int]]:
    """Per region, its values that no later region has (the value it paints in a label map)."""
    return [set(values) - {v for _, later in class_labels[i + 1:] for v in later}
            for i, (_, values) in enumerate(class_labels)]


@dataclass(frozen=True)
class DecisionRule:
    """How K class probabilities become decisions: the argmax over background + classes (`exclusive`), or each
    probability above `threshold` (regions, binary). Written once; `LabelScheme.rule(threshold)` gives a model's.

    Every method takes class probabilities [K, *S] (torch or numpy; the exclusive background is implied as
    1 − their sum, exact for a softmax, so the refinement lattice's unevaluated zeros are background) and
    returns the same kind of array.
    """

    exclusive: bool = False
    threshold: float = 0.5

    def winners(self, probabilities: Any) -> Any:
        """int64 [*S]: 0 for the background, k for class k (exclusive: the argmax, ties to the lower index;
        otherwise the last class above the threshold, as nested regions paint)."""
        values, was_numpy = _as_tensor(probabilities)
        if self.exclusive:
            background = 1.0 - values.sum(dim=0, keepdim=True)
            winner = torch.cat([background, values]).argmax(dim=0)
        else:
            above = (values > self.threshold).to(torch.int64)  # [K, *S]
            order = torch.arange(1, len(values) + 1, device=values.device).reshape(-1, *([1] * (values.dim() - 1)))
            winner = (above * order).amax(dim=0)
        return winner.numpy() if was_numpy else winner

    def decide(self, probabilities: Any) -> Any:
        """bool [K, *S]: where each class is (exclusive: its argmax wins; otherwise its probability > threshold)."""
        values, was_numpy = _as_tensor(probabilities)
        if self.exclusive:
            order = torch.arange(1, len(values) + 1, device=values.device).reshape(-1, *([1] * (values.dim() - 1)))
            decided = self.winners(values)[None] == order
        else:
            decided = values > self.threshold
        return decided.numpy() if was_numpy else decided

    def surface(self, probabilities: Any) -> tuple[Any, float]:
        """(fields [K, *S] in [0, 1], level): each class's surface is its field's `level` isosurface, inside above.

        Regions and binary: the probabilities at the threshold. Exclusive: (1 + p_k − max_{j≠k} p_j) / 2 at 1/2
        (the background among the j), so a mesher that pads with zeros finds its outside; at exact ties the
        field is nudged to the side the argmax took, so `field > level` is `decide` voxel for voxel.
        """
        if not self.exclusive:
            return probabilities, self.threshold
        values, was_numpy = _as_tensor(probabilities)
        values = values.float()
        every = torch.cat([1.0 - values.sum(dim=0, keepdim=True), values])  # [K + 1, *S]
        top2 = every.topk(2, dim=0).values if len(every) > 1 else torch.cat([every, every])
        best_other = torch.where(values >= top2[0], top2[1], top2[0])  # [K, *S]: the best of the other outputs
        fields = ((1.0 + values - best_other) / 2).clamp(0.0, 1.0)
        decided = self.decide(values)
        fields = torch.where(decided, fields.clamp(min=_ABOVE_HALF), fields.clamp(max=0.5))
        return (fields.numpy() if was_numpy else fields), 0.5


_ABOVE_HALF = float(np.nextafter(np.float32(0.5), np.float32(1.0)))  # the smallest float32 above the exclusive level


def _as_tensor(array: Any) -> tuple[torch.Tensor, bool]:
    """A torch view of a numpy or torch array, and whether it was numpy (to answer in kind)."""
    if isinstance(array, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array)), True
    return array, False


@dataclass(frozen=True)
class LabelScheme:
    """A label mode with its classes; `scheme_of(config)` gives a model's."""

    mode: str = DEFAULT_LABEL_MODE
    class_labels: ClassLabels = ()
    regions_class_order: tuple[int, ...] = ()  # regions: the value each writes in a label map (nnU-Net's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_labels", normalize_class_labels(self.class_labels))
        object.__setattr__(self, "regions_class_order", tuple(int(v) for v in self.regions_class_order or ()))
        problems = label_mode_problems(self.mode, self.class_labels, self.outputs, self.regions_class_order)
        if problems:
            raise LabelModeError("; ".join(problems))

    @property
    def classes_count(self) -> int:
        """K: 1 (binary foreground) or the number of regions / classes."""
        return max(len(self.class_labels), 1)

    @property
    def outputs(self) -> int:
        """Decoder outputs: K, or K + 1 (background first) in exclusive mode."""
        return self.classes_count + (1 if self.mode == "exclusive" else 0)

    @property
    def names(self) -> tuple[str, ...]:
        """The class or region names, K of them ("foreground" in binary mode)."""
        return tuple(name for name, _ in self.class_labels) or ("foreground",)

    @property
    def label_values(self) -> frozenset[int] | None:
        """The values a label map may hold (None in binary mode: the dataset reader checks those)."""
        if self.mode == "binary":
            return None
        return frozenset({0, *(v for _, values in self.class_labels for v in values)})

    def check_values(self, label: np.ndarray | torch.Tensor, source: Any) -> None:
        """Raise LabelValueError naming `source` when `label` holds a value of no class."""
        allowed = self.label_values
        if allowed is None:
            return
        present = {int(v) for v in torch.unique(torch.as_tensor(np.asarray(label) if isinstance(label, np.ndarray)
                                                                   else label)).tolist()}
        bad = sorted(present - allowed)
        if bad:
            raise LabelValueError(f"{source}: label values {bad} belong to no {self.mode} class of "
                                  f"{dict(self.class_labels)} (allowed: {sorted(allowed)})")

    def class_masks(self, label: torch.Tensor) -> torch.Tensor:
        """bool [..., K, D, H, W] of label [..., D, H, W]: where each class or region is (binary: label > 0)."""
        if self.mode == "binary":
            return (label > 0).unsqueeze(-4)
        masks = [torch.isin(label, torch.tensor(values, dtype=label.dtype, device=label.device))
                 for _, values in self.class_labels]
        return torch.stack(masks, dim=-4)

    def targets(self, label: torch.Tensor) -> torch.Tensor:
        """float32 [..., outputs, D, H, W] per-voxel targets: multi-hot (binary, regions) or one-hot with the
        background first (exclusive), the same layout as the decoder's outputs."""
        masks = self.class_masks(label).to(torch.float32)
        if self.mode != "exclusive":
            return masks
        background = 1.0 - masks.sum(dim=-4, keepdim=True)
        return torch.cat([background, masks], dim=-4)

    def point_targets(self, label: torch.Tensor, coords: torch.Tensor, interpolate: bool = False) -> torch.Tensor:
        """float32 [N, outputs] targets of label [D, H, W] at coords [N, 3]: those of the nearest voxel, or with
        `interpolate` the trilinear interpolation of each output's indicator (continuous sampling: a point between
        voxel centres gets the share of each class around it; exclusive targets still sum to 1)."""
        if not interpolate:
            index = nearest_voxel(coords, label.shape)  # [N, 3]
            return self._voxel_targets(label, index)
        base, fraction = trilinear_stencil(coords, label.shape)  # [N, 3] each
        weights = corner_weights(fraction.to(torch.float32))  # [N, 8]
        upper = base.new_tensor([int(s) - 1 for s in label.shape])
        targets = 0
        for corner, offset in enumerate(CORNER_OFFSETS):  # a zero-weight corner may lie outside: clamped, adds 0
            index = torch.minimum(base + base.new_tensor(offset), upper)
            targets = targets + weights[:, corner, None] * self._voxel_targets(label, index)
        return targets

    def _voxel_targets(self, label: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """float32 [N, outputs] targets of label [D, H, W] at the voxels index [N, 3] (int64)."""
        values = label[index[:, 0], index[:, 1], index[:, 2]]  # [N]
        return self.targets(values.reshape(-1, 1, 1, 1))[..., 0, 0, 0]

    def segmentation_target(self, label: torch.Tensor, output_shape: Sequence[int]) -> torch.Tensor:
        """[B, K, *output_shape] float32: 1 where any voxel of the cell belongs to the class or region."""
        masks = self.class_masks(label).to(torch.float32)  # [B, K, D, H, W]
        return F.adaptive_max_pool3d(masks, tuple(int(s) for s in output_shape))

    def rule(self, threshold: float) -> DecisionRule:
        """The decision rule of this mode: argmax (exclusive; `threshold` is not used), else `threshold`."""
        return DecisionRule(self.mode == "exclusive", float(threshold))

    def class_probabilities(self, occupancy: np.ndarray) -> np.ndarray:
        """[K, *S] per-class probabilities of decoder outputs occupancy [outputs, *S] (the background dropped)."""
        return occupancy[1:] if self.mode == "exclusive" else occupancy

    def label_map(self, occupancy: np.ndarray, threshold: float) -> np.ndarray:
        """uint8 [*S] label map with the dataset's values from decoder outputs occupancy [outputs, *S], by `rule`."""
        if self.mode == "binary":
            return (occupancy[0] > threshold).astype(np.uint8)
        winner = self.rule(threshold).winners(self.class_probabilities(occupancy))  # [*S] 0..K
        paint = np.zeros(len(self.class_labels) + 1, dtype=np.uint8)  # class index -> the value it writes
        paint[1:] = self.written_values
        return paint[winner]

    @property
    def written_values(self) -> tuple[int, ...]:
        """The value each class or region writes in a label map (binary: 1)."""
        if self.mode == "binary":
            return (1,)
        if self.mode == "exclusive":
            return tuple(values[0] for _, values in self.class_labels)
        return self.regions_class_order or tuple(own.pop() for own in _own_values(self.class_labels))

    def label_map_masks(self, label_map: np.ndarray) -> np.ndarray:
        """bool [K, *S] class masks of a label map with the dataset's values (the inverse of `label_map`)."""
        return self.class_masks(torch.as_tensor(np.asarray(label_map).astype(np.int64))).numpy()


def scheme_of(config: Any) -> LabelScheme:
    """The label scheme of a model configuration (binary for one without the fields, e.g. a U-Net)."""
    return LabelScheme(getattr(config, "label_mode", DEFAULT_LABEL_MODE), getattr(config, "class_labels", ()),
                       getattr(config, "regions_class_order", ()))


def dataset_label_mode(labels: dict[str, Any]) -> str:
    """The label mode a dataset's labels {name: value | (values)} select when none is asked for: regions when
    some label is a tuple of values (an nnU-Net dataset.json listing regions), exclusive for more than one
    foreground label (FLARE21's four organs, a dataset.json naming grey and white matter), binary otherwise."""
    if any(isinstance(value, tuple) for value in labels.values()):
        return "regions"
    foreground = [name for name, value in labels.items() if name != BACKGROUND and value != 0]
    return "exclusive" if len(foreground) > 1 else DEFAULT_LABEL_MODE


def default_class_labels(mode: str, dataset: str, labels: dict[str, Any],
                         regions_class_order: Sequence[int] = ()) -> ClassLabels:
    """The classes of `mode` for a dataset with labels {name: value | (values)} (`DatasetInfo.labels`).

    regions: the dataset's regions when its labels list some (nnU-Net dataset.json): in the JSON's order when
    it gives `regions_class_order` (nnU-Net paints them in that order, each with its value), else ordered from
    the largest, whatever the order of the JSON keys, so nested regions each keep a value of their own for the
    label map; the BraTS and LiTS nested regions; else one region per label. exclusive: one class per label
    (regions refused).
    """
    if mode == "binary":
        return ()
    named = [(name, value) for name, value in labels.items() if name != BACKGROUND and value != 0]
    has_regions = any(isinstance(value, tuple) for _, value in named)
    if mode == "regions":
        if has_regions and regions_class_order:
            return normalize_class_labels(named)
        if has_regions:
            return tuple(sorted(normalize_class_labels(named), key=lambda region: -len(region[1])))
        if dataset == "brats":
            return BRATS_REGIONS
        if dataset == "lits":
            return LITS_REGIONS
        return normalize_class_labels(named)
    if mode == "exclusive":
        if has_regions:
            raise DatasetError(f"{dataset}: the dataset's labels are regions (lists of values), which overlap: "
                               "use --label_mode regions")
        return normalize_class_labels(named)
    raise LabelModeError(f"label_mode must be one of {LABEL_MODES}, got {mode!r}")


def config_with_label_mode(config: Any, mode: str, labels: dict[str, Any] | None = None,
                           regions_class_order: Sequence[int] = ()) -> Any:
    """`config` predicting the classes of `mode` for a dataset with `labels` (`DatasetInfo.labels`) and, for
    regions, nnU-Net's `regions_class_order` (`DatasetInfo.regions_class_order`; used when the labels list regions).

    Binary returns `config` itself (unchanged). The other modes widen the decoder's last layer and
    the segmentation head; a U-Net baseline has neither and is refused.
    """
    if mode == "binary":
        return config
    if not hasattr(config, "label_mode"):
        raise DatasetError(f"{config.name}: label_mode {mode!r} needs an OSS-Net configuration "
                           "(the U-Net baselines predict one class)")
    labels = dict(labels or {})
    has_regions = any(isinstance(value, tuple) for value in labels.values())
    order = tuple(regions_class_order) if mode == "regions" and has_regions else ()
    scheme = LabelScheme(mode, default_class_labels(mode, config.dataset, labels, order), order)
    return dataclasses.replace(config, label_mode=mode, class_labels=scheme.class_labels,
                               number_of_classes=scheme.outputs, regions_class_order=scheme.regions_class_order)
