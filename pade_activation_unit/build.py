"""Compile the PAU libraries ahead of time: `python -m pade_activation_unit.build` (what `make build` runs).

    python -m pade_activation_unit.build            # build if needed (a no-op in well under 2 s otherwise)
    python -m pade_activation_unit.build --force    # rebuild everything
    python -m pade_activation_unit.build --check    # exit 1 when a build is needed, compile nothing

Two shared libraries go to `pade_activation_unit/_build/<key>/` (key: see `_extension.build_key`):
- `libpau_cpu.so`: the op schemas and the CPU kernels. The kernel file is compiled once per instruction
  set (baseline, and AVX2+FMA on x86-64); the library picks the best one the CPU runs.
- `libpau_cuda.so`: the CUDA kernels, when a CUDA toolkit exists and torch is a CUDA build. The toolkit
  root is `CUDA_HOME` if set, else the `TOP=` line of `nvcc --dryrun` (nvcc on PATH may be a wrapper
  script, so its folder says nothing). Architectures: `TORCH_CUDA_ARCH_LIST` if set, else the visible
  GPUs' own, else 8.0 and 9.0 with PTX for newer GPUs.

The compiler is called directly (g++ and nvcc, several jobs in parallel) with narrow ATen headers; the
kernel files include no torch header at all, which keeps the build to about half a minute on 2 cores.
Objects are cached by the hash of their command and sources, so editing one file recompiles one file.
A second process waiting on the lock finds the finished build and does nothing.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import _extension as ext

OBJECT_CACHE = ext.BUILD_ROOT / "objects"
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"
# Extra flags of each CPU kernel variant, by instruction-set namespace (see csrc/pau_kernels.h).
CPU_ISAS = {"cpu_baseline": [], "cpu_avx2": ["-mavx2", "-mfma", "-mf16c"]}


_OUTPUT_LOCK = threading.Lock()


class BuildError(RuntimeError):
    """A compiler or linker failed; the message holds its command and output."""


@dataclass(frozen=True)
class CudaToolkit:
    root: Path
    nvcc: Path
    version: str  # last line of `nvcc --version`


@dataclass
class Job:
    """One compiler call producing `output` (an object or a library)."""

    label: str
    command: list[str]
    output: Path
    inputs: list[Path] = field(default_factory=list)


def find_cuda_toolkit() -> tuple[CudaToolkit | None, str]:
    """The CUDA toolkit to build with, or None and the reason there is none."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        root = Path(home)
        if not (root / "bin" / "nvcc").is_file():
            return None, f"CUDA_HOME={home} has no bin/nvcc"
    else:
        nvcc_on_path = shutil.which("nvcc")
        if nvcc_on_path is None:
            return None, "no CUDA toolkit (nvcc not on PATH and CUDA_HOME unset)"
        dryrun = subprocess.run(
            [nvcc_on_path, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
            capture_output=True, text=True, check=False,
        )
        top = re.search(r"^#\$ TOP=(.+)$", dryrun.stderr + dryrun.stdout, re.MULTILINE)
        root = Path(top.group(1).strip()).resolve() if top else Path(nvcc_on_path).resolve().parent.parent
    nvcc = root / "bin" / "nvcc"
    version = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        return None, f"{nvcc} --version failed: {version.stderr.strip()}"
    return CudaToolkit(root, nvcc, version.stdout.strip().splitlines()[-1]), ""


def toolkit_fingerprint(torch_version: ext.TorchVersion) -> dict:
    """What decides whether the CUDA library can and must be rebuilt, besides the key."""
    if torch_version.cuda is None:
        return {"cuda_root": None, "nvcc_version": None}
    toolkit, _ = find_cuda_toolkit()
    return {
        "cuda_root": str(toolkit.root) if toolkit else None,
        "nvcc_version": toolkit.version if toolkit else None,
    }


def up_to_date(key: str, torch_version: ext.TorchVersion) -> tuple[bool, str]:
    manifest = ext.read_manifest(key)
    if manifest is None:
        return False, f"no build for key {key}"
    fingerprint = toolkit_fingerprint(torch_version)
    if {name: manifest.get(name) for name in fingerprint} != fingerprint:
        return False, f"CUDA toolkit changed since the build ({manifest.get('nvcc_version')} -> {fingerprint['nvcc_version']})"
    return True, describe(manifest)


def describe(manifest: dict) -> str:
    cuda = (
        f"{manifest['cuda_library']} (archs {manifest['arch_list']})"
        if manifest.get("cuda_library")
        else f"no CUDA library ({manifest.get('cuda_skipped')})"
    )
    return f"{manifest['cpu_library']} (CPU kernels: {', '.join(manifest['cpu_isas'])}), {cuda}"


def cuda_arch_list(torch_module) -> str:
    """TORCH_CUDA_ARCH_LIST if set, else the visible GPUs' architectures (+PTX on the newest), else 8.0;9.0+PTX."""
    configured = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if configured:
        return ";".join(configured.replace(",", ";").replace(" ", ";").split(";")).strip(";")
    if torch_module.cuda.is_available():
        capabilities = sorted(
            {torch_module.cuda.get_device_capability(i) for i in range(torch_module.cuda.device_count())}
        )
        names = [f"{major}.{minor}" for major, minor in capabilities]
        return ";".join(names[:-1] + [names[-1] + "+PTX"])
    return DEFAULT_ARCH_LIST


def gencode_flags(arch_list: str) -> list[str]:
    """-gencode flags for entries like 8.0, 9.0a, 9.0+PTX."""
    flags: list[str] = []
    for entry in filter(None, arch_list.split(";")):
        match = re.fullmatch(r"(\d+)\.(\d+)([a-z]?)(\+PTX)?", entry.strip())
        if match is None:
            raise BuildError(f"TORCH_CUDA_ARCH_LIST entry {entry!r} is not of the form 8.0, 9.0a or 9.0+PTX")
        arch = f"{match.group(1)}{match.group(2)}{match.group(3)}"
        flags.append(f"-gencode=arch=compute_{arch},code=sm_{arch}")
        if match.group(4):
            flags.append(f"-gencode=arch=compute_{arch},code=compute_{arch}")
    return flags


def object_job(label: str, command: list[str], source: Path) -> Job:
    """A compile job whose output is named by the hash of its command and of every source it can read."""
    digest = hashlib.sha256(json.dumps(command).encode())
    for path in [source, *(ext.CSRC_DIR / name for name in ext.HEADERS)]:
        digest.update(path.read_bytes())
    output = OBJECT_CACHE / f"{source.stem}-{digest.hexdigest()[:16]}.o"
    return Job(label, [*command, "-c", str(source), "-o", str(output)], output, [source])


def _say(line: str) -> None:
    """One whole line per write: the compile jobs report from several threads."""
    with _OUTPUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def run_job(job: Job, reuse: bool = True) -> float:
    """Run one compiler call unless `reuse` and its output exists; returns the seconds spent."""
    if reuse and job.output.exists():
        _say(f"  cached   {job.label}")
        return 0.0
    start = time.perf_counter()
    partial = job.output.with_name(f".{job.output.name}.{os.getpid()}.tmp")
    command = [partial.as_posix() if part == str(job.output) else part for part in job.command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(f"{job.label} failed:\n$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    os.replace(partial, job.output)
    seconds = time.perf_counter() - start
    _say(f"  built    {job.label} ({seconds:.1f} s)")
    return seconds


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    ext.BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    with open(ext.BUILD_ROOT / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(force: bool = False, jobs: int | None = None) -> Path:
    """Build the libraries for this checkout and torch unless a matching build exists; returns its folder."""
    torch_version = ext.installed_torch()
    key = ext.build_key(torch_version)
    if not force:
        current, summary = up_to_date(key, torch_version)
        if current:
            print(f"PAU extension up to date in {ext.build_dir(key)}: {summary}")
            return ext.build_dir(key)
    with build_lock():
        if not force and up_to_date(key, torch_version)[0]:
            print(f"PAU extension built by another process in {ext.build_dir(key)}")
            return ext.build_dir(key)
        return _build_locked(key, torch_version, jobs or os.cpu_count() or 1, reuse_objects=not force)


@dataclass
class Recipe:
    """What one build compiles and links: the compiler, the object jobs of each library and their targets."""

    cxx: str
    torch_lib: Path
    isas: list[str]
    arch_list: str | None
    cuda_jobs: list[Job]
    cpu_jobs: list[Job]


def _build_locked(key: str, torch_version: ext.TorchVersion, jobs: int, reuse_objects: bool) -> Path:
    """Compile and link both libraries under the build lock, then put the new build folder in place."""
    start = time.perf_counter()
    toolkit, cuda_skipped = find_cuda_toolkit()
    if torch_version.cuda is None:
        toolkit, cuda_skipped = None, f"torch {torch_version.version} is a CPU-only build"
    if toolkit is not None:
        # torch.utils.cpp_extension and friends read CUDA_HOME at import: point them at the real root.
        os.environ["CUDA_HOME"] = str(toolkit.root)
    recipe = _recipe(torch_version, toolkit)

    print(f"Building the PAU extension (torch {torch_version.version}, {jobs} jobs) into {ext.build_dir(key)}", flush=True)
    if toolkit is None:
        print(f"  skipping the CUDA library: {cuda_skipped}", flush=True)
    # The longest compile (nvcc) goes first so that the CPU objects fill the other workers meanwhile.
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(run_job, job, reuse_objects) for job in (*recipe.cuda_jobs, *recipe.cpu_jobs)]:
            future.result()

    partial_dir = ext.BUILD_ROOT / f".{key}.{os.getpid()}.partial"
    shutil.rmtree(partial_dir, ignore_errors=True)
    partial_dir.mkdir(parents=True)
    _link(recipe, toolkit, partial_dir)
    manifest = {
        "key": key,
        "torch": torch_version.version,
        "torch_cuda": torch_version.cuda,
        "cpu_library": ext.CPU_LIBRARY,
        "cpu_isas": [isa.removeprefix("cpu_") for isa in recipe.isas],
        "cuda_library": ext.CUDA_LIBRARY if toolkit is not None else None,
        "cuda_skipped": cuda_skipped or None,
        "arch_list": recipe.arch_list,
        **toolkit_fingerprint(torch_version),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (partial_dir / ext.MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    final_dir = ext.build_dir(key)
    if final_dir.exists():
        stale = ext.BUILD_ROOT / f".{key}.{os.getpid()}.stale"
        os.replace(final_dir, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(partial_dir, final_dir)
    _prune(key, torch_version, keep_objects={job.output for job in (*recipe.cuda_jobs, *recipe.cpu_jobs)})
    print(f"PAU extension built in {manifest['seconds']:.1f} s: {describe(manifest)}", flush=True)
    return final_dir


def _recipe(torch_version: ext.TorchVersion, toolkit: CudaToolkit | None) -> Recipe:
    """The compile jobs: the CUDA kernels and glue when there is a toolkit, the CPU glue and one kernel object per ISA."""
    import torch  # after CUDA_HOME is set (see _build_locked)

    OBJECT_CACHE.mkdir(parents=True, exist_ok=True)
    torch_include = torch_version.package_dir / "include"
    cxx = os.environ.get("CXX", "g++")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    common = ["-std=c++20", "-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-I{torch_include}", f"-I{ext.CSRC_DIR}"]
    isas = ["cpu_baseline", "cpu_avx2"] if platform.machine() in ("x86_64", "AMD64") else ["cpu_baseline"]

    cuda_jobs: list[Job] = []
    arch_list = None
    if toolkit is not None:
        arch_list = cuda_arch_list(torch)
        nvcc_flags = ["-O3", "-std=c++20", "-Xcompiler", "-fPIC", "-lineinfo", f"-I{ext.CSRC_DIR}", *gencode_flags(arch_list)]
        if "CXX" in os.environ:
            nvcc_flags += ["-ccbin", cxx]
        cuda_jobs = [
            object_job(f"{ext.CUDA_KERNELS} ({arch_list})", [str(toolkit.nvcc), *nvcc_flags], ext.CSRC_DIR / ext.CUDA_KERNELS),
            object_job(ext.CUDA_GLUE, [cxx, "-O2", *common, f"-I{toolkit.root / 'include'}"], ext.CSRC_DIR / ext.CUDA_GLUE),
        ]
    # -fopenmp: at::parallel_for is a header template that runs serially unless compiled with OpenMP (torch's
    # backend); the library then shares the libgomp torch has loaded, and torch.set_num_threads applies.
    cpu_jobs = [object_job(ext.CPU_GLUE, [cxx, "-O2", "-fopenmp", *common], ext.CSRC_DIR / ext.CPU_GLUE)]
    for isa in isas:
        flags = ["-O3", "-ffp-contract=fast", f"-DPAU_CPU_ISA={isa}", *CPU_ISAS[isa]]
        cpu_jobs.append(object_job(f"{ext.CPU_KERNELS} [{isa}]", [cxx, *flags, *common], ext.CSRC_DIR / ext.CPU_KERNELS))
    return Recipe(cxx, torch_version.package_dir / "lib", isas, arch_list, cuda_jobs, cpu_jobs)


def _link(recipe: Recipe, toolkit: CudaToolkit | None, folder: Path) -> None:
    """Link the CPU library (and the CUDA one when there is a toolkit) into `folder`."""
    def link(library: str, objects: list[Job], libraries: list[str]) -> None:
        output = folder / library
        command = [recipe.cxx, "-shared", *(str(job.output) for job in objects), f"-L{recipe.torch_lib}",
                   f"-Wl,-rpath,{recipe.torch_lib}"]
        run_job(Job(library, [*command, *libraries, "-o", str(output)], output), reuse=False)

    link(ext.CPU_LIBRARY, recipe.cpu_jobs, ["-lc10", "-ltorch_cpu", "-fopenmp"])
    if toolkit is not None:
        link(ext.CUDA_LIBRARY, recipe.cuda_jobs, ["-lc10", "-lc10_cuda", "-ltorch_cpu", f"-L{toolkit.root / 'lib64'}", "-lcudart"])


def _prune(key: str, torch_version: ext.TorchVersion, keep_objects: set[Path]) -> None:
    """Remove builds of older sources for this torch (never loaded again) and older objects of the sources
    just compiled (objects of sources not compiled this time, e.g. CUDA ones without a toolkit, stay)."""
    for folder in ext.BUILD_ROOT.iterdir():
        if folder.name == key or folder.name.startswith(".") or folder == OBJECT_CACHE or not folder.is_dir():
            continue
        manifest = ext.read_manifest(folder.name)
        if manifest is None or manifest.get("torch") == torch_version.version:
            shutil.rmtree(folder, ignore_errors=True)
    compiled_stems = {path.stem.rsplit("-", 1)[0] for path in keep_objects}
    for path in OBJECT_CACHE.glob("*.o"):
        if path not in keep_objects and path.stem.rsplit("-", 1)[0] in compiled_stems:
            path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild even when a matching build exists")
    parser.add_argument("--check", action="store_true", help="only report whether a build is needed (exit 1 if so)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compiler calls (default: CPU count)")
    args = parser.parse_args(argv)
    if args.check:
        torch_version = ext.installed_torch()
        current, summary = up_to_date(ext.build_key(torch_version), torch_version)
        print(("up to date: " if current else "build needed: ") + summary)
        return 0 if current else 1
    try:
        build(force=args.force, jobs=args.jobs)
    except BuildError as error:
        print(f"PAU build failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
