#!/usr/bin/env bash
# Creates .venv-serve (KServe's Python ModelServer, `twinpipe serve`'s HTTP front) from
# requirements/serve.lock.txt. Its own venv because kserve 0.21 needs protobuf>=6 and numpy>=2,
# which the TFX 1.16 lock cannot take (see requirements/serve.in). Idempotent: does nothing when
# the venv's stamp matches the lock's hash.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PYTHON:-python3.11}
VENV=.venv-serve
LOCK=requirements/serve.lock.txt
STAMP="$VENV/.twinpipe-serve-lock.sha256"
want=$(cat "$LOCK" infra/scripts/setup_serve_env.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

echo "[setup] creating $VENV from $LOCK"
command -v uv >/dev/null 2>&1 || export PATH="$HOME/.local/bin:$PATH"
export UV_COMPILE_BYTECODE=1   # no import writes byte-code where PYTHONDONTWRITEBYTECODE is set
rm -rf "$VENV"
uv venv -q --python "$PY" "$VENV"
uv pip install -q --python "$VENV/bin/python" --no-deps --require-hashes -r "$LOCK"
echo "$want" > "$STAMP"
echo "[setup] $VENV ready"
