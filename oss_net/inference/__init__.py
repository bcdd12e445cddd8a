"""Inference: a refinement lattice and its one loop, a Predictor, and per-case files with metrics.

    from oss_net.inference import Predictor, OccupancyLattice, refine_lattice, run_inference, InferenceSettings
    from oss_net.inference import predict_files   # oss-net-predict: scans in, flat label maps out
"""
from .cli import build_parser, main
from .files import predict_files
from .predictor import DensePredictor, InferenceError, Prediction, Predictor, make_predictor
from .refine import OccupancyLattice, RefineStats, refine_lattice, seed_from_segmentation
from .runner import InferenceSettings, run_inference, write_summary

__all__ = [
    "DensePredictor",
    "InferenceError",
    "InferenceSettings",
    "OccupancyLattice",
    "Prediction",
    "Predictor",
    "RefineStats",
    "build_parser",
    "main",
    "make_predictor",
    "predict_files",
    "refine_lattice",
    "run_inference",
    "seed_from_segmentation",
    "write_summary",
]
