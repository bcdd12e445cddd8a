"""An input far from the training data is named (issue 24): a CT model on an MRI, a 0.1×0.1×12 mm scan against a
model trained at 5 mm, MRI values that look like Hounsfield units; a case like the training data is not."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from oss_net.data.grid import GridMeta, closest_canonical
from oss_net.data.outliers import input_outliers, intensity_ranges
from oss_net.datasets import ChannelIntensity, Fingerprint


def _meta(spacing) -> GridMeta:
    affine = np.diag([*spacing, 1.0])
    return GridMeta.for_resampling(affine, None, (8, 8, 8), (8, 8, 8), orientation=closest_canonical(affine))


CT_MODEL = SimpleNamespace(dataset="nnunet", in_channels=1, fingerprint=Fingerprint(
    ("CT",), ("CT",), (5.0, 5.0, 5.0), (64, 64, 64), (ChannelIntensity(-20.0, 200.0, 90.0, 40.0),), (0, 1), 10))
LITS_MODEL = SimpleNamespace(dataset="lits", in_channels=1, fingerprint=None)
BRATS_MODEL = SimpleNamespace(dataset="brats", in_channels=4, fingerprint=None)


@pytest.mark.parametrize("config, ranges, spacing, expected", [
    (CT_MODEL, [(-1000.0, 900.0)], (5.0, 5.0, 5.0), []),
    (CT_MODEL, [(-1000.0, 900.0)], (0.1, 0.1, 12.0), ["spacing 0.1×0.1×12 mm is far from the training spacing 5×5×5 mm"]),
    (CT_MODEL, [(0.0, 700.0)], (5.0, 5.0, 5.0), ["channel CT (CT): no voxel darker than 0 (CT air is −1000 HU)"]),
    (CT_MODEL, [(-1000.0, -300.0)], (5.0, 5.0, 5.0), ["channel CT (CT): intensities -1000 to -300 lie outside"]),
    (LITS_MODEL, [(0.0, 1200.0)], (0.9, 0.9, 6.0), ["channel CT (CT): no voxel darker than 0"]),  # an MRI FLAIR
    (BRATS_MODEL, [(0.0, 900.0)] * 4, (1.0, 1.0, 1.0), []),
    (BRATS_MODEL, [(-1024.0, 900.0)] + [(0.0, 900.0)] * 3, (1.0, 1.0, 1.0),
     ["channel flair (MRI): intensities down to -1024 look like CT Hounsfield units"]),
    (BRATS_MODEL, [(0.0, 900.0)] * 4, (0.5, 0.5, 5.0), []),  # a BraTS checkpoint stores no training spacing
])
def test_input_outliers(config, ranges, spacing, expected):
    found = input_outliers(ranges, _meta(spacing), config)
    assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found)), found


def test_intensity_ranges_are_robust_percentiles_of_a_subsample():
    volume = np.zeros((40, 40, 40), np.float32)
    volume[0, 0, 0] = 1e6  # one hot voxel does not move the 99.5th percentile
    volume[::2, ::2, 20:] = 100.0
    ((low, high),) = intensity_ranges([volume])
    assert (low, high) == (0.0, 100.0)
