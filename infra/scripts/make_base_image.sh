#!/usr/bin/env bash
# Builds the local base image the Dockerfiles' BASE_IMAGE names where the official Python image
# cannot be pulled: Debian bookworm (Python 3.11, the lock's) from the Debian mirror apt already
# uses, by debootstrap, imported into podman. Idempotent: skips when the image exists and was made
# by this script's current text.
#   bash infra/scripts/make_base_image.sh [IMAGE]      (default localhost/twinpipe-base:bookworm)
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE=${1:-localhost/twinpipe-base:bookworm}
SHA=$(sha256sum infra/scripts/make_base_image.sh | cut -c1-16)

if podman image exists "$IMAGE" \
   && [ "$(podman image inspect -f '{{index .Labels "io.twinpipe.base-script"}}' "$IMAGE")" = "$SHA" ]; then
  echo "[images] base $IMAGE is up to date"
  exit 0
fi
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DIR=$(mktemp -d /var/tmp/twinpipe-base.XXXXXX)
trap 'umount "$DIR/proc" 2>/dev/null || true; rm -rf --one-file-system "$DIR"' EXIT
echo "[images] debootstrap bookworm (minbase + python3.11) from $MIRROR"
start=$SECONDS
# minbase has dash, apt, passwd (useradd), util-linux (setpriv) and libstdc++; the rest is what the
# images need: Python with venv, CA certificates (TLS to gs:// and registries), netbase
# (/etc/services for gRPC) and tzdata.
debootstrap --variant=minbase --components=main \
  --include=python3.11,python3-venv,python-is-python3,ca-certificates,netbase,tzdata \
  bookworm "$DIR" "$MIRROR" > "$DIR.log" 2>&1 || { tail -20 "$DIR.log" >&2; rm -f "$DIR.log"; exit 1; }
rm -f "$DIR.log"
security=${MIRROR%/debian}/debian-security
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
  "$MIRROR" "$MIRROR" "$security" > "$DIR/etc/apt/sources.list"
# Security and point-release updates, so the base is patched like the official image (and the
# build stages' apt-get does not upgrade Python under the venv).
mount -t proc proc "$DIR/proc"
{ chroot "$DIR" apt-get update -qq && DEBIAN_FRONTEND=noninteractive chroot "$DIR" apt-get upgrade -y -qq; } \
  > "$DIR.log" 2>&1 || { tail -20 "$DIR.log" >&2; rm -f "$DIR.log"; echo "[images] apt-get upgrade in the base failed" >&2; exit 1; }
rm -f "$DIR.log"
umount "$DIR/proc"
chroot "$DIR" dpkg-query -W > "$DIR/etc/twinpipe-base.packages"   # what the base holds, by version
rm -rf "$DIR"/var/lib/apt/lists/* "$DIR"/var/cache/apt/*.bin "$DIR"/var/cache/apt/archives/*.deb \
       "$DIR"/usr/share/doc/* "$DIR"/usr/share/man/* "$DIR"/usr/share/info/*
tar --numeric-owner --sort=name -C "$DIR" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
  --change "LABEL io.twinpipe.base-script=$SHA" -q - "$IMAGE" >/dev/null
echo "[images] base $IMAGE made in $((SECONDS - start)) s ($(chroot "$DIR" python3 --version))"
