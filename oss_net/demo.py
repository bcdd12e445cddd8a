"""`make demo`: the whole pipeline on the CPU in a few minutes, with nothing to download.

    python -m oss_net.demo --output_dir demo_output

1. writes a synthetic BraTS 2020 dataset (`oss_net.data.synthetic`) to `<output_dir>/data`;
2. trains the small demo configuration C on the CPU (`oss_net.training`, `--demo` preset) into
   `<output_dir>/train`;
3. runs inference on the validation cases in both modes (standard and prior, compared) into
   `<output_dir>/inference`: masks and probabilities as NIfTI on the input grid, meshes in mm,
   overlays, per-case metrics and `summary.csv` / `summary.json`;
4. prints the Dice per case and where the files are.

`--label_mode regions` (`make demo-regions`) trains the three BraTS regions (whole tumour, tumour
core, enhancing tumour) in one model instead of the whole tumour alone, writes one 0/1/2/4 label map
per case, and adds a table of the Dice per region.

`--organs` (`make demo-organs`) does the same for a FLARE21-style abdominal CT set of four organs
with realistic sizes (`oss_net.data.synthetic_organs`), trained as exclusive classes (the FLARE21
default), predicted in the default mode (`inference/`) and in standard mode (`inference_standard/`),
and prints per organ Dice, HD95 and NSD at 1 mm in both modes, where the two modes disagree, and
FLARE's efficiency table: OSS-Net C against the 3D U-Net baseline (`oss_net.demo_organs`).

Re-running is safe: the dataset and the trained model are reused when their settings are
unchanged (`--retrain` trains again), and the inference folder is rewritten case by case.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from oss_net.cli_errors import add_verbose_flag, run_command
from oss_net.data import discover, load_case
from oss_net.data.synthetic import write_synthetic_dataset
from oss_net.data.synthetic_organs import ORGANS_SHAPE, write_organs_dataset
from oss_net.demo_organs import class_disagreement, efficiency_costs, organs_report
from oss_net.inference import InferenceSettings, run_inference
from oss_net.inference.run_summary import class_report
from oss_net.io import OSSNetError, atomic_save_json
from oss_net.labels import DEFAULT_LABEL_MODE, LABEL_MODES, scheme_of
from oss_net.models import load_model
from oss_net.training import demo_settings, train

STATE_FILE = "demo_state.json"
DEMO_SHAPE = (60, 60, 38)  # a 240×240×155 BraTS volume at 1/4 resolution, padded to the 64×64×40 model grid
MODEL_FILES = ("best_model.pt", "final_model.pt")
CASES = {"brats": 20, "organs": 16}  # synthetic labelled cases; the organs set adds 2 unlabelled ones (ValidationImg)
# The organs demo's training on top of the demo preset for classes (`oss_net.training.settings`): longer, as the
# thin pancreas is learnt last, and validated less often (each validation predicts the 3 validation scans).
ORGANS_TRAINING = {"epochs": 36, "val_every": 6}
# The demos' mesh component filter, in model-grid voxels. Their grids have 4-5 mm voxels, where the default
# (12^3 voxels, the original's for 1 mm BraTS: 1.7 ml) is 110-216 ml and would drop a kidney, the pancreas or
# a small enhancing tumour whole; 27 voxels keeps the filter near its original volume.
DEMO_MIN_COMPONENT_VOXELS = 27


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oss_net.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--output_dir", default="demo_output", help="everything goes here (default: %(default)s)")
    parser.add_argument("--cases", type=int, default=None,
                        help="synthetic labelled cases (default: 20, ~1/8 validation; --organs 16, 1/5 validation)")
    parser.add_argument("--seed", type=int, default=0, help="dataset and training seed (default: %(default)s)")
    parser.add_argument("--config", default="C", help="network configuration (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo preset's)")
    parser.add_argument("--max_iterations", type=int, default=None, help="stop training after this many steps")
    parser.add_argument("--training_samples", type=int, default=None, help="points per volume and step (default: preset)")
    parser.add_argument("--retrain", action="store_true", help="train again even when a matching model exists")
    parser.add_argument("--no_mesh", action="store_true", help="skip the meshes")
    parser.add_argument("--label_mode", choices=LABEL_MODES, default=None,
                        help="binary whole tumour (default, the paper's) or regions WT/TC/ET, exclusive labels 1/2/4; "
                             "--organs: exclusive organs (the default) or binary 'any organ'")
    parser.add_argument("--organs", action="store_true",
                        help="the four-organ FLARE21-style CT demo instead of BraTS (make demo-organs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; an error prints one line (oss_net.cli_errors): status 2 for bad input, 1 for a bug."""
    parser = build_parser()
    add_verbose_flag(parser)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def work() -> None:
        result = run_demo(
            Path(arguments.output_dir), cases=arguments.cases, seed=arguments.seed, config=arguments.config,
            epochs=arguments.epochs, max_iterations=arguments.max_iterations,
            training_samples=arguments.training_samples, retrain=arguments.retrain, mesh=not arguments.no_mesh,
            label_mode=arguments.label_mode, organs=arguments.organs,
        )
        print(report(result))
        if arguments.organs:
            print(organs_report(result))
        elif arguments.label_mode not in (None, DEFAULT_LABEL_MODE):
            print(class_report(result["summary"]))

    return run_command(work, prog=parser.prog, verbose=arguments.verbose)


def run_demo(
    output_dir: Path,
    cases: int | None = None,
    seed: int = 0,
    config: str = "C",
    epochs: int | None = None,
    max_iterations: int | None = None,
    training_samples: int | None = None,
    retrain: bool = False,
    mesh: bool = True,
    shape: Sequence[int] | None = None,
    label_mode: str | None = None,
    organs: bool = False,
) -> dict[str, Any]:
    """Data → training → inference; returns {"summary": rows, "folders": {...}, "seconds": {...}}, and for
    `organs` the standard-mode "summaries" and "disagreement" per organ and the "efficiency" costs too."""
    cases = CASES["organs" if organs else "brats"] if cases is None else cases
    shape = (ORGANS_SHAPE if organs else DEMO_SHAPE) if shape is None else shape
    if cases < 2:
        raise OSSNetError(f"--cases must be at least 2 (one training and one validation case), got {cases}")
    output_dir.mkdir(parents=True, exist_ok=True)
    state_path = output_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    data_dir = output_dir / "data"
    data_key = {"cases": cases, "seed": seed, "shape": list(shape), **({"organs": True} if organs else {})}
    if state.get("data") != data_key or not data_dir.is_dir():
        _write_dataset(data_dir, data_key)
        state = {"data": data_key}
        atomic_save_json(state, state_path)
    seconds["data"] = time.perf_counter() - start

    start = time.perf_counter()
    train_dir = output_dir / "train"
    overrides = {"network_config": config, "seed": seed, **(ORGANS_TRAINING if organs else {})}
    if label_mode is not None:  # else the dataset's: binary for BraTS, exclusive organs for the FLARE layout
        overrides["label_mode"] = label_mode
    overrides.update({k: v for k, v in (("epochs", epochs), ("max_iterations", max_iterations),
                                        ("training_samples", training_samples)) if v is not None})
    settings = demo_settings(str(data_dir), str(train_dir), **overrides)
    model_path = _train_unless_current(settings, train_dir, state, state_path, retrain)
    seconds["training"] = time.perf_counter() - start

    start = time.perf_counter()
    inference_dir = output_dir / "inference"
    run_inference(InferenceSettings(
        load_model=str(model_path), dataset_path=str(data_dir), output_dir=str(inference_dir), split="val",
        mode="auto" if organs else "both", save_probabilities=True, no_mesh=not mesh, cpu=True,
        min_component_voxels=DEMO_MIN_COMPONENT_VOXELS,
    ))
    seconds["inference"] = time.perf_counter() - start
    result = {
        "summary": json.loads((inference_dir / "summary.json").read_text()),
        "folders": {"data": data_dir, "train": train_dir, "model": model_path, "inference": inference_dir},
        "seconds": seconds,
    }
    if organs:
        result.update(organs_standard_and_costs(result, output_dir, config, mesh))
    return result


def organs_standard_and_costs(result: dict[str, Any], output_dir: Path, config: str, mesh: bool) -> dict[str, Any]:
    """The organs demo's second inference run (standard mode, `inference_standard/`), the two modes'
    disagreement per organ, and the efficiency costs on the first validation case."""
    folders, seconds = result["folders"], result["seconds"]
    start = time.perf_counter()
    standard_dir = output_dir / "inference_standard"
    run_inference(InferenceSettings(
        load_model=str(folders["model"]), dataset_path=str(folders["data"]), output_dir=str(standard_dir),
        split="val", mode="standard", no_mesh=not mesh, overlay=False, cpu=True,
        min_component_voxels=DEMO_MIN_COMPONENT_VOXELS,
    ))
    seconds["standard inference"] = time.perf_counter() - start
    start = time.perf_counter()
    model = load_model(folders["model"], map_location="cpu")
    standard = json.loads((standard_dir / "summary.json").read_text())
    case_ids = [row["case"] for row in standard if "mode" in row]
    disagreement = class_disagreement(scheme_of(model.config), folders["inference"], standard_dir, case_ids)
    first = next(files for files in discover("flare", folders["data"], "val") if files.case_id == case_ids[0])
    costs = efficiency_costs(f"OSS-Net {config} (demo)", model, load_case(first, model.config, with_border=False).image)
    seconds["efficiency"] = time.perf_counter() - start
    folders["standard"] = standard_dir
    default = f"default ({result['summary'][0].get('mode', '?')})"
    return {"summaries": {default: result["summary"], "standard": standard}, "disagreement": disagreement,
            "efficiency": costs}


def _train_unless_current(settings: Any, train_dir: Path, state: dict[str, Any], state_path: Path, retrain: bool) -> Path:
    """The trained model file; trains (into a clean `train_dir`) when asked, or when none matches `settings`."""
    model_path = _trained_model(train_dir)
    if not retrain and state.get("train") == settings.to_dict() and model_path is not None:
        return model_path
    if train_dir.exists():
        shutil.rmtree(train_dir)  # a clean run folder: no checkpoint of an older run is mistaken for this one
    train(settings)
    model_path = _trained_model(train_dir)
    if model_path is None:
        raise OSSNetError(f"{train_dir}: training finished without writing {' or '.join(MODEL_FILES)}")
    state["train"] = settings.to_dict()
    atomic_save_json(state, state_path)
    return model_path


def _write_dataset(data_dir: Path, key: dict[str, Any]) -> None:
    if data_dir.exists():
        shutil.rmtree(data_dir)
    if key.get("organs"):
        write_organs_dataset(data_dir, cases=key["cases"], shape=tuple(key["shape"]), seed=key["seed"])
    else:
        write_synthetic_dataset("brats", data_dir, cases=key["cases"], shape=tuple(key["shape"]), seed=key["seed"])


def _trained_model(train_dir: Path) -> Path | None:
    """The best validated model of the run, else its final one, else None."""
    for name in MODEL_FILES:
        if (train_dir / name).is_file():
            return train_dir / name
    return None


def report(result: dict[str, Any]) -> str:
    """The printed summary: Dice per validation case, the mean, runtimes and where the files are."""
    rows = [r for r in result["summary"] if r["case"] != "mean"]
    mean = next((r for r in result["summary"] if r["case"] == "mean"), {})
    folders, seconds = result["folders"], result["seconds"]
    classes = next((row["classes"] for row in rows if row.get("label_mode", "binary") != "binary"), None)
    scored = f"mean over {classes.replace(',', ', ')}" if classes else "whole tumour"  # several regions, or binary
    lines = ["", f"OSS-Net demo: validation cases ({scored}, input grid)",
             f"{'case':<24} {'dice':>7} {'iou':>7} {'hd95 mm':>8} {'points':>8} {'disagree':>8}"]
    for row in rows:
        disagreement = "-" if row.get("disagreement") is None else row["disagreement"]  # mode "both" only
        lines.append(f"{row['case']:<24} {_number(row.get('dice')):>7} {_number(row.get('iou')):>7} "
                     f"{_number(row.get('hd95_mm')):>8} {row.get('points_evaluated', ''):>8} {disagreement:>8}")
    lines.append(f"{'mean':<24} {_number(mean.get('dice')):>7} {_number(mean.get('iou')):>7} {_number(mean.get('hd95_mm')):>8}")
    lines.append("")
    lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    lines.append(f"dataset:   {folders['data']}")
    lines.append(f"model:     {folders['model']}")
    lines.append(f"results:   {folders['inference']}  (per case: *_mask.nii.gz, *_probability.nii.gz, meshes, overlay, metrics.json)")
    lines.append(f"summary:   {folders['inference'] / 'summary.csv'}")
    return "\n".join(lines)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
