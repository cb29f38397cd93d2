#!/usr/bin/env bash
# Download, HERE (a machine with the package registry), the wheels the lent GPU machine lacks,
# for its Python 3.12 on x86-64, into .whl/ (git-ignored; the device call carries it: docs/gpu.md).
# The recipe is the device tool's README (Notes). gsplat 1.5.3 is a pure-Python wheel (its CUDA
# sources are JIT-compiled there); its requirements (ninja, numpy, jaxtyping, rich, torch) are all
# installed on that machine already, so it is the only wheel needed. Keep one version per package.
set -eu -o pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
for spec in "gsplat==1.5.3"; do
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$spec"
done
for w in .whl/*.whl; do
  echo "$w: $(du -h "$w" | cut -f1); requires:"
  unzip -p "$w" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' | sed 's/^/  /'
done
echo "total: $(du -sh .whl | cut -f1) (the device call carries at most 64 MiB with the working tree)"
