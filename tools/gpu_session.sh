#!/usr/bin/env bash
# The GPU checks in one script, for a machine with an NVIDIA GPU, nvcc, PyTorch and the nvidia-cudnn-cu13 /
# nvidia-cublas wheels in its Python, but no package index (such as a lent, offline GPU machine). Run it from
# the repository root with the wheels that are missing there in .whl/ (tools/gpu_carry.sh fetches them on a
# machine with pip access: the oneDNN runtime + devel wheels and pypng).
#
#   bash tools/gpu_session.sh STEPS [ARGS...]      STEPS: comma-separated, run in this order
#     build   install the .whl/ wheels into $PYTHON's environment, then opendl with the CUDA plugin: from a
#             carried .whl/opendl-*.whl when its source fingerprint (.whl/opendl-source.sha1) matches this tree,
#             else built here (pip wheel, all cores), and the new wheel + fingerprint are copied to $OUT so that
#             later calls can carry them instead of building again
#     info    the plugin's status, library versions and GPUs (cuda/plugin_smoke.py runs the plugin self-test)
#     gpu     the GPU tests: every test marked or skipped for want of a GPU (the CPU-vs-GPU consistency table,
#             the device moves, the GPU end-to-end training)
#     all     the whole test suite, as CI runs it, now with a GPU present
#     bench   bench/bench_gpu_train.py ARGS (JSON lines appended to $OUT/bench.jsonl)
#
# Environment: PYTHON (default python3), OUT (default ./gpu_out), PYTEST_ARGS (extra pytest arguments).
# Logs: $OUT/<step>.log. Exit status: that of the first failing step.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/gpu_out}"
mkdir -p "$OUT"
STEPS="${1:-build,info,gpu}"
shift || true
export PYTHONUNBUFFERED=1

source_sha1() {
  find CMakeLists.txt pyproject.toml cmake cpp cuda python -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 2>/dev/null | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-40
}

step_build() {
  local wheels=(.whl/onednn_*.whl .whl/pypng-*.whl)
  if ls "${wheels[@]}" >/dev/null 2>&1; then
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile "${wheels[@]}" || return 1
  else
    echo "gpu_session: no oneDNN / pypng wheels in .whl/ (tools/gpu_carry.sh); assuming they are installed"
  fi
  local sha carried
  sha=$(source_sha1)
  carried=$(ls .whl/opendl-*.whl 2>/dev/null | head -n 1)
  if [ -n "$carried" ] && [ "$(cat .whl/opendl-source.sha1 2>/dev/null)" = "$sha" ]; then
    echo "gpu_session: installing the carried $carried (source fingerprint $sha)"
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --force-reinstall "$carried" || return 1
  else
    [ -n "$carried" ] && echo "gpu_session: $carried was built from other sources; building again"
    local t0 wheeldir=/tmp/opendl-wheel
    t0=$(date +%s)
    rm -rf "$wheeldir"
    # Hopper SASS + portable PTX (the project's default), all cores.
    CMAKE_ARGS="-DOPENDL_WITH_CUDA=ON ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      "$PY" -m pip wheel -v --disable-pip-version-check --no-build-isolation --no-deps -w "$wheeldir" . \
      || return 1
    echo "gpu_session: built in $(($(date +%s) - t0)) s"
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --force-reinstall "$wheeldir"/opendl-*.whl \
      || return 1
    cp "$wheeldir"/opendl-*.whl "$OUT/" && echo "$sha" >"$OUT/opendl-source.sha1"
    ls -la "$OUT"/opendl-*.whl
  fi
  "$PY" - <<'EOF'
import opendl as ha
from opendl import _core
ok, why, code = _core.cuda_status()
print("opendl", ha.__file__, "CUDA plugin:", "loaded" if ok else f"unavailable ({code}: {why})")
EOF
}

step_info() {
  nvidia-smi || true
  "$PY" - <<'EOF'
import os, opendl as ha
from opendl import _core
print("cuda_status:", _core.cuda_status())
for h in ha.query_available_dl_devices([], []):
    print({k: ha.get_dl_device_param(h, k) for k in ("type", "name", "id")})
lib = os.path.join(os.path.dirname(ha.__file__), "lib", "libopendl_cuda.so")
print("plugin:", lib, os.path.exists(lib))
EOF
  local lib
  lib=$("$PY" -c 'import os, opendl; print(os.path.join(os.path.dirname(opendl.__file__), "lib", "libopendl_cuda.so"))')
  "$PY" cuda/plugin_smoke.py "$lib"
}

step_gpu() {
  # The GPU tests are the consistency table and the tests that skip without a GPU; -rs lists what still skipped.
  "$PY" -m pytest -q -rs -p no:cacheprovider tests/python -k "gpu or cuda or device or runtime" ${PYTEST_ARGS:-}
}

step_all() {
  "$PY" -m pytest -q -rs -p no:cacheprovider ${PYTEST_ARGS:-}
}

step_bench() {
  "$PY" bench/bench_gpu_train.py --out "$OUT/bench.jsonl" "$@"
}

rc=0
IFS=',' read -r -a steps <<<"$STEPS"
for s in "${steps[@]}"; do
  case "$s" in
    build | info | gpu | all) ;;
    bench) ;;
    *) echo "gpu_session: unknown step '$s' (build, info, gpu, all, bench)"; exit 2 ;;
  esac
  echo "=== gpu_session: $s ($(date -u +%H:%M:%S))"
  t0=$(date +%s)
  if [ "$s" = bench ]; then
    "step_$s" "$@" 2>&1 | tee "$OUT/$s.log"
  else
    "step_$s" 2>&1 | tee "$OUT/$s.log"
  fi
  r=${PIPESTATUS[0]}
  echo "=== gpu_session: $s exit $r in $(($(date +%s) - t0)) s"
  if [ "$r" != 0 ]; then
    rc=$r
    [ "$s" = build ] && break  # nothing else can run without the build
  fi
done
exit "$rc"
