"""Inference: a refinement lattice and its one loop, a Predictor, one case writer, and the two commands' runs.

    from oss_net.inference import Predictor, PredictOptions, OccupancyLattice, refine_lattice
    from oss_net.inference import run_inference, InferenceSettings   # oss-net-infer: case folders, metrics, summary
    from oss_net.inference import Segmenter                          # the Python API: load once, segment images
    from oss_net.inference import predict_files                      # oss-net-predict: scans in, flat label maps out

Modules, in the order a case passes through them: `options` (every option, checked where it enters),
`discovery` (which cases), `predictor` (+ `lattice`: encode, fold, refine), `writers` (`CaseWriter`:
every file of a case on its grid, and its record), `outputs` (case folders published atomically),
`runner` (`run_inference`: the loop over cases), `run_summary` (summary.json / .csv), `files`
(inputs given as files → cases), `segmenter` (`Segmenter`, the one pipeline of the API and both commands;
`predict_files`), `cli` (`oss-net-infer`).
"""
from .cli import build_parser, main
from .lattice import OccupancyLattice, RefineStats, refine_lattice, seed_from_segmentation
from .options import InferenceError, InferenceSettings, PredictOptions, WriteOptions
from .predictor import DensePredictor, Prediction, Predictor, make_predictor
from .run_summary import write_summary
from .runner import run_inference
from .segmenter import Segmentation, Segmenter, predict_files
from .writers import CaseWriter

__all__ = [
    "CaseWriter",
    "DensePredictor",
    "InferenceError",
    "InferenceSettings",
    "OccupancyLattice",
    "PredictOptions",
    "Prediction",
    "Predictor",
    "RefineStats",
    "Segmentation",
    "Segmenter",
    "WriteOptions",
    "build_parser",
    "main",
    "make_predictor",
    "predict_files",
    "refine_lattice",
    "run_inference",
    "seed_from_segmentation",
    "write_summary",
]
