#!/usr/bin/env bash
# The GPU check: everything a lent GPU machine should measure, from a bare checkout, within 8 minutes.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine (what `make bench-gpu` runs)
#   bash benchmarks/gpu_check.sh --rehearse      # here, on the CPU: every step at tiny sizes (a few minutes)
#   bash benchmarks/gpu_check.sh pau infer       # only these steps (after env)
#   bash benchmarks/gpu_check.sh --fetch-wheels  # where PyPI is reachable: the wheels the GPU machine lacks
#
# It uses the machine's own python (PYTHON, default python3) and torch: no venv, no pip downloads (a GPU
# machine here reaches no registry). Steps, in this order, each run as `python -m benchmarks.gpu_check STEP`
# under `timeout` (its cap, or what is left of the total budget, whichever is smaller):
#   env        python, torch, CUDA device, theoretical DRAM peak, nvcc, compute-sanitizer, missing modules;
#              without a CUDA device it stops the run (exit 2) unless rehearsing
#   build      python -m pade_activation_unit.build against this torch, then loads the kernels
#   tests      pytest -m gpu on the files with GPU tests, less the compute-sanitizer test (the sanitizer
#              step's job); without pytest: skipped, said so (the image has it; no stand-in runner);
#              without the oss_net stack's modules: only the PAU tests, with --noconftest
#   pau        PAU GB/s at [8*2^14, 512] fwd and fwd+bwd, as % of a 1 GiB clone's and of the DRAM peak
#   memory     Table-2 peak training memory of C and the 3D U-Net (BraTS, LiTS) next to the paper's, and one
#              real training step of C at the LiTS grid (512^3) with and without recomputation, each in its own
#              process, its torch.cuda.max_memory_allocated next to the device-free count
#   infer      seconds per BraTS volume of C, prior and standard, fp32 and bf16: `bench_infer --size gpu`,
#              Predictor.predict on the 256x256x160 grid a 240x240x155 scan is padded to, ellipsoid answers
#              (the longest step: dense, standard and prior, 5 runs each; after memory so it cannot starve it)
#   sanitizer  compute-sanitizer memcheck on one PAU forward+backward: the error count (last: the slowest
#              and the one most likely unsupported by a machine's runtime)
# A failing or timed-out step is reported and the next one runs. Then one summary table; everything goes to
# benchmarks/results/gpu_*.json (a rehearsal: benchmarks/results/rehearsal/) and gpu_check.log there.
# Exit status: 0 when no step failed, 1 when one did, 2 when there is no CUDA device (not rehearsing).
#
# Environment: PYTHON (python3), GPU_CHECK_BUDGET_S (total seconds, 470), GPU_CHECK_CAP_<step> (one step's
# limit in seconds, e.g. GPU_CHECK_CAP_infer=300; defaults in CAP below), GPU_CHECK_REHEARSE=1 (= --rehearse),
# GPU_CHECK_RESULTS (output folder), GPU_CHECK_WHEELS (build/gpu_wheels), GPU_CHECK_BLOCK (comma-separated
# modules to hide from python: simulates a machine that lacks them, e.g. nibabel,trimesh,pytest).
# The oss_net stack (tests, infer, memory) needs nibabel and trimesh, which the GPU image lacks: both are pure
# Python, so --fetch-wheels downloads them here into build/gpu_wheels, and the GPU run, given that folder,
# installs them into a temporary folder with pip --no-index (never from a registry).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
SUMMARY_RESERVE=20  # seconds kept for the summary
WHEELS=${GPU_CHECK_WHEELS:-build/gpu_wheels}
WHEEL_PACKAGES=(nibabel trimesh)  # pinned in requirements.txt; pure Python, missing from the GPU image
declare -A CAP=([env]=60 [build]=180 [tests]=120 [pau]=120 [memory]=150 [infer]=200 [sanitizer]=90)
ALL_STEPS=(env build tests pau memory infer sanitizer)
for step in "${ALL_STEPS[@]}"; do override=GPU_CHECK_CAP_$step; CAP[$step]=${!override:-${CAP[$step]}}; done
REHEARSE=${GPU_CHECK_REHEARSE:-0}
STEPS=()

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

fetch_wheels() {
  local fetch_py=$PY pins=()
  [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && fetch_py=.venv/bin/python
  for package in "${WHEEL_PACKAGES[@]}"; do
    pins+=("$(grep -i "^${package}==" requirements.txt || echo "$package")")
  done
  mkdir -p "$WHEELS"
  "$fetch_py" -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
    --implementation cp --platform manylinux2014_x86_64 -d "$WHEELS" "${pins[@]}" || exit 1
  echo "wheels in $WHEELS (carry this folder to the GPU machine):"; ls -1 "$WHEELS"
}

for arg in "$@"; do
  case $arg in
    --rehearse) REHEARSE=1 ;;
    --fetch-wheels) fetch_wheels; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    env|build|tests|pau|memory|infer|sanitizer) STEPS+=("$arg") ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (steps: ${ALL_STEPS[*]}; options: --rehearse --fetch-wheels --help)" >&2; exit 64 ;;
  esac
done
if [ ${#STEPS[@]} -eq 0 ]; then STEPS=("${ALL_STEPS[@]}"); elif [ "${STEPS[0]}" != env ]; then STEPS=(env "${STEPS[@]}"); fi
FLAG=(); [ "$REHEARSE" = 1 ] && FLAG=(--rehearse)
if [ -n "${GPU_CHECK_RESULTS:-}" ]; then RESULTS=$GPU_CHECK_RESULTS
elif [ "$REHEARSE" = 1 ]; then RESULTS=benchmarks/results/rehearsal
else RESULTS=benchmarks/results; fi
mkdir -p "$RESULTS" || exit 1
RESULTS=$(cd "$RESULTS" && pwd)
rm -f "$RESULTS"/gpu_*.json "$RESULTS/gpu_steps.tsv"
exec > >(tee "$RESULTS/gpu_check.log") 2>&1
export GPU_CHECK_RESULTS=$RESULTS PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [ -n "${GPU_CHECK_BLOCK:-}" ]; then  # a sitecustomize that makes the named modules unimportable
  BLOCKER=$(mktemp -d)
  cat >"$BLOCKER/sitecustomize.py" <<'EOF'
import importlib.abc, os, sys
_hidden = set(filter(None, os.environ.get("GPU_CHECK_BLOCK", "").split(",")))
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by GPU_CHECK_BLOCK)", name=name)
sys.meta_path.insert(0, _Hide())
EOF
  export PYTHONPATH="$BLOCKER:$PYTHONPATH"
  echo "simulating a python without: $GPU_CHECK_BLOCK"
fi

if compgen -G "$WHEELS/*.whl" >/dev/null; then  # carried wheels for modules this python lacks, offline only
  lacking=$("$PY" -c 'import importlib.util, sys; print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' "${WHEEL_PACKAGES[@]}")
  if [ -n "$lacking" ]; then
    SITE=$(mktemp -d)
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl; then
      export PYTHONPATH="$PYTHONPATH:$SITE"; echo "installed the carried wheels for: $lacking (into $SITE)"
    else
      echo "installing the carried wheels from $WHEELS failed: steps needing $lacking will say so"
    fi
  fi
fi

echo "gpu_check: $(date -u '+%F %T') UTC, python $PY, budget ${BUDGET} s, steps: ${STEPS[*]}${FLAG:+ (rehearsal)}"
for step in "${STEPS[@]}"; do
  left=$((BUDGET - SUMMARY_RESERVE - SECONDS))
  limit=${CAP[$step]}; [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "== $step: skipped, out of time"; printf '%s\t125\t0\t0\n' "$step" >>"$RESULTS/gpu_steps.tsv"; continue
  fi
  echo; echo "== $step (limit ${limit} s, ${SECONDS} s elapsed)"
  start=$SECONDS
  GPU_CHECK_STEP_TIMEOUT=$limit timeout -k 5 "$limit" "$PY" -m benchmarks.gpu_check "$step" "${FLAG[@]}"
  code=$?
  printf '%s\t%s\t%s\t%s\n' "$step" "$code" "$((SECONDS - start))" "$limit" >>"$RESULTS/gpu_steps.tsv"
  [ "$code" = 124 ] || [ "$code" = 137 ] && echo "== $step: timed out after ${limit} s"
  if [ "$step" = env ] && [ "$code" = 2 ]; then
    echo "== no CUDA device: stopping (on the CPU, run: bash benchmarks/gpu_check.sh --rehearse)"
    timeout 60 "$PY" -m benchmarks.gpu_check summary "${FLAG[@]}" --total-seconds "$SECONDS"
    exit 2
  fi
done
timeout 60 "$PY" -m benchmarks.gpu_check summary "${FLAG[@]}" --total-seconds "$SECONDS"
exit $?
