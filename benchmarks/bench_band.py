"""How narrow the refinement's last band is, and whether it still equals a dense decode, on a trained model (issue 28).

    python -m benchmarks.bench_band --checkpoint demo_organs_output/train/best_model.pt --dataset_path demo_organs_output/data
    python -m benchmarks.bench_band --checkpoint demo_regions_output/train/best_model.pt --dataset_path demo_regions_output/data --cases 5

Per case of the checkpoint's dataset (read onto the model grid), the model decodes every voxel ("dense"), then
refines coarse to fine under rule "ours" (`oss_net.inference.lattice`): "standard" and "prior" with the narrow band
(the stride-2 cells whose corners disagree, grown round by round through the 26 neighbours of every decoded point
whose decision differs from theirs), and "standard_wide" with `recheck_boundary` (candidates within two previous
strides: 2.4 to 3.5 times the last stage's points on the demo models). Per method and case:

- `voxels_differing_from_dense`: voxels whose label (the model's decision rule over all its classes) differs;
- `points_per_boundary_voxel`: decoded points over the dense decode's boundary voxels (each class's foreground
  voxels with a background face neighbour, summed over classes; None when the dense decode has no foreground);
- `stride_1_points` against `stride_1_floor`: the last stage's points (None for dense, which has one stage), and the
  fewest points a last stage that checks every voxel next to the surface can decode (`bench_infer.stride_1_floor`,
  per class, united).

The summary per method counts the cases equal to dense and the differing voxels, and compares the narrow band
with the wide one: where they differ the narrow band missed what a wider window finds; elsewhere a difference from
dense lies where the coarse lattices saw nothing (a feature thinner than the first stride, a lone voxel), which no
band finds. benchmarks/results/band_<checkpoint's folder name>.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from benchmarks.bench_infer import boundary_voxels, stride_1_floor
from benchmarks.common import format_table, write_result
from oss_net.data import discover, load_case
from oss_net.inference import PredictOptions, Predictor
from oss_net.labels import scheme_of
from oss_net.models import load_model

METHODS: dict[str, dict[str, Any]] = {
    "dense": {"mode": "standard", "stages": (1,)},
    "standard": {"mode": "standard"},
    "prior": {"mode": "prior"},
    "standard_wide": {"mode": "standard", "recheck_boundary": True},
}
WIDE = "standard_wide"  # the method the narrow band is held against
COLUMNS = ("method", "cases", "cases_equal_to_dense", "voxels_differing_from_dense", "most_differing_in_a_case",
           "voxels_differing_from_wide", "points_per_boundary_voxel", "stride_1_points_per_floor")


def class_masks(model: Any, prediction: Any) -> np.ndarray:
    """bool [K, *S]: the decision of each class or region of `model` for a `Prediction` on the model grid."""
    scheme = scheme_of(model.config)
    outputs = prediction.occupancy.numpy().reshape(scheme.outputs, *prediction.occupancy.shape[-3:])
    return scheme.label_map_masks(scheme.label_map(outputs, prediction.threshold))


def measure_case(model: Any, image: Any, case_id: str) -> list[dict[str, Any]]:
    """One row per method (`METHODS`; prior only with a segmentation head) for one volume `image [C, *S]`."""
    masks, rows = {}, []
    methods = {name: options for name, options in METHODS.items() if name != "prior" or model.config.segmentation_head}
    for name, options in methods.items():
        prediction = Predictor(model, PredictOptions(**options), device="cpu").predict(image)
        masks[name] = class_masks(model, prediction)
        stages = prediction.runs[prediction.mode]["stages"]
        last_stage = stages[-1]["points_evaluated"] if len(stages) > 1 and stages[-1]["stride"] == 1 else None
        rows.append({"method": name, "case": case_id, "points": prediction.points_evaluated, "stride_1_points": last_stage})
    dense = masks["dense"]
    boundary = sum(boundary_voxels(mask) for mask in dense)
    floor = stride_1_floor(dense)
    for row in rows:
        label = masks[row["method"]]
        row.update(boundary_voxels=boundary, stride_1_floor=floor,
                   points_per_boundary_voxel=row["points"] / boundary if boundary else None,  # no surface: no ratio
                   voxels_differing_from_dense=int((label != dense).any(axis=0).sum()),
                   voxels_differing_from_wide=int((label != masks[WIDE]).any(axis=0).sum()))
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method over the cases."""
    means = []
    for method in dict.fromkeys(row["method"] for row in rows):
        group = [row for row in rows if row["method"] == method]
        differing = [row["voxels_differing_from_dense"] for row in group]
        means.append({
            "method": method, "cases": len(group), "cases_equal_to_dense": sum(d == 0 for d in differing),
            "voxels_differing_from_dense": sum(differing), "most_differing_in_a_case": max(differing),
            "voxels_differing_from_wide": sum(row["voxels_differing_from_wide"] for row in group),
            "points_per_boundary_voxel": _mean([row["points_per_boundary_voxel"] for row in group]),
            "stride_1_points_per_floor": _mean([row["stride_1_points"] / row["stride_1_floor"] for row in group
                                                if row["stride_1_points"] is not None and row["stride_1_floor"]]),
        })
    return means


def _mean(values: list[float | None]) -> float | None:
    """The mean of the values that are defined (a case without a surface has no ratio); None when none is."""
    defined = [value for value in values if value is not None]
    return float(np.mean(defined)) if defined else None


def run(checkpoint: str, dataset_path: str, cases: int | None = None) -> dict[str, Any]:
    """Every method on the first `cases` cases (all by default) of the checkpoint's dataset under `dataset_path`."""
    torch.manual_seed(0)
    model = load_model(checkpoint, map_location="cpu")
    found = discover(model.config.dataset, dataset_path, "all")[:cases]
    rows = []
    for files in found:
        case = load_case(files, model.config, with_border=False)
        rows += measure_case(model, case.image, files.case_id)
    result = {"checkpoint": checkpoint, "dataset_path": dataset_path, "label_mode": scheme_of(model.config).mode,
              "volume_shape": list(model.config.volume_shape), "columns": list(COLUMNS), "rows": summary(rows),
              "case_rows": rows}
    print(format_table(result["rows"], COLUMNS))
    write_result(f"band_{Path(checkpoint).resolve().parent.parent.name}", result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--checkpoint", required=True, help="a trained OSS-Net checkpoint (best_model.pt)")
    parser.add_argument("--dataset_path", required=True, help="the dataset folder the checkpoint's dataset layout reads")
    parser.add_argument("--cases", type=int, default=None, help="only the first N cases (default: all)")
    args = parser.parse_args(argv)
    run(args.checkpoint, args.dataset_path, args.cases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
