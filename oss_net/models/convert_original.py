"""Convert a state dict saved by the original OSS-Net code into a checkpoint of this package.

    python -m oss_net.models.convert_original WEIGHTS.pt --network_config B --dataset brats --output b.pt

The original names its modules differently (docs/original_weights.md). KEY_RULES maps every original
key to ours, one readable rule per kind of tensor; the conversion fails unless each original key matches
exactly one rule, every weight and buffer of ours is filled and every shape agrees. The one exception is
the segmentation head of E1/E2: the original's plain encoder never built it (docs/reference.md §12
item 7), so it keeps its initial values and the conversion says so (printed, and stored as
`unfilled_weights` in the checkpoint). The converted configuration feeds raw voxel indices and
max-pools large patches, as the original's inference did.
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from oss_net.cli_errors import add_verbose_flag, run_command
from oss_net.datasets import canonical_dataset
from oss_net.io import OSSNetError, atomic_save_torch

from .checkpoint import CheckpointError, checkpoint_payload, is_original_state_dict, read_checkpoint_file
from .config import CONFIG_NAMES, OSSNetConfig, get_config
from .oss_net import OSSNet
from .registry import build_model

BN_TENSOR = r"(weight|bias|running_mean|running_var|num_batches_tracked)"  # BatchNorm3d, same names in both
AFFINE_TENSOR = r"(weight|bias)"
PAU_COEFFICIENTS = r"weight_(numerator|denominator)"  # the original's PAU names; ours are numerator/denominator
DATA_PARALLEL_PREFIX = "module."  # keys of a state dict saved from nn.DataParallel

# (original key as a regular expression, our key with its groups): each original key matches exactly one.
# The original's nn.Sequential indices: residual block main path 0 conv, 1 BN, 2 PAU, 3 pool, 4 dropout,
# 5 conv, 6 BN; skip head 0 pool, 1 conv, 2 BN, 3 PAU; final mapping 0 conv, 1 BN, 2 PAU; patch mapping
# 0 conv, 1 PAU, 2 dropout, 3 conv, 4 PAU.
KEY_RULES: tuple[tuple[str, str], ...] = (
    # encoder residual blocks (docs/reference.md §2.1)
    (r"encoder\.blocks\.(\d+)\.main_mapping\.0\.weight", r"encoder.blocks.\1.conv1.weight"),
    (rf"encoder\.blocks\.(\d+)\.main_mapping\.1\.{BN_TENSOR}", r"encoder.blocks.\1.norm1.\2"),
    (rf"encoder\.blocks\.(\d+)\.main_mapping\.2\.{PAU_COEFFICIENTS}", r"encoder.blocks.\1.act1.\2"),
    (r"encoder\.blocks\.(\d+)\.main_mapping\.5\.weight", r"encoder.blocks.\1.conv2.weight"),
    (rf"encoder\.blocks\.(\d+)\.main_mapping\.6\.{BN_TENSOR}", r"encoder.blocks.\1.norm2.\2"),
    (r"encoder\.blocks\.(\d+)\.residual_mapping\.weight", r"encoder.blocks.\1.shortcut.weight"),
    (rf"encoder\.blocks\.(\d+)\.final_activation\.{PAU_COEFFICIENTS}", r"encoder.blocks.\1.act2.\2"),
    # skip encoder heads, one per block (docs/reference.md §2.3); same Sequential indices as ours
    (r"encoder\.output_mappings\.(\d+)\.1\.weight", r"encoder.heads.\1.1.weight"),
    (rf"encoder\.output_mappings\.(\d+)\.2\.{BN_TENSOR}", r"encoder.heads.\1.2.\2"),
    (rf"encoder\.output_mappings\.(\d+)\.3\.{PAU_COEFFICIENTS}", r"encoder.heads.\1.3.\2"),
    # final mapping to the latent(s), plain and skip encoder alike
    (rf"encoder\.final_mapping\.0\.{AFFINE_TENSOR}", r"encoder.final.0.\1"),
    (rf"encoder\.final_mapping\.1\.{BN_TENSOR}", r"encoder.final.1.\1"),
    (rf"encoder\.final_mapping\.2\.{PAU_COEFFICIENTS}", r"encoder.final.2.\1"),
    # low-resolution segmentation head (skip encoder only in the original)
    (r"encoder\.segmentation_mapping\.0\.weight", r"encoder.segmentation_head.conv.weight"),
    # decoder (docs/reference.md §3): Fourier matrix, patch mapping, residual CBN blocks, output layer
    (r"decoder\.b", r"decoder.fourier.frequencies"),
    (rf"decoder\.patch_mapping\.mapping\.0\.{AFFINE_TENSOR}", r"decoder.patch_mapping.conv1.\1"),
    (rf"decoder\.patch_mapping\.mapping\.1\.{PAU_COEFFICIENTS}", r"decoder.patch_mapping.act1.\1"),
    (rf"decoder\.patch_mapping\.mapping\.3\.{AFFINE_TENSOR}", r"decoder.patch_mapping.conv2.\1"),
    (rf"decoder\.patch_mapping\.mapping\.4\.{PAU_COEFFICIENTS}", r"decoder.patch_mapping.act2.\1"),
    (rf"decoder\.blocks\.(\d+)\.linear_layer_1\.{AFFINE_TENSOR}", r"decoder.blocks.\1.fc1.\2"),
    (rf"decoder\.blocks\.(\d+)\.linear_layer_2\.{AFFINE_TENSOR}", r"decoder.blocks.\1.fc2.\2"),
    (rf"decoder\.blocks\.(\d+)\.activation\.{PAU_COEFFICIENTS}", r"decoder.blocks.\1.act1.\2"),
    (rf"decoder\.blocks\.(\d+)\.final_activation\.{PAU_COEFFICIENTS}", r"decoder.blocks.\1.act2.\2"),
    (rf"decoder\.blocks\.(\d+)\.residual_mapping\.{AFFINE_TENSOR}", r"decoder.blocks.\1.shortcut.\2"),
    # the original spells its conditional batch norms "cnb_1" / "cnb_2"
    (rf"decoder\.blocks\.(\d+)\.cnb_([12])\.linear_gamma\.{AFFINE_TENSOR}", r"decoder.blocks.\1.cbn\2.gamma.\3"),
    (rf"decoder\.blocks\.(\d+)\.cnb_([12])\.linear_beta\.{AFFINE_TENSOR}", r"decoder.blocks.\1.cbn\2.beta.\3"),
    (
        r"decoder\.blocks\.(\d+)\.cnb_([12])\.normalization\.(running_mean|running_var|num_batches_tracked)",
        r"decoder.blocks.\1.cbn\2.norm.\3",
    ),
    (r"decoder\.final_mapping\.0\.weight", r"decoder.output.weight"),
)
_COMPILED_RULES = tuple((re.compile(pattern), template) for pattern, template in KEY_RULES)
ORIGINAL_DATASET_SUFFIXES = {"brats": "bra_ts", "lits": "lits"}


class ConversionError(OSSNetError, ValueError):
    """An original state dict that does not fit the named configuration, or a key no rule maps."""


@dataclass(frozen=True)
class Conversion:
    """A converted model and our weights the original had no value for (left at their initial values)."""

    model: OSSNet
    unfilled: tuple[str, ...]


def original_config(name: str, dataset: str) -> OSSNetConfig:
    """Our configuration of the original's `name` on `dataset`: raw voxel indices, max-pooled large patches."""
    if canonical_dataset(dataset) not in ORIGINAL_DATASET_SUFFIXES:
        raise ConversionError(f"the original code trained only on {', '.join(ORIGINAL_DATASET_SUFFIXES)}, not {dataset!r}")
    return get_config(name, dataset, raw_coordinates=True, large_patch_pooling="max")


def original_config_name(name: str, dataset: str) -> str:
    """The original's --network_config name with its dataset suffix, e.g. ("C", "brats") -> "oss_net_full_bra_ts"."""
    config = original_config(name, dataset)
    prefix = "" if config.name.startswith("vanilla_o_net") else "oss_net_"
    return f"{prefix}{config.name}_{ORIGINAL_DATASET_SUFFIXES[config.dataset]}"


def our_key(original_key: str) -> str:
    """Our state-dict key for one original key, by the one rule of KEY_RULES that matches it."""
    matches = [match.expand(template) for pattern, template in _COMPILED_RULES if (match := pattern.fullmatch(original_key))]
    if len(matches) != 1:
        problem = "no rule maps it" if not matches else f"{len(matches)} rules map it ({', '.join(matches)})"
        raise ConversionError(f"original key {original_key!r}: {problem}")
    return matches[0]


def absent_in_original(config: OSSNetConfig) -> tuple[str, ...]:
    """Our keys the original never had for `config`: the plain encoder's segmentation head (E1/E2)."""
    if config.encoder == "plain" and config.segmentation_head:
        return ("encoder.segmentation_head.conv.weight",)
    return ()


def convert_state_dict(original: Mapping[str, torch.Tensor], config: OSSNetConfig, source: str = "state dict") -> Conversion:
    """Our model of `config` holding the original's weights, in the dtype of the original's floating tensors.

    Raises ConversionError naming `source` and listing every unmapped, unexpected, missing or wrongly
    shaped key; the only keys allowed to stay unfilled are `absent_in_original(config)`.
    """
    state = _strip_data_parallel_prefix(original)
    try:
        mapped = {our_key(key): value for key, value in state.items()}
    except ConversionError as error:
        raise ConversionError(f"{source}: {error}") from None
    floating = [value.dtype for value in mapped.values() if value.is_floating_point()]
    model = build_model(config).to(floating[0] if floating else torch.float32)
    own = model.state_dict()
    allowed_unfilled = set(absent_in_original(config))
    problems = {
        "not in configuration": sorted(set(mapped) - set(own)),
        "missing": sorted(set(own) - set(mapped) - allowed_unfilled),
        "wrong shape": [
            f"{key} {list(mapped[key].shape)} in the file != {list(own[key].shape)}"
            for key in sorted(set(mapped) & set(own))
            if mapped[key].shape != own[key].shape
        ],
    }
    listed = [
        f"{label}: {', '.join(items[:5])}" + (f" ... ({len(items)} in all)" if len(items) > 5 else "")
        for label, items in problems.items()
        if items
    ]
    if listed:
        raise ConversionError(f"{source}: does not fit configuration {config.name} ({config.dataset}): " + "; ".join(listed))
    model.load_state_dict(mapped, strict=False)  # the only keys it may lack are absent_in_original(config)
    return Conversion(model, tuple(sorted(set(own) - set(mapped))))


def convert_file(weights: str | os.PathLike, name: str, dataset: str, output: str | os.PathLike) -> Conversion:
    """Convert the original's state dict at `weights` for configuration `name` and write our checkpoint to `output`.

    The checkpoint is the usual payload (so `load_model(output)` works) plus `unfilled_weights`, the list of
    our weights the original had no value for, and `converted_from`, the original configuration name.
    """
    try:
        state = read_checkpoint_file(weights)
    except CheckpointError as error:  # missing, a folder, unreadable or no PyTorch file: its reason in our words
        raise ConversionError(f"{weights}: not a PyTorch state dict ({error.reason})") from None
    if not is_original_state_dict(state):
        raise ConversionError(
            f"{weights}: not a state dict of the original OSS-Net code (expected tensors with PAU keys '*.weight_numerator'); "
            "a checkpoint of this package needs no conversion"
        )
    conversion = convert_state_dict(state, original_config(name, dataset), source=str(weights))
    payload: dict[str, Any] = checkpoint_payload(conversion.model)
    payload["unfilled_weights"] = list(conversion.unfilled)
    payload["converted_from"] = original_config_name(name, dataset)
    atomic_save_torch(payload, output)
    return conversion


def _strip_data_parallel_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict without the "module." prefix nn.DataParallel adds to every key (if all keys have it)."""
    if state and all(isinstance(key, str) and key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        return {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}
    return dict(state)


def main(argv: Sequence[str] | None = None) -> int:
    """Convert one file; an error prints one line (oss_net.cli_errors): status 2 for bad input, 1 for a bug."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("weights", help="state dict saved by the original code (.pt)")
    parser.add_argument("--network_config", required=True, help=f"the original's configuration: {', '.join(CONFIG_NAMES)} or a Table-1 name")
    parser.add_argument("--dataset", required=True, choices=tuple(ORIGINAL_DATASET_SUFFIXES), help="dataset the weights were trained on")
    parser.add_argument("--output", required=True, help="checkpoint to write (loads with oss_net.models.load_model)")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)

    def work() -> None:
        conversion = convert_file(args.weights, args.network_config, args.dataset, args.output)
        config = conversion.model.config
        print(
            f"{args.weights} ({original_config_name(config.name, config.dataset)}) -> {args.output}: {config.name} "
            f"({config.dataset}), raw coordinates, {config.large_patch_pooling}-pooled large patches"
        )
        if conversion.unfilled:
            print(f"not in the original, left at initial values: {', '.join(conversion.unfilled)} (its E1/E2 had no segmentation head)")

    return run_command(work, prog=parser.prog, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
