"""The ahead-of-time build: cache key, toolkit discovery, architecture flags, and what the libraries hold.
Nothing here compiles; the library checks look at what `make build` produced."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pade_activation_unit import _extension as ext
from pade_activation_unit import build

REPO = Path(__file__).resolve().parents[2]


def current_manifest() -> dict | None:
    return ext.read_manifest(ext.build_key())


def write_script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_key_is_stable_and_depends_on_torch() -> None:
    installed = ext.installed_torch()
    assert ext.build_key() == ext.build_key(installed)
    other = ext.TorchVersion("2.11.0+cu128", "12.8", installed.package_dir)
    assert ext.build_key(other) != ext.build_key(installed)
    assert len(ext.build_key()) == 16


@pytest.mark.skipif(current_manifest() is None, reason="PAU extension not built: run make build")
def test_second_build_is_a_fast_noop() -> None:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pade_activation_unit.build", "--check"], cwd=REPO, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("up to date: libpau_cpu.so")
    assert elapsed < 2.0


def test_cuda_root_comes_from_the_dryrun_top_line_of_a_wrapper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "toolkit-13.9"
    write_script(root / "bin" / "nvcc", 'echo "Cuda compilation tools, release 13.9, V13.9.1"\necho "Build cuda_13.9.test"\n')
    # The wrapper lives elsewhere, so its parent folder says nothing about the real root.
    write_script(
        tmp_path / "wrappers" / "nvcc",
        f'case "$*" in *--dryrun*) echo "#$ TOP={root}/bin/.." >&2;; *) exec {root}/bin/nvcc "$@";; esac\n',
    )
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'wrappers'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    toolkit, reason = build.find_cuda_toolkit()
    assert reason == ""
    assert toolkit is not None and toolkit.root == root.resolve()
    assert toolkit.version == "Build cuda_13.9.test"


def test_cuda_home_wins_and_missing_toolkit_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cuda"
    write_script(root / "bin" / "nvcc", 'echo "Build cuda_home"\n')
    monkeypatch.setenv("CUDA_HOME", str(root))
    toolkit, _ = build.find_cuda_toolkit()
    assert toolkit is not None and toolkit.root == root
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "nowhere"))
    assert build.find_cuda_toolkit() == (None, f"CUDA_HOME={tmp_path / 'nowhere'} has no bin/nvcc")
    monkeypatch.delenv("CUDA_HOME")
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert build.find_cuda_toolkit() == (None, "no CUDA toolkit (nvcc not on PATH and CUDA_HOME unset)")


def test_architectures(monkeypatch: pytest.MonkeyPatch) -> None:
    no_gpu = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False))
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    assert build.cuda_arch_list(no_gpu) == "8.0;9.0+PTX"
    assert build.gencode_flags("8.0;9.0+PTX") == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_90,code=sm_90",
        "-gencode=arch=compute_90,code=compute_90",
    ]
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6 9.0a")
    assert build.gencode_flags(build.cuda_arch_list(no_gpu)) == [
        "-gencode=arch=compute_86,code=sm_86",
        "-gencode=arch=compute_90a,code=sm_90a",
    ]
    with pytest.raises(build.BuildError, match="entry 'Ampere' is not of the form"):
        build.gencode_flags("Ampere")


@pytest.mark.skipif(current_manifest() is None, reason="PAU extension not built: run make build")
def test_cuda_library_holds_our_kernels() -> None:
    manifest = current_manifest()
    if not manifest.get("cuda_library"):
        pytest.skip(f"CUDA library not built: {manifest.get('cuda_skipped')}")
    if shutil.which("readelf") is None or shutil.which("nm") is None:
        pytest.skip("binutils (readelf, nm) not installed")
    library = ext.build_dir(ext.build_key()) / manifest["cuda_library"]
    sections = subprocess.run(["readelf", "-S", "-W", str(library)], capture_output=True, text=True, check=True).stdout
    assert ".nv_fatbin" in sections  # device code is embedded
    symbols = subprocess.run(["nm", "-C", str(library)], capture_output=True, text=True, check=True).stdout
    for kernel in ("pau_forward_kernel<float, 5, 4, true, 0>", "pau_backward_kernel<float, 5, 4, true, 0>",
                   "pau_backward_kernel<__half, 8, 8, false, 2>", "pau_reduce_kernel<double>"):
        assert f"pau::cuda::detail::{kernel}" in symbols, kernel
