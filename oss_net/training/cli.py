"""Command line of `train_oss_net.py` / `oss-net-train`: the original's flags plus resume, seeds and AMP.

    python train_oss_net.py --train --test --network_config C --dataset BraTS --dataset_path /data/BraTS2020 \
        --batch_size 8 --epochs 50 --uniform_sampling
    python train_oss_net.py --train --test --demo --dataset_path /tmp/synthetic_brats --cpu
    python train_oss_net.py --train --test --paper ...                 # every original behaviour (oss_net.compat)
    python train_oss_net.py --resume runs/2021_..._full_brats          # continue a killed run exactly
    python train_oss_net.py --train ... --output_dir runs/x --overwrite # a new run in a used folder (old files kept aside)
    torchrun --nproc_per_node 2 train_oss_net.py --train --test ...    # DDP, one process per GPU

A flag left out takes the preset value (paper, or `--demo`); with `--resume` it takes the value the
run was started with, so `--resume DIR` alone continues the same run (from its newest intact checkpoint).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Sequence

from oss_net.cli_errors import add_verbose_flag, run_command, with_flag
from oss_net.datasets import canonical_dataset
from oss_net.geometry import add_prefer_flag
from oss_net.labels import LABEL_MODES
from oss_net.models import CONFIG_NAMES, UNET_NAMES, canonical_network_name
from oss_net.precision import AMP_MODES
from oss_net.training.resume import resume_checkpoint, training_state
from oss_net.training.settings import TrainSettings, resolve_settings

# Flags that may differ between a run and its resumption; everything else comes from the checkpoint.
RESUME_OVERRIDABLE = (
    "train", "test", "cuda_devices", "cpu", "num_workers", "val_every", "dense_validation", "max_iterations",
    "checkpoint_every", "keep_last", "dataset_path", "cache_dir", "output_dir", "checkpoint_activations",
)


def _network_config_names() -> str:
    return ", ".join(("O-Net", "A", "B", "C", "D", *CONFIG_NAMES, *UNET_NAMES))


def build_parser() -> argparse.ArgumentParser:
    """Every flag defaults to None so that presets and resumed runs can tell what was given."""
    parser = argparse.ArgumentParser(  # no prog: `oss-net-train` and `train_oss_net.py` each name themselves
        description="Train (and validate) OSS-Net on BraTS 2020, LiTS, nnU-Net, Decathlon or FLARE21 data.",
        allow_abbrev=False,
    )
    original = parser.add_argument_group("original flags")
    original.add_argument("--train", action="store_true", default=None, help="run the training loop")
    validation = original.add_mutually_exclusive_group()
    validation.add_argument("--test", action="store_true", default=None,
                            help="validate every --val_every epochs (the default with --train; alone: evaluate "
                                 "--load_model once)")
    validation.add_argument("--no_validation", dest="test", action="store_false", default=None,
                            help="(new) train without validation: no val/ metrics and no best_model.pt")
    original.add_argument("--cuda_devices", type=str, default=None,
                          help='GPUs to use, e.g. "0, 1" (sets CUDA_VISIBLE_DEVICES; use torchrun for several)')
    original.add_argument("--cpu", action="store_true", default=None, help="train on the CPU")
    original.add_argument("--epochs", type=int, default=None, help="epochs (paper: 50; demo preset: smaller)")
    original.add_argument("--batch_size", type=int, default=None, help="volumes per step and process; with --paper over all processes (paper: BraTS 8, LiTS 4)")
    original.add_argument("--training_samples", type=int, default=None, help="points per volume (paper: 2^14)")
    original.add_argument("--load_model", type=str, default=None, help="initial weights: a model file or a training checkpoint")
    original.add_argument("--segmentation_loss_factor", type=float, default=None, help="weight of the aux segmentation loss (0.1)")
    original.add_argument("--network_config", type=str, default=None, help=f"configuration (default full = C): {_network_config_names()}")
    original.add_argument("--dataset", type=str, default=None, help="brats, lits, nnunet, msd or flare (default: detected from --dataset_path, else brats)")
    original.add_argument("--dataset_path", type=str, default=None,
                          help="dataset root folder (an nnU-Net dataset's images may be .nii.gz, .nii, .nrrd, .nhdr, "
                               ".mha or .mhd, as its dataset.json's file_ending says)")
    original.add_argument("--uniform_sampling", action="store_true", default=None,
                          help="sample training points uniformly (otherwise half from the border band)")
    new = parser.add_argument_group("new flags")
    new.add_argument("--output_dir", type=str, default=None, help="run folder (default runs/<timestamp>_<config>_<dataset>)")
    new.add_argument("--resume", type=str, default=None, metavar="DIR|CKPT",
                     help="continue a run from its newest intact (or this) checkpoint")
    new.add_argument("--overwrite", action="store_true", default=None,
                     help="start a new run in a --output_dir that holds files (the earlier run's files are moved "
                          "into replaced_<time>/ there; nothing is deleted)")
    new.add_argument("--seed", type=int, default=None, help="seed of weights, data order and sampling (0)")
    new.add_argument("--amp", choices=AMP_MODES, default=None, help="autocast dtype (off); fp16 adds a GradScaler")
    new.add_argument("--num_workers", type=int, default=None, help="DataLoader workers (0)")
    new.add_argument("--val_every", type=int, default=None, help="epochs between validations (5)")
    new.add_argument("--val_samples", type=int, default=None, help="points per validation volume (BraTS 2^17, LiTS 2^14)")
    new.add_argument("--no_dense_validation", dest="dense_validation", action="store_false", default=None,
                     help="skip the full-volume Dice at validation")
    new.add_argument("--border_balance", type=float, default=None, help="fraction of border points (overrides --uniform_sampling)")
    new.add_argument("--lr", type=float, default=None, help="learning rate (paper 3e-4; demo preset 2e-3)")
    new.add_argument("--pau_lr", type=float, default=None, help="learning rate of the PAU coefficients (1e-2); "
                     "no effect with --paper, where they move at --lr as in the original (docs/reference.md §5.1)")
    new.add_argument("--demo", action="store_true", default=None, help="small CPU preset: demo model and sample counts")
    new.add_argument("--no_augmentation", dest="augment", action="store_false", default=None, help="train without augmentation")
    new.add_argument("--max_iterations", type=int, default=None, help="stop after this many steps in total (smoke runs; not carried over by --resume)")
    new.add_argument("--checkpoint_every", type=int, default=None, help="iterations between checkpoints (50)")
    new.add_argument("--keep_last", type=int, default=None, help="periodic checkpoints kept (3)")
    new.add_argument("--cache_dir", type=str, default=None, help="cache of pre-processed cases")
    new.add_argument("--volume_shape", type=int, nargs=3, default=None, metavar=("D", "H", "W"),
                     help="model grid of an nnunet/msd/flare dataset (default: from the dataset fingerprint)")
    new.add_argument("--label_mode", choices=LABEL_MODES, default=None,
                     help="binary (the paper's), regions (sigmoid per region, BraTS WT/TC/ET) or exclusive "
                          "(softmax over background + classes): oss_net.labels (default: regions for "
                          "a dataset.json listing regions, exclusive for several foreground labels as FLARE21's "
                          "four organs, else binary)")
    new.add_argument("--continuous_sampling", action="store_true", default=None,
                     help="jitter each training point uniformly inside its voxel and train on the label interpolated "
                          "there, so the decoder learns the field between voxel centres (for --output_spacing finer "
                          "than the scan; off by default, not in paper mode)")
    new.add_argument("--checkpoint_activations", action="store_true", default=None,
                     help="recompute the encoder's and decoder's residual blocks (a U-Net's blocks) in the backward "
                          "pass instead of keeping their activations: same gradients, a fraction of the activation "
                          "memory, about one more forward pass of time (off by default and in paper mode)")
    new.add_argument("--paper", dest="compat", action="store_const", const="paper", default=None,
                     help="paper mode: every behaviour of the original code (oss_net.compat; README 'Paper mode')")
    new.add_argument("--paper_replicas", type=int, default=None,
                     help="paper mode: the original's GPU count (2): batch norm per replica of --batch_size / this many "
                          "volumes, validation scores averaged per batch of this many volumes")
    add_prefer_flag(new)
    return parser


def settings_from_args(arguments: argparse.Namespace) -> TrainSettings:
    """Resolve presets; with --resume, start from the run's saved settings and apply the given flags."""
    given: dict[str, Any] = {key: value for key, value in vars(arguments).items() if value is not None}
    if "resume" not in given:
        if given.get("train") and "test" not in given:
            given["test"] = True  # training validates unless --no_validation says otherwise
        return resolve_settings(given)
    path, state = resume_checkpoint(given["resume"])
    saved = dict(training_state(state, path)["settings"])
    saved["max_iterations"] = None  # a limit of the interrupted invocation, not of the run
    saved["overwrite"] = False  # of the invocation that started the run
    given["resume"] = str(path)  # the checkpoint chosen (the newest intact one of a folder), read again by train
    changed = {key: value for key, value in given.items() if key in RESUME_OVERRIDABLE or key == "resume"}
    fixed = {key: value for key, value in given.items() if key not in changed}
    if "dataset" in fixed:
        fixed["dataset"] = canonical_dataset(fixed["dataset"])
    if "network_config" in fixed:
        fixed["network_config"] = canonical_network_name(fixed["network_config"])
    # Flags that define the run are checked later (train), so a conflicting one fails with a clear error.
    return TrainSettings.from_dict({**saved, **changed, **fixed})


def train(settings: TrainSettings) -> Path:
    """Train and/or validate as `settings` say; returns the run folder (see oss_net.training.loop)."""
    # Imported on call: the loop brings validation, inference and meshing, which `--help` and
    # `import oss_net.training` do without (measured: +1.3-2.0 s on a 3-4 s import, 2 CPU cores).
    from oss_net.training.loop import train as run_training

    return run_training(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run `train`; 0 on success, else one line on stderr (oss_net.cli_errors)."""
    parser = build_parser()
    add_verbose_flag(parser)
    arguments = parser.parse_args(argv)
    verbose = vars(arguments).pop("verbose")  # not a training setting
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def work() -> None:
        print(f"run folder: {train(settings_from_args(arguments))}")

    # Ctrl-C before the first checkpoint: the same command again (a given --output_dir holds files by then)
    again = with_flag(argv, "--overwrite" if arguments.output_dir and not arguments.resume else None)
    return run_command(work, prog=parser.prog, verbose=verbose, continue_with=again)
