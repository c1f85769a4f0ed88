#!/usr/bin/env bash
# The GPU device check, one command from the repo root:
#   bash bench/device_check.sh [--smoke] [--out DIR] [--budget-s S] [--tests F,F|none]
# Installs carried wheels (wheels/*.whl) when ml_collections is missing, sets
# the XLA/JAX environment, runs bench/device_check/ (python -m); the table goes to
# $OUT/device_check.md (or --out DIR, else bench/device_check.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import ml_collections' 2>/dev/null; then
  if compgen -G 'wheels/*.whl' >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/dash_jax_site wheels/*.whl
    export PYTHONPATH="/tmp/dash_jax_site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "error: ml_collections is missing and wheels/ holds no wheels; on a machine" \
         "with network: pip download --no-deps -d wheels/ ml_collections" >&2
    exit 2
  fi
fi

export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
if [[ " $* " == *" --smoke "* ]]; then
  export JAX_PLATFORMS=cpu
else
  # Let JAX take memory as it goes: the processes section shares the GPU.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
fi
exec python3 -m bench.device_check "$@"
