"""Sharded prediction: N jobs split the sorted cases (nnU-Net's convention) and share one output folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from oss_net.data import dataset_info, discover
from oss_net.data.fingerprint import compute_fingerprint
from oss_net.data.synthetic_layouts import write_nnunet_dataset
from oss_net.inference import InferenceSettings, run_inference
from oss_net.inference.options import InferenceError
from oss_net.inference.sharding import Part, rank_device, resolve_part
from oss_net.io import OUTPUT_MANIFEST, recorded_outputs
from oss_net.models import network_config, save_model
from oss_net.predict import main

from .conftest import IntensityModel

HERE = Path(__file__).resolve().parent
# a part as its own process: the test model registered (this folder's conftest), then oss-net-predict
PART_PROCESS = "import sys; sys.path.insert(0, sys.argv[1]); import conftest; from oss_net.predict import main; " \
               "raise SystemExit(main(sys.argv[2:]))"


def cases(*ids: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(case_id=case_id) for case_id in ids]


def test_parts_split_the_sorted_cases_each_case_once():
    listed = cases("c", "a", "e", "b", "d")
    parts = [[case.case_id for case in Part(2, part).take(listed)] for part in range(2)]
    assert parts == [["a", "c", "e"], ["b", "d"]]  # sorted(cases)[I::N], whatever the listing order
    assert [case.case_id for case in Part().take(listed)] == ["a", "b", "c", "d", "e"]
    assert Part(8, 7).take(listed) == []  # more parts than cases: a part may have none


@pytest.mark.parametrize("num_parts, part_id, problem", [(0, None, "at least 1"), (2, 2, "0..1"), (2, -1, "0..1"),
                                                         (None, 1, "needs --num_parts")])
def test_a_bad_part_is_refused(num_parts, part_id, problem):
    with pytest.raises(InferenceError, match=problem):
        resolve_part(num_parts, part_id)


def test_torchrun_ranks_take_parts_and_their_gpus(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_part() == Part(4, 2) and rank_device() == "cuda:1" and rank_device(cpu=True) is None
    assert resolve_part(2, 0) == Part(2, 0)  # the flags win over torchrun's ranks
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert resolve_part() == Part() and rank_device() is None


@pytest.fixture(scope="module")
def imagests(tmp_path_factory) -> tuple[Path, Path]:
    """An nnU-Net imagesTs folder of 5 cases (3 channels, oblique grids) and its intensity model's checkpoint."""
    root = write_nnunet_dataset(tmp_path_factory.mktemp("nnunet"), cases=2, shape=(24, 20, 16), seed=3, test_cases=5)
    fingerprint = compute_fingerprint(discover("nnunet", root, "train"), dataset_info("nnunet", root))
    checkpoint = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(checkpoint, IntensityModel(network_config("C", "nnunet", demo=True, fingerprint=fingerprint,
                                                         volume_shape=(32, 32, 32))))
    return root / "imagesTs", checkpoint


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, but the manifest (it records modification times)."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != OUTPUT_MANIFEST}


def test_two_processes_of_two_parts_write_what_one_process_writes(imagests, tmp_path):
    images, checkpoint = imagests
    flags = ["-i", str(images), "-m", str(checkpoint), "--cpu", "--save_probabilities"]
    assert main([*flags, "-o", str(tmp_path / "whole")]) == 0
    parts = [subprocess.Popen([sys.executable, "-c", PART_PROCESS, str(HERE), *flags, "-o", str(tmp_path / "sharded"),
                               "--num_parts", "2", "--part_id", str(part)], stderr=subprocess.PIPE, text=True)
             for part in range(2)]  # at the same time, into one folder
    for process in parts:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    whole, sharded = folder_bytes(tmp_path / "whole"), folder_bytes(tmp_path / "sharded")
    assert len(whole) == 1 + 5 * 2 and whole.keys() == sharded.keys()  # predictions.json, label maps, probabilities
    assert all(whole[name] == sharded[name] for name in whole)  # byte-identical
    cases = json.loads(sharded["predictions.json"])["cases"]
    assert [case["case"] for case in cases] == sorted(case["case"] for case in cases) and len(cases) == 5
    assert set(recorded_outputs(tmp_path / "sharded")) == set(sharded)  # both parts' files are recorded as ours
    assert not [p for p in (tmp_path / "sharded").iterdir() if p.name.endswith((".lock", ".tmp"))]


def test_inference_parts_share_a_folder_and_its_summary(brats_checkpoint, synthetic_brats_root, tmp_path):
    def run(output: Path, part: Part) -> None:
        run_inference(InferenceSettings(load_model=str(brats_checkpoint), dataset_path=str(synthetic_brats_root),
                                        output_dir=str(output), split="all", no_mesh=True, overlay=False, flat=True,
                                        num_parts=part.num_parts, part_id=part.part_id))

    run(tmp_path / "whole", Part())
    for part in (1, 0):
        run(tmp_path / "sharded", Part(2, part))
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    case_ids = sorted(p.name for p in whole.iterdir() if p.is_dir())
    assert len(case_ids) == 4 and sorted(p.name for p in sharded.iterdir() if p.is_dir()) == case_ids
    for case_id in case_ids:
        assert (sharded / f"{case_id}.nii.gz").read_bytes() == (whole / f"{case_id}.nii.gz").read_bytes()
        assert (sharded / case_id / f"{case_id}_mask.nii.gz").read_bytes() == (
            whole / case_id / f"{case_id}_mask.nii.gz").read_bytes()
    rows = json.loads((sharded / "summary.json").read_text())
    assert [row["case"] for row in rows] == [*case_ids, "mean"]  # the last part's summary holds every part's cases
    assert rows[-1]["dice"] == pytest.approx(json.loads((whole / "summary.json").read_text())[-1]["dice"])
    # --continue of one part keeps its finished cases and touches none of the other part's
    before = {case_id: (sharded / case_id / "manifest.json").read_bytes() for case_id in case_ids}
    run_inference(InferenceSettings(load_model=str(brats_checkpoint), dataset_path=str(synthetic_brats_root),
                                    output_dir=str(sharded), split="all", no_mesh=True, overlay=False, flat=True,
                                    num_parts=2, part_id=0, resume=True))
    assert {case_id: (sharded / case_id / "manifest.json").read_bytes() for case_id in case_ids} == before
