#!/usr/bin/env bash
# Fetches, on a machine with pip access, the wheels that tools/gpu_session.sh installs on an offline GPU machine
# whose Python already holds PyTorch, scikit-build-core, pybind11, numpy, Pillow, tqdm, matplotlib, tifffile
# and the nvidia-cudnn-cu13 / nvidia-cublas wheels: the oneDNN runtime and devel wheels (pinned as in
# pyproject.toml) and pypng. They go to .whl/ (git-ignored, about 40 MB) for Python 3.12 on x86-64 Linux.
#   bash tools/gpu_carry.sh [PYTHON_VERSION]      (default 3.12)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYV="${1:-3.12}"
onednn=$(sed -n 's/.*"onednn-cpu-gomp==\([0-9.]*\)".*/\1/p' pyproject.toml | head -n 1)
pypng=$(sed -n 's/.*"pypng>=\([0-9.]*\)".*/\1/p' pyproject.toml | head -n 1)
mkdir -p .whl
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYV" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  "onednn-cpu-gomp==$onednn" "onednn-devel-cpu-gomp==$onednn" "pypng==${pypng}.0"
ls -la .whl
du -sh .whl
