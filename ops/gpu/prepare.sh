#!/usr/bin/env bash
# Download, here, what the GPU check needs on the device machine and cannot fetch there
# (nothing outside it is reachable), packed to travel in two calls of at most 64 MiB each.
#
#   ops/gpu/prepare.sh [PYTHON_VERSION]      # default 3.12, the device image's python3
#
# The xgboost wheel (about 130 MB, CUDA kernels inside) is unpacked, recompressed with xz
# (about 92 MB) and cut in two parts; call 1 carries part 1 with the small wheels of CALL1,
# call 2 part 2 with those of CALL2. Versions are the ones pinned in constraints.txt; nvidia-nccl,
# which XGBoost loads only for distributed training, is left out. Everything lands in
# ops/gpu/wheels/ (git-ignored): call1/ and call2/ are what the two calls carry.
set -euo pipefail

PY_VERSION="${1:-3.12}"
case "$PY_VERSION" in
  3.11 | 3.12 | 3.13) ;;
  *) echo "error: python version must be 3.11, 3.12 or 3.13, got '$PY_VERSION'" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PIP="${PIP:-.venv/bin/python -m pip}"
WHEELS=ops/gpu/wheels
CALL_LIMIT_MIB=62 # the device tool's limit is 64 MiB a call, working tree included
# What the device image lacks beyond XGBoost: the package imports its Redis store (redis,
# hiredis) and the commands draw progress with rich.
CALL1=(orjson confluent-kafka redis hiredis)
CALL2=(pandas rich markdown-it-py mdurl pygments)

pin() {
  local line
  line="$(grep -iE "^$1==" constraints.txt)" || { echo "error: $1 is not pinned in constraints.txt" >&2; exit 2; }
  echo "$line"
}

download() { # wheels for the device: manylinux x86-64, CPython $PY_VERSION
  $PIP download -q --no-deps --only-binary=:all: --implementation cp \
    --python-version "$PY_VERSION" --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS/cache/$PY_VERSION" "$@"
}

wheel_of() { # the downloaded wheel file of a distribution name
  local stem="${1//-/_}"
  ls "$WHEELS/cache/$PY_VERSION/" | grep -iE "^${stem}-[0-9].*\.whl$" | head -n 1
}

bytes_of() { # total size of the downloaded wheels of these distribution names
  local total=0 name
  for name in "$@"; do
    total=$((total + $(stat -c %s "$WHEELS/cache/$PY_VERSION/$(wheel_of "$name")")))
  done
  echo "$total"
}

mkdir -p "$WHEELS/cache/$PY_VERSION"
rm -rf "$WHEELS/call1" "$WHEELS/call2"
mkdir -p "$WHEELS/call1" "$WHEELS/call2"
echo "downloading for CPython $PY_VERSION: $(pin xgboost) ${CALL1[*]} ${CALL2[*]}"
download "$(pin xgboost)"
for name in "${CALL1[@]}" "${CALL2[@]}"; do download "$(pin "$name")"; done

xgb_wheel="$WHEELS/cache/$PY_VERSION/$(wheel_of xgboost)"
packed="$WHEELS/cache/$(basename "$xgb_wheel" .whl).tar.xz" # py3-none: any CPython
if [ ! -s "$packed" ]; then
  echo "recompressing $(basename "$xgb_wheel") with xz -9 (a few minutes)"
  unpacked="$(mktemp -d)"
  trap 'rm -rf "$unpacked"' EXIT
  (cd "$unpacked" && python3 -m zipfile -e "$ROOT/$xgb_wheel" .)
  tar -C "$unpacked" -cf - . | xz -9 -T0 >"$packed.tmp"
  mv "$packed.tmp" "$packed"
fi
# Cut where both calls carry about as much: part 0 + call 1's wheels = part 1 + call 2's.
first=$((($(stat -c %s "$packed") + $(bytes_of "${CALL2[@]}") - $(bytes_of "${CALL1[@]}")) / 2))
head -c "$first" "$packed" >"$WHEELS/call1/xgboost.tar.xz.part0"
tail -c "+$((first + 1))" "$packed" >"$WHEELS/call2/xgboost.tar.xz.part1"
echo "$(basename "$packed")" >"$WHEELS/call1/XGBOOST"
(cd "$WHEELS/call1" && sha256sum xgboost.tar.xz.part0) >"$WHEELS/call1/SHA256SUMS"
(cd "$WHEELS/call2" && sha256sum xgboost.tar.xz.part1) >>"$WHEELS/call1/SHA256SUMS"
for name in "${CALL1[@]}"; do cp "$WHEELS/cache/$PY_VERSION/$(wheel_of "$name")" "$WHEELS/call1/"; done
for name in "${CALL2[@]}"; do cp "$WHEELS/cache/$PY_VERSION/$(wheel_of "$name")" "$WHEELS/call2/"; done
echo "$PY_VERSION" >"$WHEELS/call1/PYTHON"

# What each call carries: its folder plus the working tree (tracked and untracked files
# that git does not ignore).
tree_bytes="$( (git ls-files -z; git ls-files -z --others --exclude-standard) \
  | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')"
status=0
for call in call1 call2; do
  bytes=$(($(du -sb "$WHEELS/$call" | cut -f1) + tree_bytes))
  mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
  echo "$call: $mib MiB with the working tree ($(ls "$WHEELS/$call" | tr '\n' ' '))"
  if [ "$bytes" -gt $((CALL_LIMIT_MIB * 1048576)) ]; then
    echo "error: $call would carry more than $CALL_LIMIT_MIB MiB" >&2
    status=1
  fi
done
exit "$status"
