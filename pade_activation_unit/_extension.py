"""Where the compiled PAU libraries live and which build matches this checkout, without importing torch.

Both `python -m pade_activation_unit.build` and `loader.load_libraries` use this module: the build writes
`_build/<key>/manifest.json` next to the libraries, the loader loads the libraries of the manifest whose
key matches. The key hashes every C++/CUDA source, the build recipe (build.py, which holds the flags),
the torch version and torch's CUDA version, and the machine architecture: editing a kernel, changing a
flag or installing another torch selects a different folder, so a stale library is never loaded.
Reading torch's version from its `version.py` file (instead of `import torch`) keeps a no-op build fast.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CSRC_DIR = PACKAGE_DIR / "csrc"
BUILD_ROOT = PACKAGE_DIR / "_build"
MANIFEST_NAME = "manifest.json"
CPU_LIBRARY = "libpau_cpu.so"
CUDA_LIBRARY = "libpau_cuda.so"

# Sources of each library, relative to csrc/. The CPU library also defines the op schemas.
CPU_GLUE = "cpu/pau_cpu.cpp"
CPU_KERNELS = "cpu/pau_cpu_kernels.cpp"
CUDA_GLUE = "cuda/pau_cuda.cpp"
CUDA_KERNELS = "cuda/pau_cuda_kernels.cu"
HEADERS = ("pau_math.h", "pau_kernels.h", "pau_checks.h")


@dataclass(frozen=True)
class TorchVersion:
    """torch.__version__ and torch.version.cuda (None for a CPU-only build) of the installed torch."""

    version: str
    cuda: str | None
    package_dir: Path


def installed_torch() -> TorchVersion:
    """Read torch/version.py of the installed torch without importing torch (which takes seconds)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("torch is not installed in this environment")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    namespace: dict[str, object] = {}
    exec(compile((package_dir / "version.py").read_text(), str(package_dir / "version.py"), "exec"), namespace)
    cuda = namespace.get("cuda")
    return TorchVersion(str(namespace["__version__"]), str(cuda) if cuda else None, package_dir)


def source_files() -> list[Path]:
    """Every file whose content goes into a library, in a fixed order."""
    return [CSRC_DIR / name for name in (*HEADERS, CPU_GLUE, CPU_KERNELS, CUDA_GLUE, CUDA_KERNELS)]


def build_key(torch_version: TorchVersion | None = None) -> str:
    """16 hex digits naming the build folder for these sources, this recipe and this torch."""
    torch_version = torch_version or installed_torch()
    digest = hashlib.sha256()
    for path in (*source_files(), PACKAGE_DIR / "build.py"):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for part in (torch_version.version, torch_version.cuda or "cpu", platform.machine()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def build_dir(key: str) -> Path:
    return BUILD_ROOT / key


def read_manifest(key: str) -> dict | None:
    """The manifest of a complete build for `key`, or None when there is none."""
    path = build_dir(key) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if manifest.get("key") != key or not (build_dir(key) / manifest.get("cpu_library", CPU_LIBRARY)).is_file():
        return None
    return manifest
