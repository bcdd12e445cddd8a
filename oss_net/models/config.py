"""Every OSS-Net configuration of the paper and of the original code, as frozen dataclasses.

The original kept 24 near-identical dicts (12 variants x 2 datasets, docs/reference.md §1). Here a configuration is
one dataset base (input channels, encoder blocks, model grid) plus one variant (encoder kind, patches,
Fourier features, decoder width), and everything that follows from them (latent size, decoder input width)
is a derived property, so the same family also builds at small demo sizes.

    get_config("C", "brats")                     # Table-1 name, same as get_config("full", "brats")
    get_config("A", "lits", decoder_width=256)   # overrides go through dataclasses.replace
    demo_config("C")                             # 64x64x40 CPU preset for `make demo` and tests
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from oss_net.compat import COMPAT_MODES, DEFAULT_COMPAT, model_fields
from oss_net.datasets import DATASETS, DatasetError, Fingerprint, canonical_dataset
from oss_net.geometry import LARGE_PATCH_POOLINGS, PATCH_SIZE
from oss_net.io import OSSNetError
from oss_net.labels import DEFAULT_LABEL_MODE, label_mode_problems, normalize_class_labels

CONFIG_NAMES: tuple[str, ...] = (
    "vanilla_o_net",
    "vanilla_o_net_wide",
    "A",
    "B",
    "C1",
    "C2",
    "D1",
    "D2",
    "E1",
    "E2",
    "full",
    "full2",
)
# Paper Table 1 row -> configuration the original scripts trained (docs/reference.md §1.3).
TABLE1_ALIASES: dict[str, str] = {"O-Net": "vanilla_o_net_wide", "C": "full", "D": "full2"}
ENCODERS: tuple[str, ...] = ("plain", "skip")
CBN_NORMALIZATIONS: tuple[str, ...] = ("scalar", "per_feature")
PATCH_FEATURES = PATCH_SIZE**3  # the patch mapping flattens its [1, 7, 7, 7] output: 343 features
FOURIER_FEATURES = 16  # frequencies per coordinate embedding (cos and sin each)
COORDINATE_WIDTH = 3


class ConfigError(OSSNetError, ValueError):
    """An unknown configuration name, dataset or field, or an inconsistent combination of fields."""


def check_config_fields(config_type: type, data: dict[str, Any], what: str) -> None:
    """Raise ConfigError naming the unknown and missing fields when `data` cannot build `config_type`."""
    fields = {f.name for f in dataclasses.fields(config_type)}
    required = {f.name for f in dataclasses.fields(config_type) if f.default is dataclasses.MISSING}
    unknown = sorted(set(data) - fields)
    missing = sorted(required - set(data))
    if unknown or missing:
        raise ConfigError(f"{what} dict has unknown fields {unknown} and misses fields {missing}")


@dataclass(frozen=True)
class OSSNetConfig:
    """The architecture of one OSS-Net variant (docs/reference.md §1-§4).

    Args:
        name: canonical configuration name (one of CONFIG_NAMES).
        dataset: one of `oss_net.datasets.DATASETS` ("brats", "lits", "nnunet", "msd", "flare").
        in_channels: image channels (4 BraTS modalities, 1 LiTS CT; a fingerprint's channels otherwise).
        encoder_channels: (in, out) channels of each residual block; every block halves the resolution.
        volume_shape: the model grid (i, j, k); the encoder sees it downscaled by 2.
        encoder: "plain" (one latent, O-Net) or "skip" (per-block heads, decoder_blocks + 1 latents).
        segmentation_head: low-resolution sigmoid segmentation of the last block (auxiliary loss).
        patches: decode with the 7^3 image patch around each point.
        large_patches: also the 14^3 patch average-pooled to 7^3, stacked after the small one.
        fourier_features: embed coordinates as [cos(2 pi p b), sin(2 pi p b), p] (35 values).
        raw_coordinates: feed raw voxel indices as the original did instead of [-1, 1] (docs/reference.md §12.13).
        decoder_width: width W of every residual CBN block.
        decoder_blocks: number of residual CBN blocks (5 in every original configuration).
        number_of_classes: decoder outputs; 1 = sigmoid occupancy, more = softmax over classes (sigmoid per
            region in label_mode "regions"; K + 1 with the background in "exclusive").
        cbn_normalization: "scalar" (one mean/var over all points and features, as the original's
            BatchNorm1d(1), docs/reference.md §12.14) or "per_feature" (one per feature, as O-Net).
        large_patch_pooling: how inference pools the 14^3 patch to 7^3: "avg" (default, as in training)
            or "max" (the original's inference, docs/reference.md §12.11; set by the converter of the authors'
            weights). Training and validation always average, as the original did.
        compat: "ours" or "paper", the mode the configuration was made for (`oss_net.compat`);
            `get_config(..., compat="paper")` sets raw_coordinates and large_patch_pooling from it.
        fingerprint: the training set's fingerprint (`oss_net.datasets.Fingerprint`), which decides the
            preprocessing of datasets other than BraTS and LiTS; None for those two.
        label_mode: "binary" (the paper's), "regions" or "exclusive" (`oss_net.labels`).
        class_labels: (name, label values) per region or class; () in binary mode.
        regions_class_order: regions only, nnU-Net's value each region writes in a label map; () for the default
            (each region's one value that no later region has).
    """

    name: str
    dataset: str
    in_channels: int
    encoder_channels: tuple[tuple[int, int], ...]
    volume_shape: tuple[int, int, int]
    encoder: str = "plain"
    segmentation_head: bool = False
    patches: bool = True
    large_patches: bool = False
    fourier_features: bool = False
    raw_coordinates: bool = False
    decoder_width: int = 512
    decoder_blocks: int = 5
    number_of_classes: int = 1
    cbn_normalization: str = "scalar"
    large_patch_pooling: str = "avg"
    compat: str = DEFAULT_COMPAT
    fingerprint: Fingerprint | None = None
    label_mode: str = DEFAULT_LABEL_MODE
    class_labels: tuple[tuple[str, tuple[int, ...]], ...] = ()
    regions_class_order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Lists (from JSON, checkpoints or overrides) become tuples so configs compare and hash by value.
        object.__setattr__(self, "encoder_channels", tuple(tuple(int(c) for c in pair) for pair in self.encoder_channels))
        object.__setattr__(self, "volume_shape", tuple(int(s) for s in self.volume_shape))
        if isinstance(self.fingerprint, dict):
            object.__setattr__(self, "fingerprint", Fingerprint.from_dict(self.fingerprint))
        object.__setattr__(self, "class_labels", normalize_class_labels(self.class_labels))
        object.__setattr__(self, "regions_class_order", tuple(int(v) for v in self.regions_class_order or ()))
        self._validate()

    def _validate(self) -> None:
        """Reject inconsistent fields here, so a bad override fails before any module is built."""
        problems = []
        if self.dataset not in DATASETS:
            problems.append(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.encoder not in ENCODERS:
            problems.append(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.cbn_normalization not in CBN_NORMALIZATIONS:
            problems.append(f"cbn_normalization must be one of {CBN_NORMALIZATIONS}, got {self.cbn_normalization!r}")
        if self.large_patch_pooling not in LARGE_PATCH_POOLINGS:
            problems.append(f"large_patch_pooling must be one of {LARGE_PATCH_POOLINGS}, got {self.large_patch_pooling!r}")
        if self.compat not in COMPAT_MODES:
            problems.append(f"compat must be one of {COMPAT_MODES}, got {self.compat!r}")
        if len(self.volume_shape) != 3 or min(self.volume_shape, default=0) < 2:
            problems.append(f"volume_shape must be 3 sizes >= 2, got {self.volume_shape}")
        if not self.encoder_channels or any(len(pair) != 2 or min(pair) < 1 for pair in self.encoder_channels):
            problems.append(f"encoder_channels must be a non-empty sequence of positive (in, out) pairs, got {self.encoder_channels}")
        else:
            if self.encoder_channels[0][0] != self.in_channels:
                problems.append(f"the first encoder block takes {self.encoder_channels[0][0]} channels but in_channels is {self.in_channels}")
            for (_, out), (nxt, _) in zip(self.encoder_channels, self.encoder_channels[1:]):
                if out != nxt:
                    problems.append(f"encoder_channels do not chain: a block gives {out} channels, the next takes {nxt}")
            if self.encoder == "skip" and min(out for _, out in self.encoder_channels) < 2:
                problems.append("the skip encoder halves each block's channels in its head: every block needs >= 2 output channels")
        if len(self.volume_shape) == 3 and self.encoder_channels and min(self.encoder_output_shape) < 1:
            problems.append(
                f"volume_shape {self.volume_shape} with {len(self.encoder_channels)} encoder blocks gives an empty encoder "
                f"output {self.encoder_output_shape}: use a larger volume or fewer blocks"
            )
        if self.large_patches and not self.patches:
            problems.append("large_patches needs patches=True (large patches are stacked after the small ones)")
        for field in ("in_channels", "decoder_width", "decoder_blocks", "number_of_classes"):
            if getattr(self, field) < 1:
                problems.append(f"{field} must be >= 1, got {getattr(self, field)}")
        problems += label_mode_problems(self.label_mode, self.class_labels, self.number_of_classes,
                                        self.regions_class_order)
        if self.fingerprint is not None and self.fingerprint.num_channels != self.in_channels:
            problems.append(f"the dataset fingerprint has {self.fingerprint.num_channels} channel(s) but in_channels is {self.in_channels}")
        if problems:
            raise ConfigError(f"configuration {self.name!r} ({self.dataset}): " + "; ".join(problems))

    @property
    def encoder_input_shape(self) -> tuple[int, int, int]:
        """The model grid downscaled by 2: BraTS 128x128x80, LiTS 256^3."""
        return tuple(s // 2 for s in self.volume_shape)

    @property
    def encoder_output_shape(self) -> tuple[int, int, int]:
        """Spatial shape after all blocks (each AvgPool3d(2) floors): BraTS 8x8x5, LiTS 8^3."""
        shape = self.encoder_input_shape
        for _ in self.encoder_channels:
            shape = tuple(s // 2 for s in shape)
        return shape

    @property
    def latent_size(self) -> int:
        """L: each latent is a flattened 1-channel map of encoder_output_shape (320 BraTS, 512 LiTS)."""
        return math.prod(self.encoder_output_shape)

    @property
    def number_of_latents(self) -> int:
        """1 for the plain encoder; the skip encoder gives one for the input and one per decoder block."""
        return 1 if self.encoder == "plain" else self.decoder_blocks + 1

    @property
    def patch_channels(self) -> int:
        """C_p of the patch tensor [B, N, C_p, 7, 7, 7]; 0 when the configuration uses no patches."""
        if not self.patches:
            return 0
        return self.in_channels * (2 if self.large_patches else 1)

    @property
    def coordinate_width(self) -> int:
        """3, or 35 = 16 cos + 16 sin + 3 coordinates with Fourier features."""
        return COORDINATE_WIDTH + (2 * FOURIER_FEATURES if self.fourier_features else 0)

    @property
    def decoder_input_width(self) -> int:
        """Width of the first CBN block's input (docs/reference.md §3.1).

        Coordinates | 343 patch features | latent 0.
        """
        return self.coordinate_width + (PATCH_FEATURES if self.patches else 0) + self.latent_size

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), so it survives JSON and torch.load(weights_only=True)."""
        data = dataclasses.asdict(self)
        data["encoder_channels"] = [list(pair) for pair in self.encoder_channels]
        data["volume_shape"] = list(self.volume_shape)
        data["fingerprint"] = None if self.fingerprint is None else self.fingerprint.to_dict()
        data["class_labels"] = [[name, list(values)] for name, values in self.class_labels]
        if self.regions_class_order:  # only when set: a configuration without it keeps its earlier dict (and hash)
            data["regions_class_order"] = list(self.regions_class_order)
        else:
            del data["regions_class_order"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OSSNetConfig:
        """Inverse of to_dict; unknown or missing fields raise ConfigError naming them."""
        check_config_fields(cls, data, "configuration")
        return cls(**data)


# The few base values everything is derived from (docs/reference.md §1.2).
_DATASET_BASES: dict[str, dict[str, Any]] = {
    "brats": {
        "in_channels": 4,
        "encoder_channels": ((4, 16), (16, 32), (32, 64), (64, 128)),
        "volume_shape": (256, 256, 160),
    },
    "lits": {
        "in_channels": 1,
        "encoder_channels": ((1, 8), (8, 16), (16, 32), (32, 64), (64, 128)),
        "volume_shape": (512, 512, 512),
    },
}
_SKIP = {"encoder": "skip"}
_SEG = {"segmentation_head": True}
_LARGE = {"large_patches": True}
_FOURIER = {"fourier_features": True}
_VARIANTS: dict[str, dict[str, Any]] = {
    "vanilla_o_net": {"patches": False, "decoder_width": 256},
    "vanilla_o_net_wide": {"patches": False},
    "A": {},
    "B": _LARGE,
    "C1": _SKIP,
    "C2": {**_SKIP, **_LARGE},
    "D1": _FOURIER,
    "D2": {**_FOURIER, **_LARGE},
    # The original set the segmentation flag for E1/E2 but its plain encoder ignored it (docs/reference.md §12.7);
    # here the plain encoder really gets the head, so E1/E2 = A/B + segmentation head + auxiliary loss.
    "E1": _SEG,
    "E2": {**_SEG, **_LARGE},
    "full": {**_SKIP, **_SEG},
    "full2": {**_SKIP, **_SEG, **_LARGE},
}
_LOOKUP: dict[str, str] = {name.lower(): name for name in CONFIG_NAMES}
_LOOKUP.update({alias.lower(): target for alias, target in TABLE1_ALIASES.items()})


def canonical_name(name: str) -> str:
    """The configuration name for a Table-1 or original name, case-insensitive ("c" -> "full")."""
    try:
        return _LOOKUP[name.strip().lower()]
    except (KeyError, AttributeError):
        valid = ", ".join(CONFIG_NAMES) + " (Table-1 aliases: " + ", ".join(f"{a}->{t}" for a, t in TABLE1_ALIASES.items()) + ")"
        raise ConfigError(f"unknown configuration {name!r}; valid names: {valid}") from None


def config_dataset(dataset: str) -> str:
    """`oss_net.datasets.canonical_dataset`, raising ConfigError: a bad dataset is a bad configuration here."""
    try:
        return canonical_dataset(dataset)
    except DatasetError as error:
        raise ConfigError(str(error)) from None


def get_config(name: str, dataset: str, **overrides: Any) -> OSSNetConfig:
    """The configuration `name` (original or Table-1 name) for `dataset`, with field overrides applied.

    An override `compat="paper"` first sets the fields of paper mode (`oss_net.compat.model_fields`);
    other overrides apply after it.
    """
    canonical = canonical_name(name)
    dataset = config_dataset(dataset)
    config = OSSNetConfig(name=canonical, dataset=dataset, **dataset_base(dataset, overrides), **_VARIANTS[canonical])
    if not overrides:
        return config
    if "compat" in overrides:
        overrides = {**model_fields(overrides["compat"]), **overrides}
    fields = {f.name for f in dataclasses.fields(OSSNetConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown configuration fields {unknown}; valid fields: {', '.join(sorted(fields))}")
    return dataclasses.replace(config, **overrides)


# Encoder output channels of a dataset without a paper configuration: the BraTS family (docs/reference.md §1.2).
NEW_DATASET_ENCODER_WIDTHS = (16, 32, 64, 128)


def dataset_base(dataset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """in_channels, encoder_channels and volume_shape of `dataset`.

    BraTS and LiTS have the paper's. Any other dataset takes `in_channels` and `volume_shape` from
    `overrides` (from its fingerprint: `oss_net.models.network_config`) and the BraTS encoder widths.
    """
    if dataset in _DATASET_BASES:
        return _DATASET_BASES[dataset]
    missing = [key for key in ("in_channels", "volume_shape") if key not in overrides]
    if missing:
        raise ConfigError(f"dataset {dataset!r} has no paper configuration: give {' and '.join(missing)} "
                          "(network_config takes them from the dataset fingerprint)")
    widths = (int(overrides["in_channels"]),) + NEW_DATASET_ENCODER_WIDTHS
    return {"in_channels": widths[0], "encoder_channels": tuple(zip(widths, widths[1:])),
            "volume_shape": tuple(overrides["volume_shape"])}


DEMO_VOLUME_SHAPES: dict[str, tuple[int, int, int]] = {"brats": (64, 64, 40), "lits": (64, 64, 64)}
DEMO_ENCODER_BLOCKS = 3
DEMO_DECODER_WIDTH = 128


def demo_config(name: str = "C", dataset: str = "brats", **overrides: Any) -> OSSNetConfig:
    """Small CPU preset of configuration `name` for `make demo` and the tests.

    BraTS: a 64x64x40 model grid (encoder input 32x32x20) and the first 3 of the 4 BraTS encoder blocks,
    (4,16),(16,32),(32,64), so the encoder output is 4x4x2 and the latent size 32. With all 4 blocks
    the output would floor to 2x2x1 (L = 4), which leaves the latents nearly nothing to carry.
    LiTS: 64^3 and blocks (1,8),(8,16),(16,32): output 4^3, L = 64. The decoder width is 128.
    Other datasets: the grid and in_channels given in `overrides` and the first 3 encoder blocks.
    The skip encoder's heads then have 8+16+32 = 56 (BraTS) channels and the segmentation head 64 -> 1.
    """
    dataset = config_dataset(dataset)
    base = dataset_base(dataset, overrides)
    demo = {
        "volume_shape": DEMO_VOLUME_SHAPES.get(dataset, base["volume_shape"]),
        "encoder_channels": base["encoder_channels"][:DEMO_ENCODER_BLOCKS],
        "decoder_width": DEMO_DECODER_WIDTH,
    }
    return get_config(name, dataset, **{**demo, **overrides})
