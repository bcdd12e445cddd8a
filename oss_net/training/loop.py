"""`train(settings)`: the training loop of docs/reference.md §5, resumable at iteration granularity.

`fit` is one loop over iterations: the learning rate of the epoch (a pure function), one
`oss_net.training.step.train_step`, its scalars logged; at the end of an epoch the PAU summary,
validation every `val_every` epochs and a checkpoint; within an epoch a checkpoint every
`checkpoint_every` iterations and where `--max_iterations` stops the run.

Reproducibility contract (CPU): the data order depends only on (seed, epoch), each sample's random
points and augmentation only on (seed, epoch, index), a 2D U-Net's slices only on (seed, iteration),
the weights only on the seed, and a checkpoint holds everything else (weights, Lookahead(RAdam)
state, grad scaler, RNG states, position). So a run killed at any moment and resumed from its newest
checkpoint ends with the same weights, bit for bit, as one that was never interrupted.

Only rank 0 writes: checkpoints, metrics, plots and the settings. Under torchrun every rank reads
the same checkpoint on resume.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from oss_net.cli_errors import Interrupted
from oss_net.compat import (
    apply_compat, behaviour, best_score, per_rank_batch, replicas_per_process, validation_batch,
)
from oss_net.data import DatasetError, OSSNetDataset, collate_samples, discover, load_case
from oss_net.data.case_files import Problem
from oss_net.data.channels import grid_problems
from oss_net.data.class_targets import training_label_mode
from oss_net.data.fingerprint import compute_fingerprint
from oss_net.data.layouts import dataset_info
from oss_net.datasets import PAPER_DATASETS
from oss_net.geometry import preferred_affine
from oss_net.io import (
    OSSNetError, atomic_save_json, atomic_save_torch, check_output_folder, prepare_output_folder, refuse_output_in_inputs,
)
from oss_net.models import (build_model, checkpoint_payload, is_dense, load_model, model_from_payload, network_config,
                            parameter_groups, save_model, set_activation_recomputation)
from oss_net.training import resume
from oss_net.training.distributed import (
    ProcessContext, barrier, select_cuda_devices, setup_process, teardown_process, wrap_model,
)
from oss_net.training.lookahead import Lookahead, build_optimizer
from oss_net.training.recorder import CSV_NAME, PLOT_NAME, TENSORBOARD_DIR, Recorder
from oss_net.training.run_header import run_header
from oss_net.training.sampler import ResumableSampler, derive_seed
from oss_net.training.settings import (
    SettingsError, TrainSettings, check_resume_compatible, learning_rate, lr_milestones,
)
from oss_net.training.step import NonFiniteLossError, train_step
from oss_net.training.validation import dense_validation, sampled_validation

HYPERPARAMETERS_NAME = "hyperparameters.json"
BEST_NAME = "best_model.pt"
FINAL_NAME = "final_model.pt"
SUMMARY_NAME = "summary.json"
METRICS_NAME = "metrics.json"  # --test without --train
# Everything a run writes at the top of its folder: what --overwrite moves aside (resume.claim_run_folder).
RUN_OUTPUTS = (HYPERPARAMETERS_NAME, BEST_NAME, FINAL_NAME, SUMMARY_NAME, METRICS_NAME, CSV_NAME, PLOT_NAME,
               TENSORBOARD_DIR, resume.CHECKPOINT_DIR)

logger = logging.getLogger(__name__)


class TrainingError(OSSNetError):
    """A run that cannot go on: a non-finite loss, too few cases for a batch."""


@dataclass
class Position:
    """Where the run stands: `batch` batches of `epoch` are done, `iteration` steps in total."""

    epoch: int = 0
    batch: int = 0
    iteration: int = 0
    best_metric: float = -math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    pau_at_epoch_start: list[float] | None = None  # every PAU coefficient when `epoch` began (`pau_coefficients`)


@dataclass
class Run:
    """Everything the loop works on, built once by `build_run`."""

    settings: TrainSettings
    context: ProcessContext
    run_dir: Path
    config: Any  # OSSNetConfig or UNetConfig
    model: nn.Module  # the bare model (weights are saved from it)
    network: nn.Module  # the model as trained (DDP-wrapped under torchrun)
    optimizer: Lookahead
    scaler: torch.amp.GradScaler
    position: Position
    recorder: Recorder
    train_cases: list  # CaseFiles of the training split ([] when only validating)
    val_cases: list  # CaseFiles of the validation split ([] without --test)
    split: dict[str, list[str]] = field(default_factory=dict)  # case ids per split, stored in every checkpoint


def train(settings: TrainSettings) -> Path:
    """Train and/or validate as `settings` say; returns the run folder."""
    select_cuda_devices(settings.cuda_devices)  # before anything asks CUDA about its devices
    if not settings.train and not settings.test:
        raise SettingsError("nothing to do: pass --train and/or --test")
    if settings.dataset_path is None:
        raise SettingsError("--dataset_path is required (the dataset root folder)")
    if not settings.train and settings.load_model is None and settings.resume is None:
        raise SettingsError("--test without --train evaluates a model: pass --load_model (or --resume)")
    context = setup_process(settings.cpu)
    try:
        with preferred_affine(settings.prefer):  # every file this run reads takes the affine --prefer chose
            run = build_run(settings, context)
            try:
                if settings.train:
                    fit(run)
                else:
                    _evaluate_only(run)
            except KeyboardInterrupt:
                if settings.train and resume.periodic_checkpoints(run.run_dir):  # Ctrl-C: how to go on (cli_errors)
                    raise Interrupted(["--resume", str(run.run_dir)]) from None
                raise
            finally:
                run.recorder.close()
        return run.run_dir
    finally:
        teardown_process(context)


# ---------------------------------------------------------------------------------------------- loop


def fit(run: Run) -> None:
    """Train from `run.position` to the last epoch (or --max_iterations), then write the final model."""
    settings, context, position = run.settings, run.context, run.position
    data = TrainingData(run)
    validate = Validator(run) if settings.test and context.is_main else None
    batches = data.batches_from(position.epoch, position.batch)
    max_iterations = settings.max_iterations or math.inf
    progress = tqdm(total=settings.epochs * data.batches_per_epoch, initial=position.iteration, desc="training",
                    disable=not context.is_main, leave=False, dynamic_ncols=True)
    clock = _EpochClock()
    run.network.train()
    while position.epoch < settings.epochs and position.iteration < max_iterations:
        if position.batch == 0:
            position.pau_at_epoch_start = pau_coefficients(run.model).tolist()
        batch = clock.fetch(batches)
        values = _optimise(run, batch)
        position.iteration += 1
        position.batch += 1
        run.recorder.log(position.iteration, position.epoch, values)
        progress.update(1)
        progress.set_postfix(epoch=position.epoch + 1, loss=f"{values['train/loss']:.4f}")
        epoch_done = position.batch == data.batches_per_epoch
        if epoch_done or position.iteration == max_iterations:
            run.recorder.log(position.iteration, position.epoch, clock.lap())
        if epoch_done:
            _end_epoch(run, validate)
            clock = _EpochClock()
        elif position.iteration == max_iterations or position.iteration % settings.checkpoint_every == 0:
            _save(run, position)
    progress.close()
    _finish(run)


def _optimise(run: Run, batch: dict) -> dict[str, float]:
    """One `train_step` at the epoch's learning rate; returns the scalars to log. A non-finite loss
    stops the run before anything of this iteration is applied or written."""
    settings, position = run.settings, run.position
    base_lr = {"default": settings.lr, "pau": settings.pau_lr}  # by oss_net.models.parameter_groups' names
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(base_lr[group["name"]], position.epoch, settings.epochs)
    try:
        losses = train_step(
            run.network, batch, run.optimizer, amp=settings.amp, scaler=run.scaler,
            segmentation_loss_factor=settings.segmentation_loss_factor, context=run.context,
            generator=torch.Generator().manual_seed(derive_seed(settings.seed, position.iteration)),
        )
    except NonFiniteLossError as error:
        raise TrainingError(
            f"{error} at iteration {position.iteration + 1} (epoch {position.epoch + 1}, batch {position.batch + 1}); "
            f"cases in the batch: {', '.join(batch['case_id'])}. "
            f"Nothing was written for this iteration; resume from the newest checkpoint in {run.run_dir}"
        ) from None
    values = {"train/loss": losses.occupancy.item(), "train/loss_total": losses.total.item(),
              "train/lr": run.optimizer.param_groups[0]["lr"]}
    if losses.segmentation is not None:
        values["train/aux_loss"] = losses.segmentation.item()
    return values


def _end_epoch(run: Run, validate: Validator | None) -> None:
    """The PAU summary, validation every `val_every` epochs and after the last, the epoch-end checkpoint."""
    settings, position = run.settings, run.position
    run.recorder.log(position.iteration, position.epoch, _pau_summary(run.model, position.pau_at_epoch_start))
    finished = position.epoch + 1
    if validate is not None and (finished % settings.val_every == 0 or finished == settings.epochs):
        _record_validation(run, validate())
    barrier(run.context)
    position.epoch, position.batch = finished, 0
    _save(run, position)
    if validate is not None:
        run.recorder.flush()


def _record_validation(run: Run, metrics: dict[str, float]) -> None:
    """Log and keep the metrics of the epoch just trained; a better score than before writes best_model.pt
    (dense Dice on the model grid, or in paper mode the sampled IoU: `oss_net.compat.best_score`)."""
    position = run.position
    run.recorder.log(position.iteration, position.epoch, metrics)
    position.history.append({"epoch": position.epoch + 1, "iteration": position.iteration, **metrics})
    score = best_score(metrics, run.settings.compat)
    if score > position.best_metric:
        position.best_metric = score
        atomic_save_torch({**checkpoint_payload(run.model, run.split), "validation": metrics, "epoch": position.epoch + 1},
                          run.run_dir / BEST_NAME)
    tqdm.write(f"epoch {position.epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def _finish(run: Run) -> None:
    """The final model and summary.json (rank 0), once every rank is done."""
    if run.context.is_main:
        position = run.position
        save_model(run.run_dir / FINAL_NAME, run.model, run.split)
        summary = {**vars(position), "best_metric": position.best_metric if math.isfinite(position.best_metric) else None}
        del summary["pau_at_epoch_start"]
        atomic_save_json({"position": summary, "run_dir": str(run.run_dir)}, run.run_dir / SUMMARY_NAME)
        run.recorder.flush()
    barrier(run.context)


class _EpochClock:
    """Iterations per second and the fraction of that time spent waiting for data, over one epoch."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.waited = 0.0
        self.steps = 0

    def fetch(self, batches: Iterator[dict]) -> dict:
        fetch_started = time.perf_counter()
        batch = next(batches)
        self.waited += time.perf_counter() - fetch_started
        self.steps += 1
        return batch

    def lap(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.started
        return {"time/iterations_per_s": self.steps / elapsed, "time/data_wait_fraction": self.waited / elapsed}


def pau_coefficients(model: nn.Module) -> torch.Tensor:
    """Every PAU coefficient of `model` (numerators and denominators, in parameter order) as one float64 CPU vector."""
    values = [p.detach().double().flatten().cpu() for name, p in model.named_parameters()
              if name.endswith(("numerator", "denominator"))]
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)


def _pau_summary(model: nn.Module, at_epoch_start: list[float] | None) -> dict[str, float]:
    """Mean and max |coefficient| over every PAU's numerator and denominator, and the L2 norm of the change of all
    PAU coefficients over the epoch (`pau/change_l2`; it shows the PAUs' effective learning rate, which paper
    mode's optimiser ties to the ordinary one: docs/reference.md §5.1)."""
    summary = {}
    for part in ("numerator", "denominator"):
        values = [p.detach().abs().flatten() for name, p in model.named_parameters() if name.endswith(part)]
        if values:
            joined = torch.cat(values)
            summary[f"pau/{part}_mean_abs"] = joined.mean().item()
            summary[f"pau/{part}_max_abs"] = joined.max().item()
    now = pau_coefficients(model)
    if at_epoch_start is not None and len(at_epoch_start) == len(now) and len(now):
        summary["pau/change_l2"] = (now - torch.tensor(at_epoch_start, dtype=torch.float64)).norm().item()
    return summary


# --------------------------------------------------------------------------------------------- setup


def build_run(settings: TrainSettings, context: ProcessContext) -> Run:
    """Find the data, build (or restore from --resume) the model, optimiser and position, prepare the run folder."""
    # Find the data first, so a wrong path fails before anything is written.
    train_cases = _discover(settings, "train") if settings.train else []
    val_cases = _discover(settings, "val") if settings.test else []
    if settings.test and not val_cases:
        raise TrainingError(f"{settings.dataset_path}: no validation cases: too few labelled cases to hold one out "
                            "(training validates by default; pass --no_validation to train without)")
    _check_headers(settings, train_cases + val_cases)  # a bad case fails now, not after an epoch
    split = {"train": [c.case_id for c in (train_cases if settings.train else _discover(settings, "train"))],
             "val": [c.case_id for c in (val_cases if settings.test else _discover(settings, "val"))]}
    resume_state = None
    if settings.resume is not None:
        resume_path, resume_state = resume.resume_checkpoint(settings.resume)
        check_resume_compatible(settings, resume.training_state(resume_state, resume_path)["settings"], str(resume_path))
        run_dir = Path(settings.output_dir) if settings.output_dir else resume.run_dir_of(resume_path)
    config = apply_compat(network_config(settings.network_config, settings.dataset, demo=settings.demo,
                                         **_dataset_geometry(settings)), settings.compat)
    config = training_label_mode(config, settings.label_mode, settings.dataset, settings.dataset_path)
    if settings.resume is None:
        run_dir = Path(settings.output_dir) if settings.output_dir else _default_run_dir(settings, config.name)
    if context.is_main:  # before any work: a run or cache folder that cannot be written fails here, writing nothing
        check_output_folder(run_dir, "run folder")
        refuse_output_in_inputs(run_dir, [path.parent for files in train_cases + val_cases
                                          for path in (*files.images, files.label) if path is not None], "--output_dir")
        if not settings.overwrite and (resume_state is None or run_dir != resume.run_dir_of(resume_path)):
            resume.claim_run_folder(run_dir, RUN_OUTPUTS)  # refuses a folder holding anything
        if settings.cache_dir is not None:
            check_output_folder(settings.cache_dir, "cache folder")
        if resume_state is None:  # a resumed run's cases were read in full when it started
            _check_values(settings, config, train_cases, val_cases)  # every voxel, before the first write

    _seed_everything(settings.seed)
    model = build_model(config)
    set_activation_recomputation(model, settings.checkpoint_activations)
    if settings.load_model is not None and resume_state is None:
        _load_initial_weights(model, settings.load_model)
    model.to(context.device)
    optimizer = build_optimizer(parameter_groups(model, lr=settings.lr, pau_lr=settings.pau_lr), compat=settings.compat)
    scaler = torch.amp.GradScaler(context.device.type, enabled=settings.amp == "fp16")
    position = Position() if resume_state is None else _restore(resume_state, model, optimizer, scaler, resume_path)

    if context.is_main:
        if settings.overwrite:
            resume.claim_run_folder(run_dir, RUN_OUTPUTS, overwrite=True)  # the earlier run's files moved aside
        prepare_output_folder(run_dir, "run folder")
        resume.remove_stale_temporaries(run_dir)
        header = run_header(settings, config, split)
        for line in header:
            logger.info(line)
        atomic_save_json({**_hyperparameters(settings, config, context), "run": header}, run_dir / HYPERPARAMETERS_NAME)
    recorder = Recorder(run_dir, enabled=context.is_main, resume_iteration=position.iteration if resume_state else None)
    return Run(
        settings=settings, context=context, run_dir=run_dir, config=config, model=model,
        network=wrap_model(model, context, replicas_per_process(settings.paper_replicas, context.world_size, settings.compat)),
        optimizer=optimizer, scaler=scaler, position=position,
        recorder=recorder, train_cases=train_cases, val_cases=val_cases, split=split,
    )


def _default_run_dir(settings: TrainSettings, config_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    return Path("runs") / f"{stamp}_{config_name}_{settings.dataset}"


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _load_initial_weights(model: nn.Module, path: str) -> None:
    """--load_model: weights from a model file or a training checkpoint of the same configuration, in the dtype
    of the model being trained (a float64 file is rounded to it because training asks so)."""
    loaded = load_model(path, map_location="cpu", config=model.config, dtype=next(model.parameters()).dtype)
    model.load_state_dict(loaded.state_dict())


def _hyperparameters(settings: TrainSettings, config: Any, context: ProcessContext) -> dict[str, Any]:
    return {
        "settings": settings.to_dict(),
        "config": config.to_dict(),
        "world_size": context.world_size,
        "device": str(context.device),
        "torch": torch.__version__,
        "lr_milestones": lr_milestones(settings.epochs),
    }


def _restore(state: dict[str, Any], model: nn.Module, optimizer: Lookahead, scaler: torch.amp.GradScaler,
             source: Path) -> Position:
    """Load a training checkpoint into freshly built objects; returns the saved position.

    Checkpoints of earlier versions also hold a "scheduler" entry; the learning rate now follows from
    the epoch alone, so it is not needed.
    """
    training = state["training"]
    model.load_state_dict(model_from_payload(state, "checkpoint", config=model.config).state_dict())
    try:
        optimizer.load_state_dict(training["optimizer"])
    except ValueError as error:
        raise TrainingError(f"{source}: cannot resume: {error}") from None
    if training["scaler"]:
        scaler.load_state_dict(training["scaler"])
    resume.restore_rng_state(training["rng"])
    saved = training["position"]
    return Position(
        epoch=int(saved["epoch"]), batch=int(saved["batch"]), iteration=int(saved["iteration"]),
        best_metric=float(saved["best_metric"]), history=list(training["history"]),
        pau_at_epoch_start=saved.get("pau_at_epoch_start"),
    )


def _save(run: Run, position: Position) -> None:
    """Checkpoint at `position` (rank 0), then drop old periodic checkpoints."""
    if not run.context.is_main:
        return
    state = {
        **checkpoint_payload(run.model, run.split),
        "training": {
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else {},
            "rng": resume.capture_rng_state(),
            "position": {"epoch": position.epoch, "batch": position.batch, "iteration": position.iteration,
                         "best_metric": position.best_metric, "pau_at_epoch_start": position.pau_at_epoch_start},
            "history": position.history,
            "settings": run.settings.to_dict(),
        },
    }
    resume.save_checkpoint(state, resume.checkpoint_path(run.run_dir, position.iteration))
    resume.prune_checkpoints(run.run_dir, run.settings.keep_last)
    run.recorder.flush(plot=False)


# ---------------------------------------------------------------------------------------------- data


def _discover(settings: TrainSettings, split: str) -> list:
    return discover(settings.dataset, settings.dataset_path, split, seed=settings.seed)


def _check_headers(settings: TrainSettings, cases: list) -> None:
    """Every case file's header (3-D, no empty axis, one shape and affine per case), all problems in one error."""
    _raise_bad_cases(settings, grid_problems(cases)[1])


def _check_values(settings: TrainSettings, config: Any, train_cases: list, val_cases: list) -> None:
    """Read every case once, as training and validation will (`load_case`): NaN/Inf images, label values outside
    the dataset's set, truncated files; every bad case in one error, before anything is written to the run folder.

    With --cache_dir this fills the cache (border bands included where sampling needs them), so the
    epochs read it and the scan costs nothing extra; without one a case is read, checked and dropped
    (a border file is read, but a missing one is not computed here).
    """
    problems = []
    for cases, border_balance in ((train_cases, settings.border_balance), (val_cases, settings.val_border_balance)):
        for files in cases:
            with_border = border_balance > 0 and (settings.cache_dir is not None or files.border is not None)
            try:
                load_case(files, config, cache_dir=settings.cache_dir, with_border=with_border)
            except DatasetError as error:
                problems.append(Problem(files.case_id, str(error)))
    _raise_bad_cases(settings, problems)


def _raise_bad_cases(settings: TrainSettings, problems: list) -> None:
    """One DatasetError listing every problem (file and problem each) and what to do; nothing when none."""
    if problems:
        raise DatasetError(f"{settings.dataset_path}: {len(problems)} bad case(s), nothing written (fix or remove them; "
                           f"python -m oss_net.data.check {settings.dataset_path} lists every problem): "
                           + "; ".join(" ".join(p.message.split()) for p in problems))


def _dataset_geometry(settings: TrainSettings) -> dict[str, Any]:
    """network_config's fingerprint and volume_shape for a dataset without a paper configuration; {} for BraTS/LiTS.

    The fingerprint is computed from the training split's files (deterministic), so a resumed or
    evaluated run rebuilds the configuration stored in its checkpoint.
    """
    if settings.dataset in PAPER_DATASETS:
        return {}
    info = dataset_info(settings.dataset, settings.dataset_path)
    return {"fingerprint": compute_fingerprint(_discover(settings, "train"), info), "volume_shape": settings.volume_shape}


class TrainingData:
    """The training split as batches: their order depends only on (seed, epoch), each sample's points
    and augmentation only on (seed, epoch, index), so neither resuming nor the worker count changes them."""

    def __init__(self, run: Run) -> None:
        settings, context = run.settings, run.context
        self.settings, self.context = settings, context
        flags = behaviour(settings.compat)
        self.dataset = OSSNetDataset(
            run.train_cases, run.config, samples=settings.training_samples, border_balance=settings.border_balance,
            augment=settings.augment, cache_dir=settings.cache_dir, seed=settings.seed,
            include_last_index=flags.include_last_index, augmentation=flags.augmentation,
            continuous=settings.continuous_sampling,
        )
        self.batch_size = per_rank_batch(settings.batch_size, context.world_size, settings.compat)
        self.sampler = ResumableSampler(len(self.dataset), self.batch_size, settings.seed, context.rank, context.world_size)
        self.batches_per_epoch = self.sampler.batches_per_epoch
        if self.batches_per_epoch == 0:
            raise TrainingError(
                f"{settings.dataset_path}: {len(self.dataset)} training cases cannot fill one batch of "
                f"{self.batch_size} × {context.world_size} process(es); lower --batch_size"
            )

    def batches(self, epoch: int, start_batch: int = 0) -> DataLoader:
        """This rank's batches of `epoch` from `start_batch` on."""
        settings, context = self.settings, self.context
        self.sampler.set_epoch(epoch, start_batch=start_batch)
        self.dataset.set_epoch(epoch)
        # A private generator keeps the loader off the global torch RNG, so a resumed run draws
        # exactly what an uninterrupted one does.
        return DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=self.sampler, num_workers=settings.num_workers,
            collate_fn=collate_samples, pin_memory=context.device.type == "cuda", drop_last=False,
            worker_init_fn=partial(_seed_worker, derive_seed(settings.seed, epoch, context.rank)),
            generator=torch.Generator().manual_seed(derive_seed(settings.seed, epoch)),
        )

    def batches_from(self, epoch: int, start_batch: int) -> Iterator[dict]:
        """The batches from (epoch, start_batch) on, epoch after epoch, without end."""
        while True:
            yield from self.batches(epoch, start_batch)
            epoch, start_batch = epoch + 1, 0


def _seed_worker(epoch_seed: int, worker_id: int) -> None:
    """Workers' global RNGs from (seed, epoch, rank, worker); the samples carry their own RNG."""
    worker_seed = derive_seed(epoch_seed, worker_id)
    torch.manual_seed(worker_seed)
    np.random.seed(worker_seed % 2**32)
    random.seed(worker_seed)


# ------------------------------------------------------------------------------------------ validation


class Validator:
    """Validation on rank 0. Cases are loaded one at a time at every validation (45 full-size
    BraTS volumes would not fit in memory at once); `--cache_dir` makes the reloads cheap."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.dense = is_dense(run.config)
        self.dataset = None if self.dense else _validation_dataset(run)

    def __call__(self) -> dict[str, float]:
        """Sampled-point metrics for OSS-Net; a U-Net has no decoder to sample, so it gets the dense Dice always.

        Paper mode draws new points at every validation (the dataset's epoch is the validation's index, so a
        resumed run draws the same) and averages per batch of --paper_replicas volumes, as the original.
        """
        run, settings = self.run, self.run.settings
        metrics: dict[str, float] = {}
        if self.dataset is not None:
            if behaviour(settings.compat).validation == "original":
                self.dataset.set_epoch(len(run.position.history))
            samples = (self.dataset[index] for index in range(len(self.dataset)))
            metrics = sampled_validation(run.model, samples, run.context.device, settings.amp,
                                         batch=validation_batch(settings.paper_replicas, settings.compat))
        if run.settings.dense_validation or self.dense:
            cases = (load_case(files, run.config, cache_dir=run.settings.cache_dir, with_border=False) for files in run.val_cases)
            metrics.update(dense_validation(run.model, cases, run.settings.amp))
        return metrics


def _validation_dataset(run: Run) -> Any:
    """The validation points, from a seed of their own: fixed (the dataset stays at epoch 0, so every validation
    sees the same points), or in paper mode redrawn per validation by `Validator`."""
    settings = run.settings
    return OSSNetDataset(
        run.val_cases, run.config, samples=settings.val_samples, border_balance=settings.val_border_balance,
        augment=False, cache_dir=settings.cache_dir, seed=derive_seed(settings.seed, 1),
        include_last_index=behaviour(settings.compat).include_last_index,
    )


def _evaluate_only(run: Run) -> None:
    """--test without --train: validate the given weights once and write metrics.json."""
    if not run.context.is_main:
        return
    metrics = Validator(run)()
    atomic_save_json(metrics, run.run_dir / METRICS_NAME)
    tqdm.write(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
