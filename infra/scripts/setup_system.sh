#!/usr/bin/env bash
# Debian packages the project needs beyond Python: chromium (the report test renders the HTML
# report headless and takes a screenshot) and iproute2 (`ip netns`: the multi-host and TF-on-GCS
# tests run hosts as network namespaces). Idempotent; a no-op once installed.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo -n"
else
  echo "[setup] missing Debian packages: ${need[*]} (not root, no sudo): install them, e.g." \
       "apt-get install -y ${need[*]}" >&2
  exit 0
fi
echo "[setup] apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
  # Not fatal: everything else still installs and runs; the report's browser test says what is
  # missing.
  echo "[setup] apt-get could not install ${need[*]}; install them by hand" >&2
fi
