"""benchmarks.paper: the paper's Table 2 as benchmark columns, and a clear error for a row it does not have."""
from __future__ import annotations

import pytest

from benchmarks.paper import FIG6_SECONDS, TABLE2_DATASETS, TABLE2_GIB, TABLE2_MODELS, table2_gib


def test_table2_has_every_model_on_both_datasets():
    assert set(TABLE2_GIB) == {(model, dataset) for model in TABLE2_MODELS for dataset in TABLE2_DATASETS}


def test_table2_row_as_columns_with_the_unit_in_the_names():
    assert table2_gib("C", "brats") == {"paper_train_GiB": 2.59, "paper_infer_2^14_GiB": 0.39, "paper_infer_2^17_GiB": 2.73}
    # The paper's headline: the 3D U-Net trains in 14.41 / 2.59 = 5.6x the memory of C.
    assert TABLE2_GIB[("unet3d", "brats")][0] / TABLE2_GIB[("C", "brats")][0] == pytest.approx(5.56, abs=0.01)


def test_unknown_row_names_the_model_and_dataset():
    with pytest.raises(KeyError, match="no row for model 'full' on dataset 'brats'"):
        table2_gib("full", "brats")


def test_prior_refinement_is_about_twice_as_fast_at_every_chunk_size():
    assert all(1.8 <= standard / prior <= 2.2 for standard, prior in FIG6_SECONDS.values())
