#!/usr/bin/env bash
# The infrastructure checkers in their own venv (.venv-tools): checkov's dependency set clashes
# with the TFX lock (protobuf, pydantic...). Idempotent; prints the venv's bin folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOLS=.venv-tools
PINS="checkov==3.3.30 kubernetes-validate==1.37.0"
if [ ! -x "$TOOLS/bin/checkov" ] || [ "$(cat "$TOOLS/.pins" 2>/dev/null)" != "$PINS" ]; then
  command -v uv >/dev/null 2>&1 || export PATH="$HOME/.local/bin:$PATH"
  rm -rf "$TOOLS"
  uv venv -q --python "${PYTHON:-python3.11}" "$TOOLS" >&2
  # shellcheck disable=SC2086
  uv pip install -q --python "$TOOLS/bin/python" $PINS >&2
  echo "$PINS" > "$TOOLS/.pins"
fi
echo "$PWD/$TOOLS/bin"
