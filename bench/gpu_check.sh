#!/usr/bin/env bash
# The prepared GPU check (issue 14): one command for a lent GPU machine. See docs/gpu.md.
#
#   bash bench/gpu_check.sh            # on the GPU machine: results in $OUT (else out/gpu_check)
#   bash bench/gpu_check.sh --dry-run  # on a CPU: the same stages, tiny sizes, gsplat skipped
#
# What it does before bench/gpu_check.py runs (nothing is fetched: that machine has no network):
# - recon itself is used from this checkout through PYTHONPATH (no install, no dependencies);
# - the wheels carried in .whl/ (bench/gpu_wheels.sh downloads them) are installed into
#   /tmp/site without dependencies, as the device tool's README says;
# - a carried gsplat build (.whl/gsplat_build.tar.gz, from an earlier run's $OUT) is unpacked
#   into TORCH_EXTENSIONS_DIR and touched newer than the freshly installed sources, so ninja can
#   reuse it instead of rebuilding (unverified: if it rebuilds, the build time says so);
# - gsplat's JIT build is limited to Hopper (TORCH_CUDA_ARCH_LIST=9.0).
# Environment: PYTHON (default python3), OUT, GPU_CHECK_TIMEOUT (hard limit, default 570 s).
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/recon_torch_extensions}
export MAX_JOBS=${MAX_JOBS:-12}

dry=0
for a in "$@"; do [ "$a" = "--dry-run" ] && dry=1; done

if [ "$dry" = 0 ]; then
  t0=$(date +%s)
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} \
      || echo "gpu_check.sh: installing the wheels in .whl/ failed; gsplat stages will report it"
  else
    echo "gpu_check.sh: no wheels in .whl/ (run bench/gpu_wheels.sh here and carry .whl); gsplat stages will skip"
  fi
  if [ -f .whl/gsplat_build.tar.gz ]; then
    mkdir -p "$TORCH_EXTENSIONS_DIR" && tar -xzf .whl/gsplat_build.tar.gz -C "$TORCH_EXTENSIONS_DIR" \
      && find "$TORCH_EXTENSIONS_DIR" -exec touch {} + && echo "gpu_check.sh: unpacked the carried gsplat build"
  fi
  echo "gpu_check.sh: set-up took $(( $(date +%s) - t0 )) s"
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

limit=${GPU_CHECK_TIMEOUT:-570}
[ "$dry" = 1 ] && limit=${GPU_CHECK_TIMEOUT:-1900}
timeout --signal=TERM --kill-after=10 "$limit" "$PY" bench/gpu_check.py --out "$OUT" "$@" 2>&1 \
  | tee "$OUT/gpu_check.log"
