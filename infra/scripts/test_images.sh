#!/usr/bin/env bash
# `make test-images`: runs each built image's entry points as the image's UID, with loopback as the
# only network, a host folder mounted at /tmp/w as a pod volume, and checks the answers
# (tests/images/image_checks.py, mounted read-only; everything it checks comes from the image).
#   torch: the DDP app under torchrun (2 ranks) on a small Parquet sample; serve = predict.
#   tfx:   the trainer module's cluster entry point (2 pods, TF_CONFIG) on a small Transform
#          output; a TFX pipeline on a small sample; serve = predict on its push and a fixture.
#   both:  the files the compiled specs name (-m modules, executables, contract, serve venv).
# Docker runs the image (`--network none --read-only --user`); without Docker, podman mounts the
# image read-only and the step runs in new pid/mount/net/uts/ipc namespaces, chrooted, with the
# UID, no capabilities and no-new-privs set by setpriv (what runAsNonRoot, drop ALL and
# allowPrivilegeEscalation: false give a pod). Writes OUT/test-images/report.json.
#   ENGINE=auto|docker|podman  IMAGE_PREFIX=twinpipe  TAG=dev  STACKS="torch tfx"  OUT=out
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
ENGINE=${ENGINE:-auto}
IMAGE_PREFIX=${IMAGE_PREFIX:-twinpipe}
TAG=${TAG:-dev}
STACKS=${STACKS:-torch tfx}
OUT=${OUT:-out}
case $OUT in /*) REPORT_DIR=$OUT/test-images ;; *) REPORT_DIR=$REPO/$OUT/test-images ;; esac
if [ "$ENGINE" = auto ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
fi
rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
STEPS="$REPORT_DIR/steps.jsonl"
: > "$STEPS"

# run_in IMAGE WORKDIR CMD...: CMD inside IMAGE as its UID; WORKDIR (host) is /tmp/w there.
run_in() {
  local image=$1 work=$2; shift 2
  local user; user=$($ENGINE image inspect -f '{{.Config.User}}' "$image")
  [ -n "$user" ] || { echo "[test-images] $image sets no USER" >&2; return 1; }
  local uid=${user%%:*} gid=${user#*:}
  chown "$uid:$gid" "$work"
  if [ "$ENGINE" = docker ]; then
    docker run --rm --network none --read-only --tmpfs /tmp --tmpfs "/home/twinpipe:uid=$uid" \
      --user "$uid:$gid" --cap-drop ALL --security-opt no-new-privileges --shm-size 1g \
      -v "$work:/tmp/w" -v "$REPO/tests:/tmp/harness/tests:ro" -e PYTHONPATH=/tmp/harness \
      --entrypoint "" --hostname twinpipe-test "$image" "$@"
    return
  fi
  local mnt etc; mnt=$(podman image mount "$image")
  etc=$(mktemp -d)
  printf '127.0.0.1 localhost twinpipe-test\n::1 localhost\n' > "$etc/hosts"
  printf 'nameserver 127.0.0.1\n' > "$etc/resolv.conf"   # no DNS here: names fail fast
  # the image's ENV, as the runtime would set it
  podman image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$image" | sed '/^$/d' > "$etc/env"
  local rc=0
  unshare --pid --fork --mount --net --uts --ipc --propagation private \
    env MNT="$mnt" ETC="$etc" WORK="$work" REPO="$REPO" UID_="$uid" GID_="$gid" bash -c '
      set -e
      ip link set lo up
      hostname twinpipe-test
      mount -t proc proc "$MNT/proc"
      mount --rbind /dev "$MNT/dev"
      mount -t tmpfs -o mode=1777,size=2g tmpfs "$MNT/dev/shm"
      mount -t tmpfs -o mode=1777 tmpfs "$MNT/tmp"
      mount -t tmpfs -o "uid=$UID_,gid=$GID_,mode=755" tmpfs "$MNT/home/twinpipe"
      mkdir -p "$MNT/tmp/w" "$MNT/tmp/harness/tests"
      mount --bind "$WORK" "$MNT/tmp/w"
      mount --bind -o ro "$REPO/tests" "$MNT/tmp/harness/tests"
      mount --bind "$ETC/hosts" "$MNT/etc/hosts"
      mount --bind "$ETC/resolv.conf" "$MNT/etc/resolv.conf"
      mapfile -t envs < "$ETC/env"
      exec chroot "$MNT" /usr/bin/setpriv --reuid="$UID_" --regid="$GID_" --clear-groups \
        --inh-caps=-all --bounding-set=-all --no-new-privs \
        /usr/bin/env -i "${envs[@]}" HOME=/home/twinpipe PYTHONPATH=/tmp/harness \
        sh -c "cd /home/twinpipe && exec \"\$@\"" sh "$@"' bash "$@" || rc=$?
  podman image unmount "$image" >/dev/null 2>&1 || true
  rm -rf "$etc"
  return $rc
}

# step STACK NAME CMD...: one check, timed; its output goes to the console (prefixed) and a log.
step() {
  local stack=$1 name=$2; shift 2
  local image="$IMAGE_PREFIX-$stack:$TAG" log="$REPORT_DIR/$stack-$name.log" start rc=0
  echo "[test-images:$stack] $name ..."
  start=$(date +%s.%N)
  run_in "$image" "$WORK_DIR/$stack" python -m tests.images.image_checks "$@" > "$log" 2>&1 || rc=$?
  local secs; secs=$(python3 -c "import time; print(round(time.time() - $start, 1))")
  grep -v '^RESULT ' "$log" | tail -n 4 | sed "s/^/[test-images:$stack]   /"
  python3 - "$stack" "$name" "$secs" "$rc" "$log" >> "$STEPS" <<'EOF'
import json, sys
stack, name, secs, rc, log = sys.argv[1:]
lines = open(log, errors="replace").read().splitlines()
res = [json.loads(l[7:]) for l in lines if l.startswith("RESULT ")]
print(json.dumps({"stack": stack, "step": name, "seconds": float(secs), "rc": int(rc),
                  "result": res[-1] if res else None, "printed": [l for l in lines if not l.startswith("RESULT ")][-6:]}))
EOF
  if [ "$rc" -ne 0 ]; then
    echo "[test-images:$stack] $name FAILED (exit $rc) after $secs s; the log: $log" >&2
    tail -n 40 "$log" >&2
    FAILED=1
  else
    echo "[test-images:$stack] $name ok ($secs s)"
  fi
}

WORK_DIR=$(mktemp -d /var/tmp/twinpipe-test-images.XXXXXX)
trap 'rm -rf "$WORK_DIR"' EXIT
FAILED=0
FIXTURE=/tmp/harness/tests/fixtures/pushed_before_layout
start_all=$SECONDS
for stack in $STACKS; do
  image="$IMAGE_PREFIX-$stack:$TAG"
  $ENGINE image inspect "$image" >/dev/null 2>&1 || { echo "[test-images] $image is not built: make images" >&2; exit 1; }
  mkdir -p "$WORK_DIR/$stack"
  beam=$($ENGINE image inspect -f '{{index .Config.Labels "io.twinpipe.beam-boot"}}' "$image" 2>/dev/null || true)
  # The operator compiles outside the image (tests/deploy validates the specs); the image must
  # hold what they name.
  for target in kfp vertex; do
    "$REPO/.venv/bin/twinpipe" compile --target "$target" --stack "$stack" "--$stack-image" "$image" \
      --out "$WORK_DIR/$stack/compiled/$target" $([ "$target" = vertex ] && echo --project twinpipe-image-check) \
      > "$REPORT_DIR/$stack-compile-$target.log" 2>&1 \
      || { echo "[test-images:$stack] twinpipe compile --target $target failed:" >&2; tail -20 "$REPORT_DIR/$stack-compile-$target.log" >&2; exit 1; }
  done
  chown -R 10001:10001 "$WORK_DIR/$stack"
  step "$stack" files files --stack "$stack" --image "$image" --beam-boot "$beam"
  if [ "$stack" = torch ]; then
    step torch sample sample --rows 4000
    step torch torch-ddp torch-ddp
    step torch serve serve --stack torch --model "$FIXTURE/torch" --csv "$FIXTURE/rows.csv" \
      --expected "$FIXTURE/torch-expected.csv"
  else
    step tfx tfx-pods tfx-pods --image "$image"
    step tfx tfx-pipeline tfx-pipeline
    step tfx serve-push serve --stack tfx --model /tmp/w/tfx-run/tfx/pushed --csv "$FIXTURE/rows.csv" --tag push
    step tfx serve serve --stack tfx --model "$FIXTURE/tfx" --csv "$FIXTURE/rows.csv" \
      --expected "$FIXTURE/tfx-expected.csv"
  fi
  # the pod volume holds nothing the image's UID did not write
  foreign=$(find "$WORK_DIR/$stack" -mindepth 1 ! -uid 10001 | head -3)
  [ -z "$foreign" ] || { echo "[test-images:$stack] files not owned by uid 10001 in the volume: $foreign" >&2; FAILED=1; }
done
python3 - "$STEPS" "$REPORT_DIR/report.json" "$((SECONDS - start_all))" "$ENGINE" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
json.dump({"engine": sys.argv[4], "seconds": int(sys.argv[3]), "steps": steps,
           "passed": all(s["rc"] == 0 for s in steps)}, open(sys.argv[2], "w"), indent=1)
EOF
if [ "$FAILED" -ne 0 ]; then
  echo "[test-images] FAILED; per-step logs and $REPORT_DIR/report.json" >&2
  exit 1
fi
echo "[test-images] all checks passed in $((SECONDS - start_all)) s ($REPORT_DIR/report.json)"
