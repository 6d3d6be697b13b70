#!/usr/bin/env bash
# `make images`: builds twinpipe-tfx and twinpipe-torch from infra/docker/ with Docker where an
# engine answers, otherwise with podman (daemonless, `--isolation chroot`), installing podman and
# debootstrap with apt-get if they are missing. Writes OUT/images/<stack>.json: size, build time,
# layers and the largest installed packages.
#   ENGINE=auto|docker|podman  BASE_IMAGE=auto|IMAGE  BEAM_BOOT=auto|sdk|none
#   IMAGE_PREFIX=twinpipe  TAG=dev  TORCH_CUDA=cpu  STACKS="tfx torch"  OUT=out
set -euo pipefail
cd "$(dirname "$0")/../.."
ENGINE=${ENGINE:-auto}
BASE_IMAGE=${BASE_IMAGE:-auto}
BEAM_BOOT=${BEAM_BOOT:-auto}
IMAGE_PREFIX=${IMAGE_PREFIX:-twinpipe}
TAG=${TAG:-dev}
TORCH_CUDA=${TORCH_CUDA:-cpu}
STACKS=${STACKS:-tfx torch}
OUT=${OUT:-out}
LOCAL_BASE=localhost/twinpipe-base:bookworm
say() { echo "[images] $*"; }

if [ "$ENGINE" = auto ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
if [ "$ENGINE" = podman ] && ! { command -v podman >/dev/null && command -v debootstrap >/dev/null; }; then
  [ "$(id -u)" -eq 0 ] || { echo "[images] no Docker engine, and podman/debootstrap are missing: install them (apt-get install podman debootstrap) or run as root" >&2; exit 1; }
  say "no Docker engine: apt-get install podman debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman debootstrap >/dev/null
fi
say "engine: $ENGINE ($($ENGINE --version 2>/dev/null | head -1))"

pull() { timeout 90 "$ENGINE" pull -q "$1" >/dev/null 2>&1; }
has() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
default_base=$(sed -n 's/^ARG BASE_IMAGE=//p' infra/docker/Dockerfile.tfx)
beam_sdk=$(sed -n 's/^FROM \(\S*\) AS beam-sdk$/\1/p' infra/docker/Dockerfile.tfx)

args=()
if [ "$BASE_IMAGE" = auto ]; then
  if has "$default_base" || pull "$default_base"; then
    BASE_IMAGE=$default_base
  elif [ "$ENGINE" = podman ]; then
    say "cannot pull $default_base: building a Debian bookworm base with debootstrap instead"
    bash infra/scripts/make_base_image.sh "$LOCAL_BASE"
    BASE_IMAGE=$LOCAL_BASE
  else
    echo "[images] cannot pull $default_base; pass BASE_IMAGE=<a Python 3.11 bookworm image>" >&2; exit 1
  fi
fi
if [ "$BEAM_BOOT" = auto ]; then
  if has "$beam_sdk" || pull "$beam_sdk"; then BEAM_BOOT=sdk; else BEAM_BOOT=none; fi
fi
say "base: $BASE_IMAGE; Beam boot launcher: $BEAM_BOOT"
args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "BEAM_BOOT=$BEAM_BOOT")
# Byte-code timestamps follow the locks' last change, so the deps layers stay cached across code
# commits and the same lock gives the same files.
epoch=$(git log -1 --format=%ct -- requirements/ 2>/dev/null || true)
args+=(--build-arg "SOURCE_DATE_EPOCH=${epoch:-0}")

if [ "$ENGINE" = podman ]; then
  # This host's pip settings, passed into the build without entering a layer: the CA bundle pip
  # trusts (an egress proxy's) is bind-mounted; a local wheel folder (the CPU torch wheel) is
  # bind-mounted and PyTorch's index is then not needed.
  if [ -n "${PIP_CERT:-}" ] && [ -r "$PIP_CERT" ]; then
    args+=(-v "$PIP_CERT:/run/twinpipe/ca.crt:ro" --build-arg PIP_CERT=/run/twinpipe/ca.crt)
  fi
  if [ -n "${PIP_FIND_LINKS:-}" ] && [ -d "$PIP_FIND_LINKS" ] \
     && ls "$PIP_FIND_LINKS"/torch-"$(sed -n 's/^torch==\([^ ]*\).*/\1/p' requirements/lock.txt)"-*.whl >/dev/null 2>&1; then
    args+=(-v "$PIP_FIND_LINKS:/run/twinpipe/wheels:ro" --build-arg PIP_FIND_LINKS=/run/twinpipe/wheels --build-arg TORCH_INDEX=)
  fi
  build=(podman build --isolation chroot --layers)
else
  build=(docker build)
fi

mkdir -p "$OUT/images"
for stack in $STACKS; do
  image="$IMAGE_PREFIX-$stack:$TAG"
  extra=()
  [ "$stack" = torch ] && extra+=(--build-arg "TORCH_CUDA=$TORCH_CUDA")
  say "building $image (infra/docker/Dockerfile.$stack)"
  start=$(date +%s.%N)
  set +e
  "${build[@]}" -f "infra/docker/Dockerfile.$stack" "${args[@]}" "${extra[@]}" -t "$image" . 2>&1 \
    | grep --line-buffered -v 'missing ".*" build argument' | sed -u "s/^/[images:$stack] /"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || { echo "[images] building $image failed (exit $rc); its output is above" >&2; exit 1; }
  secs=$(python3 -c "import time; print(round(time.time() - $start, 1))")
  [ "$stack" = tfx ] && [ "$BEAM_BOOT" = none ] && \
    say "WARNING: $image has no Beam boot launcher (label io.twinpipe.beam-boot=none): not usable as Dataflow's SDK container"
  ENGINE=$ENGINE python3 infra/scripts/image_report.py "$image" "$stack" "$secs" > "$OUT/images/$stack.json"
  say "$image: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{d['size_mb']:,} MB, built in {d['build_seconds']} s; largest: \" + ', '.join(f'{k} {v} MB' for k, v in list(d['largest_mb'].items())[:4]))" "$OUT/images/$stack.json")"
done
