"""`train(settings)`: the training loop of reference §5, resumable at iteration granularity.

Reproducibility contract (CPU): the data order depends only on (seed, epoch), each sample's random
points and augmentation only on (seed, epoch, index), the weights only on the seed, and a checkpoint
holds everything else (weights, Lookahead(RAdam) state, scheduler, scaler, RNG states, position).
So a run killed at any moment and resumed from its newest checkpoint ends with the same weights,
bit for bit, as one that was never interrupted.

Only rank 0 writes: checkpoints, metrics, plots and the settings. Under torchrun every rank reads
the same checkpoint on resume.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from oss_net.io import OSSNetError, atomic_save_json, atomic_save_torch
from oss_net.training import checkpoint as ckpt
from oss_net.training.distributed import (
    ProcessContext, all_ranks_true, barrier, select_cuda_devices, setup_process, teardown_process, wrap_model,
)
from oss_net.training.lookahead import Lookahead, build_optimizer
from oss_net.training.loss import training_loss
from oss_net.training.recorder import Recorder
from oss_net.training.sampler import ResumableSampler, derive_seed
from oss_net.training.settings import SettingsError, TrainSettings, check_resume_compatible, lr_milestones
from oss_net.training.validation import dense_validation, sampled_validation

HYPERPARAMETERS_NAME = "hyperparameters.json"
BEST_NAME = "best_model.pt"
FINAL_NAME = "final_model.pt"
SUMMARY_NAME = "summary.json"


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


@dataclass
class Run:
    """Everything the loop works on, built once by `_build_run`."""

    settings: TrainSettings
    context: ProcessContext
    run_dir: Path
    config: Any
    model: nn.Module  # the bare model (weights are saved from it)
    network: nn.Module  # the model as trained (DDP-wrapped under torchrun)
    optimizer: Lookahead
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    scaler: torch.amp.GradScaler
    position: Position
    recorder: Recorder
    gather: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    segmentation_target: Callable[..., torch.Tensor]
    train_cases: list  # CaseFiles of the training split ([] when only validating)
    val_cases: list  # CaseFiles of the validation split ([] without --test)


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
        run = _build_run(settings, context)
        try:
            if settings.train:
                _train_loop(run)
            else:
                _evaluate_only(run)
        finally:
            run.recorder.close()
        return run.run_dir
    finally:
        teardown_process(context)


# --------------------------------------------------------------------------------------------- setup


def _default_run_dir(settings: TrainSettings, config_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    return Path("runs") / f"{stamp}_{config_name}_{settings.dataset}"


# The --demo U-Nets: the demo OSS-Net grid and three narrow levels, so a CPU step takes about a second.
DEMO_UNET_OVERRIDES: dict[str, Any] = {"channels": (8, 16, 32), "strides": (2, 2)}


def _model_config(settings: TrainSettings) -> Any:
    """The network configuration: OSS-Net (get_config / demo_config) or a U-Net baseline (get_unet_config)."""
    from oss_net.models import demo_config, get_config, get_unet_config, is_unet_name

    if is_unet_name(settings.network_config):
        overrides = {}
        if settings.demo:
            overrides = {**DEMO_UNET_OVERRIDES, "volume_shape": demo_config("C", settings.dataset).volume_shape}
        return get_unet_config(settings.network_config, settings.dataset, **overrides)
    if settings.demo:
        return demo_config(settings.network_config, settings.dataset)
    return get_config(settings.network_config, settings.dataset)


def _is_dense(config: Any) -> bool:
    """A U-Net baseline: a whole-volume loss and dense validation, no points, patches or auxiliary loss."""
    from oss_net.models import UNetConfig

    return isinstance(config, UNetConfig)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _load_initial_weights(model: nn.Module, path: str) -> None:
    """--load_model: weights from a model file or a training checkpoint of the same configuration."""
    from oss_net.models import load_model

    loaded = load_model(path, map_location="cpu", config=model.config)
    model.load_state_dict(loaded.state_dict())


def _build_run(settings: TrainSettings, context: ProcessContext) -> Run:
    from oss_net.data import gather_patches, segmentation_target
    from oss_net.models import build_model, parameter_groups

    # Find the data first, so a wrong path fails before anything is written.
    train_cases = _discover(settings, "train") if settings.train else []
    val_cases = _discover(settings, "val") if settings.test else []
    if settings.test and not val_cases:
        raise TrainingError(f"{settings.dataset_path}: no validation cases found (needed by --test)")
    resume_state = None
    if settings.resume is not None:
        resume_path = ckpt.find_checkpoint(settings.resume)
        resume_state = ckpt.load_checkpoint(resume_path)
        check_resume_compatible(settings, ckpt.training_state(resume_state, resume_path)["settings"], str(resume_path))
        run_dir = Path(settings.output_dir) if settings.output_dir else ckpt.run_dir_of(resume_path)
    config = _model_config(settings)
    if settings.resume is None:
        run_dir = Path(settings.output_dir) if settings.output_dir else _default_run_dir(settings, config.name)

    _seed_everything(settings.seed)
    model = build_model(config)
    if settings.load_model is not None and resume_state is None:
        _load_initial_weights(model, settings.load_model)
    model.to(context.device)
    optimizer = build_optimizer(parameter_groups(model, lr=settings.lr, pau_lr=settings.pau_lr))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(settings.epochs), gamma=0.1)
    scaler = torch.amp.GradScaler(context.device.type, enabled=settings.amp == "fp16")
    position = Position()
    if resume_state is not None:
        position = _restore(resume_state, model, optimizer, scheduler, scaler)

    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(run_dir)
        atomic_save_json(_hyperparameters(settings, config, context), run_dir / HYPERPARAMETERS_NAME)
    recorder = Recorder(run_dir, enabled=context.is_main, resume_iteration=position.iteration if resume_state else None)
    return Run(
        settings=settings, context=context, run_dir=run_dir, config=config, model=model,
        network=wrap_model(model, context), optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        position=position, recorder=recorder,
        gather=partial(gather_patches, large=config.large_patches) if not _is_dense(config) and config.patches else None,
        segmentation_target=segmentation_target, train_cases=train_cases, val_cases=val_cases,
    )


def _hyperparameters(settings: TrainSettings, config: Any, context: ProcessContext) -> dict[str, Any]:
    return {
        "settings": settings.to_dict(),
        "config": config.to_dict(),
        "world_size": context.world_size,
        "device": str(context.device),
        "torch": torch.__version__,
        "lr_milestones": lr_milestones(settings.epochs),
    }


def _restore(state: dict[str, Any], model: nn.Module, optimizer: Lookahead, scheduler: Any, scaler: Any) -> Position:
    """Load a training checkpoint into freshly built objects; returns the saved position."""
    from oss_net.models import model_from_payload

    training = state["training"]
    model.load_state_dict(model_from_payload(state, "checkpoint", config=model.config).state_dict())
    optimizer.load_state_dict(training["optimizer"])
    ckpt.load_scheduler_state(scheduler, training["scheduler"])
    if training["scaler"]:
        scaler.load_state_dict(training["scaler"])
    ckpt.restore_rng_state(training["rng"])
    saved = training["position"]
    return Position(
        epoch=int(saved["epoch"]), batch=int(saved["batch"]), iteration=int(saved["iteration"]),
        best_metric=float(saved["best_metric"]), history=list(training["history"]),
    )


def _save(run: Run, position: Position) -> None:
    """Checkpoint at `position` (rank 0), then drop old periodic checkpoints."""
    if not run.context.is_main:
        return
    from oss_net.models import checkpoint_payload

    state = {
        **checkpoint_payload(run.model),
        "training": {
            "optimizer": run.optimizer.state_dict(),
            "scheduler": ckpt.scheduler_state(run.scheduler),
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else {},
            "rng": ckpt.capture_rng_state(),
            "position": {"epoch": position.epoch, "batch": position.batch, "iteration": position.iteration,
                         "best_metric": position.best_metric},
            "history": position.history,
            "settings": run.settings.to_dict(),
        },
    }
    ckpt.save_checkpoint(state, ckpt.checkpoint_path(run.run_dir, position.iteration))
    ckpt.prune_checkpoints(run.run_dir, run.settings.keep_last)
    run.recorder.flush(plot=False)


# ---------------------------------------------------------------------------------------------- data


def _discover(settings: TrainSettings, split: str) -> list:
    from oss_net.data import discover

    return discover(settings.dataset, settings.dataset_path, split, seed=settings.seed)


def _training_data(run: Run) -> tuple[Any, ResumableSampler, Callable[[int], DataLoader]]:
    """The training set, its sampler, and a DataLoader factory per epoch (workers seeded per epoch)."""
    from oss_net.data import OSSNetDataset, collate_samples

    settings, context = run.settings, run.context
    dataset = OSSNetDataset(
        run.train_cases, run.config, samples=settings.training_samples, border_balance=settings.border_balance,
        augment=settings.augment, cache_dir=settings.cache_dir, seed=settings.seed,
    )
    sampler = ResumableSampler(len(dataset), settings.batch_size, settings.seed, context.rank, context.world_size)
    if sampler.batches_per_epoch == 0:
        raise TrainingError(
            f"{settings.dataset_path}: {len(dataset)} training cases cannot fill one batch of "
            f"{settings.batch_size} × {context.world_size} process(es); lower --batch_size"
        )

    def loader_for(epoch: int) -> DataLoader:
        # A private generator keeps the loader off the global torch RNG, so a resumed run draws
        # exactly what an uninterrupted one does.
        return DataLoader(
            dataset, batch_size=settings.batch_size, sampler=sampler, num_workers=settings.num_workers,
            collate_fn=collate_samples, pin_memory=context.device.type == "cuda", drop_last=False,
            worker_init_fn=partial(_seed_worker, derive_seed(settings.seed, epoch, context.rank)),
            generator=torch.Generator().manual_seed(derive_seed(settings.seed, epoch)),
        )

    return dataset, sampler, loader_for


def _seed_worker(epoch_seed: int, worker_id: int) -> None:
    """Workers' global RNGs from (seed, epoch, rank, worker); the samples carry their own RNG."""
    worker_seed = derive_seed(epoch_seed, worker_id)
    torch.manual_seed(worker_seed)
    np.random.seed(worker_seed % 2**32)
    random.seed(worker_seed)


def _set_data_epoch(dataset: Any, epoch: int) -> None:
    """Each sample's randomness follows (seed, epoch, index): tell the dataset the epoch."""
    dataset.set_epoch(epoch)


def _validation_dataset(run: Run) -> Any:
    """Fixed validation points: the dataset stays at epoch 0 with its own seed, so every
    validation sees the same points."""
    from oss_net.data import OSSNetDataset

    settings = run.settings
    return OSSNetDataset(
        run.val_cases, run.config, samples=settings.val_samples, border_balance=settings.val_border_balance,
        augment=False, cache_dir=settings.cache_dir, seed=derive_seed(settings.seed, 1),
    )


# ---------------------------------------------------------------------------------------------- loop


def _autocast(settings: TrainSettings, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if settings.amp == "off":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if settings.amp == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


def _step(run: Run, batch: dict, autocast: Callable[[], contextlib.AbstractContextManager]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Forward and loss of one batch (no backward): (total, occupancy BCE, aux BCE or None).

    A U-Net's loss is its dense segmentation loss, returned as both total and "occupancy" loss.
    """
    device = run.context.device
    if _is_dense(run.config):
        return _dense_step(run, batch, autocast)
    volume = batch["volume"].to(device, non_blocking=True)  # [B, C, D, H, W]
    coords = batch["coords"].to(device, non_blocking=True)  # [B, S, 3]
    labels = batch["labels"].to(device, non_blocking=True)  # [B, S, 1]
    patches = run.gather(volume, coords) if run.gather is not None else None  # [B, S, Cp, 7, 7, 7]
    with autocast():
        occupancy, segmentation = run.network(volume, coords, patches)
    target = None
    if segmentation is not None:
        label = batch["label"].to(device, non_blocking=True)  # [B, D, H, W]
        target = run.segmentation_target(label, run.config.encoder_output_shape)  # [B, 1, *out]
    return training_loss(occupancy, labels, segmentation, target, run.settings.segmentation_loss_factor)


def _dense_step(run: Run, batch: dict, autocast: Callable[[], contextlib.AbstractContextManager]) -> tuple[torch.Tensor, torch.Tensor, None]:
    """A U-Net step on the whole volumes; its random slices (2D) follow (seed, iteration), so a resumed run draws the same."""
    from oss_net.models import segmentation_loss

    device = run.context.device
    volume = batch["volume"].to(device, non_blocking=True)  # [B, C, D, H, W]
    label = batch["label"].to(device, non_blocking=True)  # [B, D, H, W]
    generator = torch.Generator().manual_seed(derive_seed(run.settings.seed, run.position.iteration))
    inputs, target = run.model.training_pair(volume, label, generator)  # [B, C, *S], [B, 1, *S]
    with autocast():
        logits = run.network(inputs)  # [B, 1, *S]
    loss = segmentation_loss(logits.float(), target, run.config.dice_weight)
    return loss, loss, None


def _pau_summary(model: nn.Module) -> dict[str, float]:
    """Mean and max |coefficient| over every PAU's numerator and denominator."""
    summary = {}
    for part in ("numerator", "denominator"):
        values = [p.detach().abs().flatten() for name, p in model.named_parameters() if name.endswith(part)]
        if values:
            joined = torch.cat(values)
            summary[f"pau/{part}_mean_abs"] = joined.mean().item()
            summary[f"pau/{part}_max_abs"] = joined.max().item()
    return summary


def _batches(loader: DataLoader, start: int) -> Iterator[tuple[int, dict]]:
    for offset, batch in enumerate(loader):
        yield start + offset, batch


def _optimise(run: Run, batch: dict, autocast: Callable[[], contextlib.AbstractContextManager], epoch: int,
              batch_index: int) -> dict[str, float]:
    """One optimiser step on `batch`; returns the scalars to log. A non-finite loss stops the run
    before anything of this iteration is applied or written."""
    loss, occupancy_loss, auxiliary_loss = _step(run, batch, autocast)
    if not all_ranks_true(bool(torch.isfinite(loss).item()), run.context):
        raise TrainingError(
            f"non-finite loss ({loss.item()}) at iteration {run.position.iteration + 1} (epoch {epoch + 1}, "
            f"batch {batch_index + 1}); cases in the batch: {', '.join(batch['case_id'])}. "
            f"Nothing was written for this iteration; resume from the newest checkpoint in {run.run_dir}"
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    values = {"train/loss": occupancy_loss.item(), "train/loss_total": loss.item(), "train/lr": run.optimizer.param_groups[0]["lr"]}
    if auxiliary_loss is not None:
        values["train/aux_loss"] = auxiliary_loss.item()
    return values


def _train_loop(run: Run) -> None:
    settings, context, position = run.settings, run.context, run.position
    dataset, sampler, loader_for = _training_data(run)
    autocast = _autocast(settings, context.device)
    validation = _Validator(run) if settings.test and context.is_main else None
    stop = position.iteration >= (settings.max_iterations or math.inf)
    while position.epoch < settings.epochs and not stop:
        epoch = position.epoch
        run.network.train()
        sampler.set_epoch(epoch, start_batch=position.batch)
        _set_data_epoch(dataset, epoch)
        progress = tqdm(
            total=sampler.batches_per_epoch, initial=position.batch, desc=f"epoch {epoch + 1}/{settings.epochs}",
            disable=not context.is_main, leave=False, dynamic_ncols=True,
        )
        waited, steps = 0.0, 0
        epoch_started = fetch_started = time.perf_counter()
        for batch_index, batch in _batches(loader_for(epoch), position.batch):
            waited += time.perf_counter() - fetch_started
            values = _optimise(run, batch, autocast, epoch, batch_index)
            position.iteration += 1
            position.batch = batch_index + 1
            steps += 1
            run.recorder.log(position.iteration, epoch, values)
            progress.update(1)
            progress.set_postfix(loss=f"{values['train/loss']:.4f}")
            stop = position.iteration >= (settings.max_iterations or math.inf)
            if stop:
                break
            if position.iteration % settings.checkpoint_every == 0 and position.batch < sampler.batches_per_epoch:
                _save(run, position)
            fetch_started = time.perf_counter()
        progress.close()
        elapsed = time.perf_counter() - epoch_started
        run.recorder.log(position.iteration, epoch, {"time/iterations_per_s": steps / elapsed, "time/data_wait_fraction": waited / elapsed})
        if position.batch < sampler.batches_per_epoch:  # stopped by --max_iterations inside the epoch
            _save(run, position)
            break
        _end_epoch(run, validation)
    if context.is_main:
        from oss_net.models import save_model

        save_model(run.run_dir / FINAL_NAME, run.model)
        summary = {**vars(position), "best_metric": position.best_metric if math.isfinite(position.best_metric) else None}
        atomic_save_json({"position": summary, "run_dir": str(run.run_dir)}, run.run_dir / SUMMARY_NAME)
        run.recorder.flush()
    barrier(context)


def _end_epoch(run: Run, validation: _Validator | None) -> None:
    """Scheduler step, validation when due, the epoch-end checkpoint."""
    settings, position = run.settings, run.position
    epoch = position.epoch
    run.scheduler.step()
    run.recorder.log(position.iteration, epoch, _pau_summary(run.model))
    last = epoch + 1 == settings.epochs
    if validation is not None and ((epoch + 1) % settings.val_every == 0 or last):
        metrics = validation()
        run.recorder.log(position.iteration, epoch, metrics)
        position.history.append({"epoch": epoch + 1, "iteration": position.iteration, **metrics})
        score = metrics["val/dense_dice"] if "val/dense_dice" in metrics else metrics["val/dice"]
        if score > position.best_metric:
            position.best_metric = score
            from oss_net.models import checkpoint_payload

            atomic_save_torch({**checkpoint_payload(run.model), "validation": metrics, "epoch": epoch + 1}, run.run_dir / BEST_NAME)
        tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    barrier(run.context)
    position.epoch += 1
    position.batch = 0
    _save(run, position)
    if validation is not None:
        run.recorder.flush()


class _Validator:
    """Validation on rank 0. Cases are loaded one at a time at every validation (45 full-size
    BraTS volumes would not fit in memory at once); `--cache_dir` makes the reloads cheap."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.dense = _is_dense(run.config)
        self.dataset = None if self.dense else _validation_dataset(run)
        self.autocast = _autocast(run.settings, run.context.device)

    def __call__(self) -> dict[str, float]:
        """Sampled-point metrics for OSS-Net; a U-Net has no decoder to sample, so it gets the dense Dice always."""
        from oss_net.data import load_case

        run = self.run
        metrics: dict[str, float] = {}
        if self.dataset is not None:
            samples = (self.dataset[index] for index in range(len(self.dataset)))
            metrics = sampled_validation(run.model, samples, run.context.device, self.autocast, run.gather)
        if run.settings.dense_validation or self.dense:
            cases = (load_case(files, run.config, cache_dir=run.settings.cache_dir, with_border=False) for files in run.val_cases)
            metrics.update(dense_validation(run.model, cases, run.settings.amp))
        return metrics


def _evaluate_only(run: Run) -> None:
    """--test without --train: validate the given weights once and write metrics.json."""
    if not run.context.is_main:
        return
    metrics = _Validator(run)()
    atomic_save_json(metrics, run.run_dir / "metrics.json")
    tqdm.write(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
