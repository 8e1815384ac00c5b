#!/usr/bin/env bash
# CI check that the CUDA plugin (cuda/) compiles: when nvcc is on PATH, installs cuDNN and cuBLAS from the
# nvidia wheels into the given Python environment, configures a separate build with OPENDL_WITH_CUDA=ON and
# builds only the target opendl_cuda, then smoke-tests the plugin through its C ABI (a GPU-less runner only
# checks that the plugin reports "no GPU" cleanly). Without nvcc it says so and succeeds.
# Usage: tools/ci_cuda_check.sh [PYTHON] [BUILD_DIR]   (env: JOBS, default nproc; run under `nice` if needed)
set -euo pipefail

PY="${1:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${2:-$ROOT/build/cuda-check}"
JOBS="${JOBS:-$(nproc)}"

if ! command -v nvcc >/dev/null 2>&1; then
  echo "ci_cuda_check: nvcc not on PATH, CUDA compile check skipped"
  exit 0
fi
start=$(date +%s)
echo "ci_cuda_check: $(nvcc --version | tail -n 1), python $("$PY" -c 'import sys; print(sys.executable)')"

# cuDNN 9 for CUDA 13 and cuBLAS 13 (~520 MB + ~445 MB downloads). --no-deps skips nvidia-cuda-nvrtc, which
# only cuDNN's runtime-compiled engines need, not the build.
pkgs=("nvidia-cudnn-cu13>=9.12,<10" "nvidia-cublas>=13.0,<14")
# The top-level CMakeLists needs oneDNN's CMake config; a runtime-only environment (onednn-cpu-gomp, as after
# `pip install .`) lacks it, so add the matching 190 kB devel wheel.
if ! "$PY" - <<'PYEOF'
import os, sys
roots = [sys.prefix] + [os.path.abspath(os.path.join(p, "..", "..", "..")) for p in sys.path if p.endswith("site-packages")]
sys.exit(0 if any(os.path.isdir(os.path.join(r, "lib", "cmake", "dnnl")) for r in roots) else 1)
PYEOF
then
  onednn=$("$PY" -c 'from importlib.metadata import version; print(version("onednn-cpu-gomp"))' 2>/dev/null || echo 2023.2.0)
  pkgs+=("onednn-devel-cpu-gomp==$onednn" "onednn-cpu-gomp==$onednn")
fi
"$PY" -m pip install --disable-pip-version-check --no-deps "${pkgs[@]}"
t_pip=$(date +%s)

gen=()
command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD/CMakeCache.txt" ] && gen=(-G Ninja)
cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DOPENDL_WITH_CUDA=ON \
  -DOPENDL_BUILD_PYTHON=OFF -DOPENDL_BUILD_TESTS=OFF -DPython3_EXECUTABLE="$PY"
cmake --build "$BUILD" --target opendl_cuda -j "$JOBS"
t_build=$(date +%s)

plugin="$BUILD/libopendl_cuda.so"
missing=0
for sym in opendl_cuda_abi_version opendl_cuda_device_count opendl_cuda_device_info opendl_cuda_versions \
           opendl_cuda_selftest opendl_cuda_backend_create opendl_cuda_backend_destroy \
           opendl_cuda_backend_take_error opendl_cuda_backend_set_options opendl_cuda_backend_synchronize; do
  nm -D --defined-only "$plugin" | grep -qw "$sym" || { echo "ci_cuda_check: $plugin does not export $sym"; missing=1; }
done
exported=$(nm -D --defined-only "$plugin" | awk '$2 ~ /[TDBW]/' | grep -vc ' opendl_cuda_' || true)
echo "ci_cuda_check: exported symbols besides opendl_cuda_*: $exported"
[ "$missing" = 0 ]
"$PY" "$ROOT/cuda/plugin_smoke.py" "$plugin"
# The index math of the GPU's gather-form backward passes against the CPU's scatter form (host code, no GPU).
c++ -std=c++17 -O1 -I"$ROOT/cpp/src" "$ROOT/cuda/checks/gather_index_check.cpp" -o "$BUILD/gather_index_check"
"$BUILD/gather_index_check"
# The index math of channels-last activations and cuDNN filter orders against backend.h's layouts (host code).
c++ -std=c++17 -O1 -I"$ROOT/cpp/src" "$ROOT/cuda/checks/layout_index_check.cpp" -o "$BUILD/layout_index_check"
# The box proposals' NMS (bit masks, greedy scan per image) against a two-pass reference (host code).
c++ -std=c++17 -O1 -I"$ROOT/cpp/src" -I"$ROOT/cuda" "$ROOT/cuda/checks/proposal_nms_check.cpp" -o "$BUILD/proposal_nms_check"
"$BUILD/proposal_nms_check"
"$BUILD/layout_index_check"

echo "ci_cuda_check: ok (pip $((t_pip - start)) s, configure+build $((t_build - t_pip)) s, total $(($(date +%s) - start)) s)"
