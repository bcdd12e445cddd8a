"""Paper mode (`--paper`, compat "paper"): each switch turns exactly its own behaviour, ours stays the default."""
from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from oss_net.compat import (
    COMPAT_MODES, CompatError, apply_compat, behaviour, best_score, check_compat, per_rank_batch, replicas_per_process,
    validation_batch,
)
from oss_net.data import DatasetError, GridMeta, compute_border, discover, gather_patches, load_case, sample_coordinates
from oss_net.data.augment import ORIGINAL_FLIP_PROBABILITIES, augment, augment_original, augment_with, native_box
from oss_net.data.cases import cache_key, preprocessing_rules, zscore
from oss_net.data.grid import nearest_indices
from oss_net.data.splits import listed_split, original_split, original_split_file
from oss_net.models import (
    ConfigError, OSSNetConfig, build_model, count_parameters, demo_config, get_config, get_unet_config,
)
from oss_net.training import train
from oss_net.training.cli import build_parser, settings_from_args
from oss_net.training import loop
from oss_net.training.distributed import ProcessContext, VirtualReplicas, bare_model, wrap_model
from oss_net.training.resume import find_checkpoint, load_checkpoint, training_state
from oss_net.training.settings import SettingsError, TrainSettings, check_resume_compatible, resolve_settings
from oss_net.training.validation import batch_means, sampled_validation

SWITCHES = ("raw_coordinates", "include_last_index", "large_patch_pooling", "best_metrics", "augmentation", "global_batch",
            "refinement", "seed_align_corners", "lattice_last_index", "optimizer", "replica_batch_norm", "validation",
            "label_resampling", "zscore")
CPU = torch.device("cpu")


def tiny(dataset_path, tmp_path, **overrides) -> TrainSettings:
    """A few-second training run on the synthetic BraTS set (3 training cases, 1 validation case)."""
    return resolve_settings({"train": True, "demo": True, "cpu": True, "uniform_sampling": True, "batch_size": 1,
                             "training_samples": 64, "val_samples": 128, "dense_validation": False,
                             "dataset_path": str(dataset_path), "output_dir": str(tmp_path / "run"), **overrides})


# ------------------------------------------------------------------------------------------- the flags


def test_every_switch_differs_between_the_modes_and_ours_is_the_default():
    ours, paper = behaviour("ours"), behaviour("paper")
    assert COMPAT_MODES == ("ours", "paper")
    assert {f.name for f in dataclasses.fields(ours)} == {"compat", *SWITCHES}
    assert all(getattr(ours, name) != getattr(paper, name) for name in SWITCHES)
    assert (paper.raw_coordinates, paper.include_last_index, paper.large_patch_pooling) == (True, False, "max")
    assert (paper.augmentation, paper.global_batch, paper.best_metrics[0]) == ("original", True, "val/sampled_iou")
    assert (paper.refinement, ours.refinement) == ("original", "ours")
    assert (paper.seed_align_corners, ours.seed_align_corners) == (True, False)
    assert (paper.lattice_last_index, paper.optimizer, paper.replica_batch_norm, paper.validation) == (
        False, "original", True, "original")
    assert (paper.label_resampling, paper.zscore, ours.label_resampling, ours.zscore) == (
        "nearest", "original", "nearest-exact", "ours")
    assert (ours.raw_coordinates, ours.include_last_index, ours.large_patch_pooling) == (False, True, "avg")
    assert build_parser().parse_args([]).compat is None and build_parser().parse_args(["--paper"]).compat == "paper"
    assert settings_from_args(build_parser().parse_args(["--demo"])).compat == "ours"
    with pytest.raises(CompatError, match="unknown compat mode 'papr'; valid modes: ours, paper"):
        check_compat("papr")


def test_paper_config_sets_only_its_fields_and_keeps_parameters_and_old_checkpoints():
    ours, paper = demo_config("B"), demo_config("B", compat="paper")
    changed = {f.name for f in dataclasses.fields(OSSNetConfig) if getattr(ours, f.name) != getattr(paper, f.name)}
    assert changed == {"compat", "raw_coordinates", "large_patch_pooling"}
    assert (paper.compat, paper.raw_coordinates, paper.large_patch_pooling) == ("paper", True, "max")
    assert count_parameters(build_model(paper)) == count_parameters(build_model(ours))
    assert apply_compat(ours, "paper") == paper and apply_compat(paper, "ours") == ours
    # an override after the mode wins; a checkpoint written before the field existed loads as "ours"
    assert get_config("C", "brats", compat="paper", large_patch_pooling="avg").large_patch_pooling == "avg"
    old = {key: value for key, value in ours.to_dict().items() if key != "compat"}
    assert OSSNetConfig.from_dict(old) == ours
    with pytest.raises(ConfigError, match="compat must be one of"):
        dataclasses.replace(ours, compat="original")
    unet = get_unet_config("unet3d", "brats")
    assert apply_compat(unet, "paper") is unet  # a U-Net has neither coordinates nor patches


def test_paper_sampling_never_draws_the_last_index():
    generator = torch.Generator().manual_seed(0)
    shape = (3, 4, 2)
    flags = {mode: behaviour(mode).include_last_index for mode in COMPAT_MODES}
    paper = sample_coordinates(shape, None, 4096, 0.0, generator, include_last_index=flags["paper"])
    ours = sample_coordinates(shape, None, 4096, 0.0, generator, include_last_index=flags["ours"])
    last = torch.tensor(shape, dtype=torch.float32) - 1
    assert torch.equal(paper.amax(dim=0), last - 1)  # floor(U·(dim−1)): up to dim−2, never dim−1
    assert torch.equal(ours.amax(dim=0), last)  # every axis reaches its last index in our mode
    assert torch.equal(paper.amin(dim=0), torch.zeros(3)) and torch.equal(ours.amin(dim=0), torch.zeros(3))


# ------------------------------------------------------------------------------------------ the split


def test_original_brats_split_is_used_exactly_when_all_its_cases_are_present():
    listed = listed_split("brats")
    assert Counter(listed.values()) == Counter({"train": 324, "val": 45})
    assert original_split_file("brats").name == "brats2020_original.txt" and original_split_file("lits") is None
    ids = sorted(listed)
    assert original_split("brats", ids) == listed
    assert original_split("brats", ids[1:]) is None  # one case missing: the seeded split stays
    assert original_split("brats", ["BraTS20_Training_001", "BraTS20_Training_002"]) is None
    larger = original_split("brats", [*ids, "BraTS20_Training_900"])
    assert larger["BraTS20_Training_900"] == "train" and Counter(larger.values())["val"] == 45
    assert original_split("lits", ids) is None


def test_split_selection_in_discover_uses_the_original_list(monkeypatch, synthetic_brats_root):
    """Pretend the shipped list names the four synthetic cases: discover then follows it instead of the seed."""
    from oss_net.data import discover, splits

    ids = [case.case_id for case in discover("brats", synthetic_brats_root, "all")]
    fake = {case_id: "val" if case_id in ids[:2] else "train" for case_id in ids}
    monkeypatch.setattr(splits, "listed_split", lambda dataset: fake if dataset == "brats" else {})
    for seed in (0, 1):
        assert [c.case_id for c in discover("brats", synthetic_brats_root, "val", seed=seed)] == ids[:2]
        assert [c.case_id for c in discover("brats", synthetic_brats_root, "train", seed=seed)] == ids[2:]


# ----------------------------------------------------------------------------------- the augmentation


def _padded_meta(input_shape=(4, 3, 2), volume_shape=(6, 6, 3)) -> GridMeta:
    return GridMeta.for_padding(np.eye(4), None, input_shape, volume_shape)


def test_original_flip_subsets_have_probabilities_quarter_quarter_half():
    """2000 draws with a fixed seed: no flip ½; axis 0, axis 1 and both ¼ · (¼, ¼, ½) (5 standard errors)."""
    meta = _padded_meta((4, 4, 2), (4, 4, 2))
    volume = torch.arange(32, dtype=torch.float32).reshape(1, 4, 4, 2)
    label = torch.arange(32).reshape(4, 4, 2)
    generator = torch.Generator().manual_seed(0)
    seen = Counter()
    draws = 2000
    for _ in range(draws):
        _, (flipped,) = augment_original(volume, [label], generator, meta)
        kind = [name for name, axes in (("none", []), ("0", [0]), ("1", [1]), ("both", [0, 1]))
                if torch.equal(flipped, label.flip(axes) if axes else label)]
        seen[kind[0]] += 1
    expected = {"none": 0.5, **{k: 0.5 * p for k, p in zip(("0", "1", "both"), ORIGINAL_FLIP_PROBABILITIES)}}
    for kind, probability in expected.items():
        error = 5 * (probability * (1 - probability) / draws) ** 0.5
        assert abs(seen[kind] / draws - probability) < error, (kind, seen)
    ours = Counter()
    for _ in range(draws):  # ours: the three subsets equally likely
        _, (flipped,) = augment(volume, [label], generator)
        ours["both"] += torch.equal(flipped, label.flip([0, 1]))
    assert abs(ours["both"] / draws - 0.5 / 3) < 5 * ((1 / 6) * (5 / 6) / draws) ** 0.5


def test_original_augmentation_leaves_the_padding_alone_and_flips_the_native_box():
    meta = _padded_meta()  # (4, 3, 2) padded to (6, 6, 3): before (1, 2, 1), after (1, 1, 0)
    box = native_box(meta)
    assert box == (slice(1, 5), slice(2, 5), slice(1, 3))
    native = torch.randn(2, 4, 3, 2)
    native_label = torch.arange(24).reshape(4, 3, 2) + 1
    volume = meta.to_model_grid(native, order=1)
    label = meta.to_model_grid(native_label, order=0)
    generator = torch.Generator().manual_seed(3)
    outside = torch.ones(6, 6, 3, dtype=torch.bool)
    outside[box] = False
    changed_inside = 0
    for _ in range(40):
        augmented, (flipped,) = augment_original(volume, [label], generator, meta)
        assert bool((augmented[:, outside] == 0).all()) and bool((flipped[outside] == 0).all())
        assert any(torch.equal(flipped[box], native_label.flip(axes)) for axes in ([], [0], [1], [0, 1]))
        changed_inside += not torch.equal(augmented[(slice(None), *box)], volume[(slice(None), *box)])
    assert changed_inside > 20  # 7 in 8 draws change something


def test_original_noise_on_a_resampled_grid_is_the_input_grids_noise_resampled():
    """LiTS-like: input 4×4×4 resampled to 8×8×8. Noise drawn on the input grid and trilinearly upsampled
    has a per-voxel std of about 0.15 · 0.49 (weights ¾, ¼ per axis), ours the full 0.15."""
    meta = GridMeta.for_resampling(np.eye(4), None, (4, 4, 4), (8, 8, 8))
    volume = torch.zeros(1, 8, 8, 8)
    generator = torch.Generator().manual_seed(0)
    spreads = {"original": [], "ours": []}
    for _ in range(200):
        for rule in spreads:
            augmented, _ = augment_with(rule, volume, [], generator, meta)
            centred = augmented - augmented.mean()  # removes the brightness shift (0 here: the peak is 0)
            if float(centred.abs().max()) > 0:
                spreads[rule].append(float(centred.std()))
    assert 0.05 < float(np.mean(spreads["original"])) < 0.1
    assert float(np.mean(spreads["ours"])) == pytest.approx(0.15, rel=0.05)
    with pytest.raises(ValueError, match="unknown augmentation 'paper'"):
        augment_with("paper", volume, [], generator, meta)


# ----------------------------------------------------------------------------- batch and best checkpoint


def test_paper_batch_is_global_over_the_ranks(synthetic_brats_root, tmp_path):
    from oss_net.data import discover
    from oss_net.training.loop import TrainingData

    assert [per_rank_batch(8, 2, mode) for mode in COMPAT_MODES] == [8, 4]
    assert per_rank_batch(4, 1, "paper") == 4
    with pytest.raises(CompatError, match="--batch_size 8 is the global batch and must be a multiple of the 3 processes"):
        per_rank_batch(8, 3, "paper")
    cases = discover("brats", synthetic_brats_root, "all")  # 4 cases
    for mode, per_rank, batches in (("ours", 2, 1), ("paper", 1, 2)):  # --batch_size 2 on two ranks
        settings = tiny(synthetic_brats_root, tmp_path, batch_size=2, compat=mode)
        ranks = [TrainingData(SimpleNamespace(
            settings=settings, context=ProcessContext(rank, 2, rank, torch.device("cpu")), train_cases=cases,
            config=demo_config("C"))) for rank in range(2)]
        assert [(data.batch_size, data.batches_per_epoch) for data in ranks] == [(per_rank, batches)] * 2
        indices = [list(data.sampler) for data in ranks]
        assert sorted(indices[0] + indices[1]) == [0, 1, 2, 3]  # every case once per epoch, over both ranks


def test_best_score_is_the_sampled_iou_in_paper_mode():
    metrics = {"val/sampled_dice": 0.9, "val/sampled_iou": 0.2, "val/dense_dice_model_grid": 0.7}
    assert best_score(metrics, "paper") == 0.2
    assert best_score(metrics, "ours") == 0.7
    assert best_score({"val/sampled_dice": 0.9, "val/sampled_iou": 0.2}, "ours") == 0.9
    assert best_score({"val/dense_iou_model_grid": 0.4, "val/dense_dice_model_grid": 0.6}, "paper") == 0.4  # a U-Net
    with pytest.raises(CompatError, match="none of"):
        best_score({"val/sampled_loss": 0.1}, "paper")


def test_a_paper_run_keeps_its_best_model_on_the_sampled_iou(synthetic_brats_root, tmp_path):
    run_dir = train(tiny(synthetic_brats_root, tmp_path, compat="paper", test=True, epochs=2, val_every=1))
    summary = json.loads((run_dir / "summary.json").read_text())["position"]
    ious = [entry["val/sampled_iou"] for entry in summary["history"]]
    assert len(ious) == 2 and summary["best_metric"] == max(ious)
    best = torch.load(run_dir / "best_model.pt", weights_only=False)
    assert best["validation"]["val/sampled_iou"] == max(ious)
    saved = json.loads((run_dir / "hyperparameters.json").read_text())
    assert saved["settings"]["compat"] == "paper"
    assert (saved["config"]["compat"], saved["config"]["raw_coordinates"], saved["config"]["large_patch_pooling"]) == (
        "paper", True, "max")
    # paper mode defines the run: resuming it in our mode is refused
    checkpoint = load_checkpoint(find_checkpoint(str(run_dir)))
    saved_settings = training_state(checkpoint, run_dir)["settings"]
    with pytest.raises(SettingsError, match="compat: checkpoint 'paper', now 'ours'"):
        check_resume_compatible(TrainSettings.from_dict({**saved_settings, "compat": "ours"}), saved_settings, "run")



# ------------------------------------------------------------------------------- batch norm per replica


def replica_inputs(config, volumes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    volume = torch.randn(volumes, config.in_channels, *config.volume_shape, generator=generator)
    coords = torch.randint(0, 32, (volumes, 48, 3), generator=generator).float()  # raw voxel indices (paper mode)
    return volume, coords, gather_patches(volume, coords, large=config.large_patches)


def test_paper_batch_norm_is_per_replica_with_the_first_replicas_running_statistics():
    """A 2-replica paper-mode forward equals two separate forwards on the halves (as DataParallel on 2 GPUs ran it);
    the running statistics are those after the first half."""
    config = demo_config("C", "lits", volume_shape=(32, 32, 32), compat="paper")
    torch.manual_seed(0)
    model = build_model(config).train()
    halves, pooled = copy.deepcopy(model), copy.deepcopy(model)
    volume, coords, patches = replica_inputs(config, 4)
    assert replicas_per_process(2, 1, "paper") == 2 and replicas_per_process(2, 2, "paper") == 1
    assert replicas_per_process(2, 1, "ours") is None
    network = wrap_model(model, ProcessContext(0, 1, 0, CPU), replicas_per_process(2, 1, "paper"))
    assert isinstance(network, VirtualReplicas) and bare_model(network) is model
    occupancy, segmentation = network(volume, coords, patches)
    first = halves(volume[:2], coords[:2], patches[:2])
    statistics = {key: value.clone() for key, value in halves.state_dict().items() if "running" in key}
    second = halves(volume[2:], coords[2:], patches[2:])
    torch.testing.assert_close(occupancy, torch.cat([first[0], second[0]]))
    torch.testing.assert_close(segmentation, torch.cat([first[1], second[1]]))
    assert statistics and all(torch.equal(model.state_dict()[key], value) for key, value in statistics.items())
    assert (occupancy - pooled(volume, coords, patches)[0]).abs().max() > 1e-3  # one pooled batch is not the same
    (occupancy.mean() + segmentation.mean()).backward()  # one graph through both replicas
    assert all(parameter.grad is not None for parameter in model.parameters() if parameter.requires_grad)
    assert wrap_model(build_model(config), ProcessContext(0, 1, 0, CPU), None).__class__.__name__ == "OSSNet"
    with pytest.raises(CompatError, match="--paper_replicas 2 must be a positive multiple of the 4 processes"):
        replicas_per_process(2, 4, "paper")


def test_an_odd_batch_is_split_as_data_parallel_scatters_it():
    config = demo_config("C", "lits", volume_shape=(32, 32, 32), compat="paper")
    model = build_model(config).train()
    halves = copy.deepcopy(model)
    volume, coords, patches = replica_inputs(config, 3)
    occupancy, _ = VirtualReplicas(model, 2)(volume, coords, patches)  # chunks of 2 and 1
    expected = torch.cat([halves(volume[:2], coords[:2], patches[:2])[0], halves(volume[2:], coords[2:], patches[2:])[0]])
    torch.testing.assert_close(occupancy, expected)


# ------------------------------------------------------------------------------------------ validation


def test_paper_validation_means_are_per_batch_of_two_and_a_last_batch_of_one_counts_as_one():
    assert [validation_batch(2, mode) for mode in COMPAT_MODES] == [1, 2]
    assert batch_means([0.0, 1.0, 1.0], 2) == [0.5, 1.0]
    assert batch_means([[(1.0, 0.5)], [(0.0, 0.0)], [(1.0, 1.0)]], 2) == [[(0.5, 0.25)], [(1.0, 1.0)]]
    assert batch_means([0.25, 1.0], 1) == [0.25, 1.0]
    config = demo_config("C", "lits", volume_shape=(32, 32, 32))
    model = build_model(config)
    generator = torch.Generator().manual_seed(3)
    samples = [{"volume": torch.randn(1, 32, 32, 32, generator=generator),
                "coords": torch.randint(0, 32, (64, 3), generator=generator).float(),
                "labels": torch.randint(0, 2, (64, 1), generator=generator).float()} for _ in range(3)]
    each = [sampled_validation(model, [sample], CPU, "off") for sample in samples]
    batched = sampled_validation(model, samples, CPU, "off", batch=2)
    for name in ("val/sampled_loss", "val/sampled_iou", "val/sampled_dice"):
        assert batched[name] == pytest.approx(((each[0][name] + each[1][name]) / 2 + each[2][name]) / 2)


def test_paper_validation_redraws_its_points_at_every_validation(monkeypatch, synthetic_brats_root, tmp_path):
    calls = []

    def record(model, samples, device, amp, batch):
        calls.append((batch, [sample["coords"] for sample in samples]))
        return {}

    monkeypatch.setattr(loop, "sampled_validation", record)
    cases = discover("brats", synthetic_brats_root, "all")[:2]
    for mode in COMPAT_MODES:
        history: list[dict] = []
        run = SimpleNamespace(settings=tiny(synthetic_brats_root, tmp_path, compat=mode, test=True),
                              config=demo_config("C", compat=mode), val_cases=cases, model=None,
                              position=SimpleNamespace(history=history), context=ProcessContext(0, 1, 0, CPU))
        validate = loop.Validator(run)
        for _ in range(2):
            validate()
            history.append({})
    (ours_batch, ours_first), (_, ours_second), (paper_batch, paper_first), (_, paper_second) = calls
    assert (ours_batch, paper_batch) == (1, 2)
    assert all(torch.equal(a, b) for a, b in zip(ours_first, ours_second))  # ours: one fixed set
    assert not any(torch.equal(a, b) for a, b in zip(paper_first, paper_second))  # paper: fresh points


# ------------------------------------------------------------------------------------- preprocessing


def test_paper_lits_labels_and_borders_are_resampled_with_torchs_nearest(synthetic_lits_root, lits_config):
    for size_in, size_out in ((40, 32), (24, 32), (7, 3)):
        ramp = torch.arange(size_in, dtype=torch.float64)[None, None]
        for mode in ("nearest", "nearest-exact"):
            expected = torch.nn.functional.interpolate(ramp, size=size_out, mode=mode)[0, 0].long().numpy()
            np.testing.assert_array_equal(nearest_indices(size_in, size_out, mode), expected)
    files = discover("lits", synthetic_lits_root, "all")[0]
    raw = np.asarray(nib.load(files.label).dataobj).astype(np.uint8)
    loaded = {mode: load_case(files, apply_compat(lits_config, mode)) for mode in COMPAT_MODES}
    for mode, torch_mode in (("ours", "nearest-exact"), ("paper", "nearest")):
        def resampled(array):
            grid = torch.from_numpy(array.astype(np.float32))[None, None]
            return torch.nn.functional.interpolate(grid, size=lits_config.volume_shape, mode=torch_mode)[0, 0].numpy()
        np.testing.assert_array_equal(loaded[mode].raw_label, resampled(raw))
        np.testing.assert_array_equal(loaded[mode].border, resampled(compute_border(raw)))
    assert not np.array_equal(loaded["ours"].raw_label, loaded["paper"].raw_label)


def test_paper_zscore_uses_the_unbiased_std_without_epsilon_and_refuses_a_constant_image(synthetic_brats_root):
    array = np.array([[[1.0, 3.0], [5.0, 7.0]]])  # mean 4; population std √5, unbiased √(20/3)
    np.testing.assert_allclose(zscore(array, rule="original"), (array - 4) / np.sqrt(20 / 3), rtol=1e-6)
    np.testing.assert_allclose(zscore(array), (array - 4) / (np.sqrt(5) + 1e-6), rtol=1e-6)
    assert not zscore(np.ones((2, 2, 2))).any()  # ours: a constant image becomes zeros
    with pytest.raises(DatasetError, match="flair.nii.gz: the image is constant"):
        zscore(np.ones((2, 2, 2)), rule="original", path="flair.nii.gz")
    rules = {mode: preprocessing_rules(demo_config("C", compat=mode)) for mode in COMPAT_MODES}
    assert rules == {"ours": {"zscore": "ours", "label_resampling": "nearest-exact"},
                     "paper": {"zscore": "original", "label_resampling": "nearest"}}
    assert preprocessing_rules(get_unet_config("unet3d", "brats")) == rules["ours"]
    files = discover("brats", synthetic_brats_root, "all")[0]
    keys = {mode: cache_key(files, "brats", (64, 64, 40), None, rules[mode]) for mode in COMPAT_MODES}
    assert keys["ours"] != keys["paper"]  # a cached case of one mode is never read by the other
