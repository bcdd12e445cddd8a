"""`run_inference(settings)`: checkpoint + cases → per-case files and a summary table.

Every check that can fail on user input (checkpoint, configuration, output folder, and the headers of
every case file: dimensions, shapes, affines, channel count) runs before the first file is written,
and every bad case is listed at once, so a bad call leaves nothing behind. With `skip_bad_cases`
those cases are skipped instead, each with its reason in the summary, as are case folders that
discovery rejects (a missing modality, say) where the split allows it. The voxel values (NaN/Inf,
label values) are checked as each case is read: a case failing there is left out and the others
still run (then the run fails, or with `skip_bad_cases` records it as skipped).

The settings (`options.InferenceSettings`) split into the predictor's and the writer's options, the
cases come from `discovery`, then the output folder is locked for the run (see
`outputs.output_folder_lock`) and the cases are processed one by one under a progress bar: load and
predict (`segmenter.Segmenter`, the pipeline oss-net-predict and the Python API share), write every file
(`writers.CaseWriter`), publish the complete folder with its manifest (`outputs`). `summary.csv` / `summary.json` are rewritten from the finished cases at the end
(`run_summary`), whose table `summary_table` prints.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from oss_net.data import CaseFiles, DatasetError, canonical_dataset
from oss_net.geometry import preferred_affine
from oss_net.io import (
    OUTPUT_MANIFEST, atomic_save_json, check_output_folder, outputs_lock, prepare_output_folder, record_outputs,
    remove_stale_temporaries,
)
from oss_net.models import ConfigError, canonical_network_name, load_model

from . import outputs
from .discovery import BadCase, find_cases, input_folders, reasons, screen_cases
from .options import InferenceError, InferenceSettings, settings_hash
from .predictor import select_device
from .run_summary import SUMMARY_FILES, write_summary
from .segmenter import Segmenter
from .sharding import Part, rank_device
from .writers import CaseWriter, with_data_files

logger = logging.getLogger(__name__)

SETTINGS_FILE = "inference_settings.json"


def load_checked_model(settings: InferenceSettings, device: torch.device) -> torch.nn.Module:
    """The checkpoint's model; `network_config` / `dataset`, when given, must match what it holds."""
    model = load_model(settings.load_model, map_location=device)
    config = model.config
    try:
        expected_name = canonical_network_name(settings.network_config) if settings.network_config else config.name
        expected_dataset = canonical_dataset(settings.dataset) if settings.dataset else config.dataset
    except (ConfigError, DatasetError) as error:
        raise InferenceError(str(error)) from None
    if (expected_name, expected_dataset) != (config.name, config.dataset):
        raise InferenceError(
            f"{settings.load_model}: checkpoint holds configuration {config.name!r} ({config.dataset}), "
            f"but --network_config {settings.network_config!r} --dataset {settings.dataset or config.dataset!r} "
            f"asks for {expected_name!r} ({expected_dataset}); omit them to use the checkpoint's"
        )
    return model


def run_inference(settings: InferenceSettings) -> Path:
    """Predict every case, write its files and the summary; returns the output folder. Every input file's affine is
    the one `settings.prefer` chooses (`oss_net.geometry.preferred_affine`)."""
    with preferred_affine(settings.prefer):
        return run_cases_of(settings)


def run_cases_of(settings: InferenceSettings) -> Path:
    """`run_inference` within the affine preference."""
    rank = rank_device(settings.cpu)  # a torchrun rank: its node's GPU
    device = torch.device(rank) if rank is not None else select_device(settings.cpu, settings.cuda_devices)
    segmenter = Segmenter(load_checked_model(settings, device), device=device, **asdict(settings.predict_options()))
    predictor = segmenter.predictor
    writer = CaseWriter(predictor, settings.write_options())
    config = predictor.config
    part = Part(settings.num_parts, settings.part_id)
    found, rejected = find_cases(settings, config.dataset)
    every_case, skipped = screen_cases(found, config)
    cases, skipped = part.take(every_case), part.take(rejected + skipped)
    if skipped and not settings.skip_bad_cases:
        raise InferenceError(f"{settings.dataset_path}: {len(skipped)} bad case(s), nothing written "
                             f"(fix them, or pass --skip_bad_cases to skip them): {reasons(skipped)}")
    if settings.cache_dir is not None:  # written while cases are read: a bad cache folder fails before any write
        check_output_folder(settings.cache_dir, "cache folder")
    output_dir = Path(settings.output_dir)
    names = [SETTINGS_FILE, *SUMMARY_FILES, *(files.case_id for files in cases)]
    names += [name for files in cases for name in with_data_files(
        outputs.flat_mask_path(output_dir, files.case_id, writer.suffix(files)).name, writer.suffix(files))
              ] if settings.flat else []
    with outputs_lock(output_dir):  # the other parts' outputs are recorded under it
        outputs.claim_output_folder(output_dir, input_folders(settings, config.dataset, found), names,
                                    settings.overwrite, legacy=(SETTINGS_FILE, *SUMMARY_FILES))
    prepare_output_folder(output_dir)
    fingerprint = settings_hash(settings, predictor.model)
    with outputs.output_folder_lock(output_dir, settings.wait, part.label if part.sharded else None) as run_id:
        remove_leftovers(output_dir, part, [files.case_id for files in cases], names)
        run_record = {**settings.to_dict(), "resolved_mode": predictor.mode, "resolved_refinement": predictor.refinement,
                      "resolved_chunk_size": predictor.chunk_size,
                      "device": str(device), "run_id": run_id, "settings_hash": fingerprint, "config": config.to_dict()}
        records, failed = run_cases(cases, segmenter, writer, settings, output_dir, run_record)
        bad = skipped + failed
        if len(failed) < len(cases):  # a run none of whose cases could be read writes nothing
            with outputs_lock(output_dir):  # every part's finished cases, whichever part finishes last
                write_summary(output_dir, [c.case_id for c in every_case if c.case_id not in {b.case_id for b in failed}],
                              bad)
    for case in bad if settings.skip_bad_cases else ():
        logger.warning("%s: skipped: %s", case.case_id, case.reason)
    if records and not any(record.get("foreground_voxels", 1) for record in records):
        logger.warning("the model predicted no foreground in any of the %d case(s): check the checkpoint (--load_model) "
                       "and --threshold", len(records))
    if failed and not settings.skip_bad_cases:
        raise InferenceError(f"{settings.dataset_path}: {len(failed)} case(s) could not be read and were not written "
                             f"(the other cases are done; fix them and rerun with --continue, or pass --skip_bad_cases): "
                             f"{reasons(failed)}")
    return output_dir


def run_cases(cases: list[CaseFiles], segmenter: Segmenter, writer: CaseWriter,
              settings: InferenceSettings, output_dir: Path, run_record: dict[str, Any]
              ) -> tuple[list[dict[str, Any]], list[BadCase]]:
    """Process (or with --continue keep) each case; returns this run's records and the cases that could not be read.

    `run_record` (the settings, run id and settings hash) is saved as inference_settings.json before the
    first case is written or kept, so a run whose every case fails leaves the output folder as it was.
    """
    run = (run_record["run_id"], run_record["settings_hash"])
    settings_file = output_dir / SETTINGS_FILE
    records, failed = [], []
    progress = tqdm(cases, desc="inference", unit="case", disable=None)
    for index, files in enumerate(progress, start=1):
        progress.set_postfix_str(files.case_id)
        reason = outputs.unfinished_reason(output_dir, files.case_id, run[1]) if settings.resume else "not --continue"
        if reason is None:
            logger.info("[%d/%d] %s: finished before, skipped (--continue)", index, len(cases), files.case_id)
            if not settings_file.exists():
                save_run_record(run_record, output_dir)
        else:
            if settings.resume and outputs.case_folder(output_dir, files.case_id).exists():
                logger.info("[%d/%d] %s: redone (%s)", index, len(cases), files.case_id, reason)
            try:
                case = segmenter.load(files, settings.cache_dir)
            except DatasetError as error:
                failed.append(BadCase(files.case_id, str(error)))
                logger.error("[%d/%d] %s: not processed: %s", index, len(cases), files.case_id, error)
                continue
            if not records:
                save_run_record(run_record, output_dir)
            outliers = segmenter.input_warnings(files.case_id, case)
            record = process_case(files, case, segmenter, writer, output_dir, run, outliers)
            records.append(record)
            scores = f"dice {record['dice']:.4f}" if "dice" in record else "no label, no metrics"
            logger.info("[%d/%d] %s: %s, %s mode, %.2f s, %d points evaluated", index, len(cases), files.case_id,
                        scores, record["mode"], record["seconds"], record["points_evaluated"])
        if settings.flat:
            outputs.write_flat_mask(output_dir, files.case_id, writer.suffix(files))
    return records, failed


def remove_leftovers(output_dir: Path, part: Part, case_ids: Sequence[str], names: Sequence[str]) -> None:
    """What dead runs left in the output folder: all of it for a whole run; a sharded run's part removes only the
    staging folders of its cases `case_ids` and, under the folder's `outputs_lock`, the temporaries of `names` (its cases'
    and the shared files', which every part writes under that lock)."""
    if not part.sharded:
        outputs.remove_leftovers(output_dir)
        return
    with outputs_lock(output_dir):
        removed = outputs.remove_leftovers(output_dir, case_ids)
        removed += remove_stale_temporaries(output_dir, [*names, OUTPUT_MANIFEST])
    if removed:
        logger.info("%s: removed %d leftover(s) of earlier runs of %s", output_dir, len(removed), part.describe())


def save_run_record(run_record: dict[str, Any], output_dir: Path) -> None:
    """inference_settings.json, recorded as written by this package (`oss_net.io.record_outputs`); the last part of
    a sharded run to start writes it."""
    with outputs_lock(output_dir):
        atomic_save_json(run_record, output_dir / SETTINGS_FILE)
        record_outputs(output_dir, [SETTINGS_FILE])


def process_case(files: CaseFiles, case: Any, segmenter: Segmenter, writer: CaseWriter,
                 output_dir: Path, run: tuple[str, str], outliers: Sequence[str] = ()) -> dict[str, Any]:
    """Predict and write one loaded case; its folder appears only once every file and its manifest are written.
    `outliers`: how the case is far from the training data, kept in its record as "input_warnings"."""
    steps = tqdm(total=2, desc=files.case_id, unit="step", leave=False, disable=None)
    steps.set_postfix_str("predicting")
    prediction = segmenter.predict(case)
    steps.update()
    steps.set_postfix_str("writing")
    staging = outputs.staging_folder(output_dir, files.case_id, run[0])
    try:
        record = writer.write(staging, files, case, prediction)
        if outliers:
            record["input_warnings"] = "; ".join(outliers)
        outputs.save_metrics(record, staging)
        outputs.write_manifest(staging, *run)
        outputs.publish(staging, output_dir, files.case_id)
    except BaseException:
        outputs.discard(staging)
        raise
    finally:
        steps.close()
    return record
