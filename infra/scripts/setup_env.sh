#!/usr/bin/env bash
# Creates .venv from requirements/lock.txt on a fresh machine. Idempotent: does nothing when the
# venv's stamp matches the lock's hash. TFX 1.16 and ml-pipelines-sdk 1.16 declare
# Requires-Python <3.11 but run on 3.11; they are installed --no-deps on top of the lock, whose
# requirements.in names their dependencies explicitly, from their own hashed lock (tfx-nodeps.txt).
# Every pin carries its sha256 hashes, and uv refuses a file that does not match.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PYTHON:-python3.11}
VENV=.venv
LOCK=requirements/lock.txt
TFX_LOCK=requirements/tfx-nodeps.txt
STAMP="$VENV/.twinpipe-lock.sha256"
# The venv depends on the lock, this script and pyproject's [project] tables (entry points), not
# on tool settings such as ruff's.
want=$( { cat "$LOCK" "$TFX_LOCK" infra/scripts/setup_env.sh; sed -n '/^\[project/,/^\[tool/p' pyproject.toml; } \
  | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/twinpipe" ]; then
  exit 0
fi

echo "[setup] creating $VENV from $LOCK (first run takes a few minutes)"
if ! command -v uv >/dev/null 2>&1; then
  echo "[setup] installing uv from PyPI"
  "$PY" -m pip install --quiet --user uv || "$PY" -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
# The CPU torch wheel lies in the folder PIP_FIND_LINKS names on these machines; uv does not read
# that variable, so pass it on. Without it, torch would come from PyPI with CUDA packages.
find_links=()
if [ -n "${PIP_FIND_LINKS:-}" ]; then
  for d in $PIP_FIND_LINKS; do find_links+=(--find-links "$d"); done
fi

# Byte-code is compiled at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE is
# set (as on these machines) no import ever writes it, so every process would compile TensorFlow,
# Beam and TFX from source again (31.5 s to import them, 12.9 s with byte-code).
export UV_COMPILE_BYTECODE=1
rm -rf "$VENV"
uv venv --seed --python "$PY" "$VENV" >/dev/null
uv pip install --python "$VENV/bin/python" --no-deps --require-hashes "${find_links[@]}" -r "$LOCK"
uv pip install --python "$VENV/bin/python" --no-deps --require-hashes -r "$TFX_LOCK"
uv pip install --python "$VENV/bin/python" --no-deps --no-build-isolation -e .
echo "$want" > "$STAMP"
echo "[setup] $VENV ready"
