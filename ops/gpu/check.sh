#!/usr/bin/env bash
# The GPU path proven on a CUDA machine: what the machine has, what it lacks installed from
# files carried in the working tree, the gpu tests, and the scorer bench on cuda and cpu
# side by side (bench/gpu.json, with speedup_at_4096). ops/gpu/README.md has the sequence.
#
#   ops/gpu/check.sh stage   call 1: inventory; stash ops/gpu/wheels/call1 outside the tree
#   ops/gpu/check.sh run     call 2: join the xgboost parts, install, test, bench
#   ops/gpu/check.sh all     stage then run, when both folders travel in one call
#   ops/gpu/check.sh local   no installs: this Python as it is (e.g. PYTHON=.venv/bin/python)
#
# Results go to $OUT (the device tool's folder that comes back), else var/gpu-check/:
# inventory.txt, pytest.log, bench.log, gpu.json, check.log. Exit status: 0 all passed and
# cuda measured; 1 a test failed or the bench broke; 2 a carried folder is missing; 3 the
# files of call 1 are gone (the machine was given back between the calls) or no CUDA device
# works (the cpu half is still written); 4 an install failed.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT" || exit 2
WHEELS=ops/gpu/wheels
STASH="${FRAUDSTREAM_GPU_STASH:-/tmp/fraudstream-gpu}"
SITE="$STASH/site"
PY="${PYTHON:-python3}"
RESULTS="${OUT:-$ROOT/var/gpu-check}"
TESTS=(tests/gpu tests/unit/models/test_device.py tests/unit/models/test_device_backend.py
  tests/unit/models/test_cli.py)
mkdir -p "$RESULTS"
LOG="$RESULTS/check.log"
export PYTHONUNBUFFERED=1

say() { echo "check: $*" | tee -a "$LOG"; }
die() {
  local code="$1"
  shift
  echo "check: error: $*" | tee -a "$LOG" >&2
  exit "$code"
}

inventory() {
  {
    echo "== machine"
    uname -srm
    nproc
    echo "== nvidia-smi"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
    echo "== $PY"
    "$PY" -VV
    echo "== pip list (what the checks use)"
    "$PY" -m pip list 2>/dev/null | grep -iE '^(numpy|pandas|pyarrow|scipy|matplotlib|pytest|pytest-timeout|hypothesis|cupy[-a-z0-9]*|xgboost|orjson|confluent-kafka|nvidia-nccl[-a-z0-9]*|cuda-pathfinder) '
    echo "== import cupy"
    "$PY" -c 'import cupy; print("cupy", cupy.__version__, "sees", cupy.cuda.runtime.getDeviceCount(), "GPU(s)")' 2>&1 | tail -n 1
    echo "== tools (serve's Kafka and Redis are not needed: the gpu serve test is in-process)"
    for tool in java redis-server xz sha256sum; do command -v "$tool" || echo "$tool: missing"; done
  } >"$RESULTS/inventory.txt" 2>&1
  cat "$RESULTS/inventory.txt"
}

install_wheels() { # every wheel of a carried folder into $SITE
  compgen -G "$1/*.whl" >/dev/null || return 0
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$1"/*.whl || die 4 "pip could not install the wheels of $1"
}

stage() {
  inventory
  [ -d "$WHEELS/call1" ] || die 2 "$WHEELS/call1 did not travel: run ops/gpu/prepare.sh where pip works and carry ops/gpu/wheels/call1"
  rm -rf "$STASH"
  mkdir -p "$STASH/parts" "$SITE"
  cp "$WHEELS"/call1/xgboost.tar.xz.part* "$WHEELS/call1/SHA256SUMS" "$STASH/parts/" || die 2 "$WHEELS/call1 is incomplete"
  install_wheels "$WHEELS/call1"
  say "call 1 staged in $STASH; next, at once (the machine stays about 30 s): carry ops/gpu/wheels/call2, run ops/gpu/check.sh run"
}

unpack_xgboost() {
  [ -f "$STASH/parts/SHA256SUMS" ] || die 3 "call 1's files are not in $STASH: this machine is a fresh one (the last was given back between the calls); run 'ops/gpu/check.sh stage' with ops/gpu/wheels/call1 again, then this"
  [ -d "$WHEELS/call2" ] || die 2 "$WHEELS/call2 did not travel: carry ops/gpu/wheels/call2"
  cp "$WHEELS"/call2/xgboost.tar.xz.part* "$STASH/parts/" || die 2 "$WHEELS/call2 is incomplete"
  (cd "$STASH/parts" && sha256sum --quiet -c SHA256SUMS) || die 4 "the xgboost parts do not match SHA256SUMS: run ops/gpu/prepare.sh again"
  cat "$STASH"/parts/xgboost.tar.xz.part* | "$PY" -c '
import sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|xz") as tar:
    tar.extractall(sys.argv[1], filter="data")
' "$SITE" || die 4 "could not unpack xgboost into $SITE"
  install_wheels "$WHEELS/call2"
}

versions() {
  "$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib
for name in ("numpy", "pandas", "pyarrow", "xgboost", "orjson", "confluent_kafka", "cupy"):
    try:
        module = importlib.import_module(name)
        print(f"check: {name} {getattr(module, '__version__', '?')} from {module.__file__}")
    except Exception as exc:  # every missing piece, not only the first
        print(f"check: {name} cannot be imported: {type(exc).__name__}: {exc}")
import xgboost
print("check: xgboost built with CUDA:", xgboost.build_info().get("USE_CUDA"))
EOF
}

checks() { # $1: the bench's --cuda (cuda: must work; auto: measured when it works)
  export PYTHONPATH="$ROOT${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
  versions
  say "pytest ${TESTS[*]} (log: pytest.log)"
  timeout 240 "$PY" -m pytest -p no:cacheprovider -rA -q "${TESTS[@]}" >"$RESULTS/pytest.log" 2>&1
  local tests=$?
  grep -E '^(PASSED|FAILED|ERROR|SKIPPED)|reasons at|passed|failed|error' "$RESULTS/pytest.log" | tail -n 60 | tee -a "$LOG"
  say "scorer bench, cpu and cuda (log: bench.log)"
  timeout 200 "$PY" ops/bench/scoring_bench.py --cuda "$1" --out "$RESULTS/gpu.json" >"$RESULTS/bench.log" 2>&1
  local bench=$?
  [ "$bench" -eq 0 ] || tail -n 20 "$RESULTS/bench.log" | tee -a "$LOG"
  summary
  if [ "$tests" -ne 0 ] || [ "$bench" -ne 0 ]; then
    die 1 "pytest exited $tests, the bench $bench: see pytest.log and bench.log"
  fi
  if ! grep -q '"batches"' <(python_json cuda); then
    die 3 "no CUDA device works here: the cuda half was skipped (the cpu half is in gpu.json)"
  fi
  say "all passed; copy gpu.json to bench/gpu.json"
}

python_json() { "$PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])).get(sys.argv[2])))' "$RESULTS/gpu.json" "$1" 2>/dev/null; }

summary() {
  [ -s "$RESULTS/gpu.json" ] || return 0
  "$PY" - "$RESULTS/gpu.json" <<'EOF' | tee -a "$LOG"
import json, sys
doc = json.load(open(sys.argv[1]))
cpu = {b["batch"]: b for b in doc["cpu"]["batches"]}
cuda = {b["batch"]: b for b in doc["cuda"].get("batches", [])}
print(f"check: {doc['machine']}")
print(f"check: cuda predictor: {doc['cuda'].get('predictor')}; xgboost's own beside it")
print("check: batch  cpu rows/s (policy)  cuda rows/s  speedup  xgboost cuda  reasons ms/row cpu  cuda")
for n, c in cpu.items():
    g = cuda.get(n)
    on_gpu = f"{g['gpu']['rows_per_s']:>11,.0f}  {g['gpu']['rows_per_s'] / c['policy']['rows_per_s']:>6.1f}x  {g['xgboost_gpu']['rows_per_s']:>12,.0f}" if g else "          -        -             -"
    reasons = f"{g['reasons']['ms_per_row']:.5f}" if g else "-"
    print(f"check: {n:>5}  {c['policy']['rows_per_s']:>19,.0f}  {on_gpu}  {c['reasons']['ms_per_row']:>17.5f}  {reasons}")
print(f"check: speedup_at_4096 = {doc['speedup_at_4096']}; cuda: {doc['cuda'].get('skipped', doc['cuda'].get('device'))}")
if "reasons_on_gpu_from_rows" in doc["cuda"]:
    print(f"check: reasons on the GPU from {doc['cuda']['reasons_on_gpu_from_rows']} rows (None: the table at every size)")
EOF
}

case "${1:-}" in
  stage) stage ;;
  run)
    unpack_xgboost
    checks cuda
    ;;
  all)
    stage
    unpack_xgboost
    checks cuda
    ;;
  local)
    SITE=""
    inventory
    checks auto
    ;;
  *)
    echo "usage: ops/gpu/check.sh stage|run|all|local (see ops/gpu/README.md)" >&2
    exit 2
    ;;
esac
