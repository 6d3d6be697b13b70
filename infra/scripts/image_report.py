"""What one built image holds: size, layers, and the largest installed packages, as JSON.

    ENGINE=podman python3 infra/scripts/image_report.py IMAGE STACK BUILD_SECONDS

Run by `make images` (infra/scripts/build_images.sh) with the host's Python; stdlib only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SITE = "opt/venv/lib/python3.11/site-packages"


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _du_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return round(total / 2**20, 1)


def _largest(engine: str, image: str) -> dict[str, dict[str, float]]:
    """Top-level folders and site-packages entries by size, read from the mounted image."""
    if engine != "podman":
        return {}
    mnt = Path(_run("podman", "image", "mount", image).strip())
    try:
        parts = {d: _du_mb(mnt / d) for d in ("opt/venv", "opt/venv-serve", "opt/apache", "usr")}
        site = mnt / SITE
        pkgs: dict[str, float] = {}
        for entry in site.iterdir():
            if entry.is_dir() and not entry.name.endswith((".dist-info", "__pycache__")):
                pkgs[entry.name] = _du_mb(entry)
        top = dict(sorted(pkgs.items(), key=lambda kv: -kv[1])[:15])
        return {"folders_mb": parts, "largest_mb": top}
    finally:
        subprocess.run(["podman", "image", "unmount", image], capture_output=True)


def main() -> None:
    image, stack, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
    engine = os.environ.get("ENGINE", "podman")
    info = json.loads(_run(engine, "image", "inspect", image))[0]
    labels = (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}
    history = json.loads(_run(engine, "history", "--format", "json", image)) if engine == "podman" else []
    layers = [
        {"size_mb": round(h.get("size", 0) / 2**20, 1),
         "created_by": (h.get("CreatedBy") or h.get("createdBy") or "")[-120:]}
        for h in history
        if h.get("size", 0) > 0
    ]
    report = {
        "image": image,
        "stack": stack,
        "engine": engine,
        "id": info["Id"][:12],
        "size_mb": round(info["Size"] / 2**20, 1),
        "build_seconds": secs,
        "labels": {k: v for k, v in labels.items() if k.startswith("io.twinpipe.")},
        "layers": layers,
        **_largest(engine, image),
    }
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
