"""One filesystem layer for every stage's I/O: local paths and object-store URLs alike.

Why a layer: ``pathlib.Path("gs://b/x")`` is the relative path ``gs:/b/x`` — a run with
``--out gs://bucket/prefix`` would silently write into a local folder called ``gs:``. Every
twinpipe module that reads or writes run data goes through these functions instead; they take and
return *strings* (a URL stays a URL), and dispatch on the scheme:

* local paths (and ``file://``) — the standard library, as before: whole-file writes go to a
  temporary file in the same folder and are renamed into place, so a reader never sees half a file;
* ``gs://`` — fsspec's ``gcsfs``. One object upload is atomic on GCS (a reader sees the old object
  or the new one), so writes are single uploads. There is no rename and no symlink: callers that
  publish a group of objects (spans, a pushed model) write a marker object *last* and readers go
  by the marker (see :mod:`components.common.registry`, :func:`components.common.ingest`).

Credentials: when ``STORAGE_EMULATOR_HOST`` is set (tests, the emulator on loopback) the client is
anonymous and talks to that endpoint; otherwise gcsfs uses Application Default Credentials (the
pod's Workload Identity on GKE, the Vertex job's service account, ``gcloud auth
application-default login`` on a laptop). Nothing here takes a key file or logs a token.

Listing caches are off (``use_listings_cache=False``): stages list what they have just written
(span folders, registry versions), and a stale directory cache would hide it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

REMOTE_SCHEMES = ("gs", "gcs")


def is_remote(url: str | os.PathLike) -> bool:
    """True for an object-store URL (``gs://...``), False for a local path or ``file://``."""
    s = os.fspath(url)
    return "://" in s and s.split("://", 1)[0].lower() in REMOTE_SCHEMES


def _local(url: str | os.PathLike) -> str:
    s = os.fspath(url)
    return s[len("file://"):] if s.startswith("file://") else s


def _check_scheme(url: str) -> None:
    if "://" in url and not is_remote(url) and not url.startswith("file://"):
        raise ValueError(f"{url}: unsupported storage scheme (supported: local paths, gs://)")


def gcs():
    """The gcsfs filesystem, pointed at ``STORAGE_EMULATOR_HOST`` (anonymous) when that is set.

    The endpoint is passed explicitly so fsspec's instance cache keys on it: a test that starts a
    new emulator on another port gets a new client, not one still talking to the old port."""
    import gcsfs

    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator and emulator != "default":
        if "://" not in emulator:
            emulator = f"http://{emulator}"
        return gcsfs.GCSFileSystem(token="anon", endpoint_url=emulator,
                                   use_listings_cache=False)
    return gcsfs.GCSFileSystem(use_listings_cache=False)


def _key(url: str) -> str:
    """``gs://bucket/a/b`` -> ``bucket/a/b`` (what gcsfs calls a path)."""
    return url.split("://", 1)[1].rstrip("/")


def _url(key: str) -> str:
    return "gs://" + key.lstrip("/")


def join(url: str | os.PathLike, *parts: str) -> str:
    """Joins path parts; ``gs://`` URLs keep their double slash (never ``gs:/``)."""
    s = os.fspath(url)
    if is_remote(s):
        tail = "/".join(p.strip("/") for p in parts if p not in ("", "/"))
        return s.rstrip("/") + ("/" + tail if tail else "")
    return os.path.join(s, *parts)


def basename(url: str | os.PathLike) -> str:
    return os.fspath(url).rstrip("/").rsplit("/", 1)[-1]


def parent(url: str | os.PathLike) -> str:
    s = os.fspath(url).rstrip("/")
    if is_remote(s):
        head = s.rsplit("/", 1)[0]
        return head if "://" in head and head.split("://", 1)[1] else s
    return os.path.dirname(s)


def exists(url: str | os.PathLike) -> bool:
    s = os.fspath(url)
    if is_remote(s):
        return gcs().exists(_key(s))
    _check_scheme(s)
    return os.path.exists(_local(s))


def isdir(url: str | os.PathLike) -> bool:
    """A local folder, or an object-store prefix that holds at least one object."""
    s = os.fspath(url)
    if is_remote(s):
        fs = gcs()
        fs.invalidate_cache()
        return fs.isdir(_key(s))
    return os.path.isdir(_local(s))


def isfile(url: str | os.PathLike) -> bool:
    s = os.fspath(url)
    if is_remote(s):
        return gcs().isfile(_key(s))
    return os.path.isfile(_local(s))


def listdir(url: str | os.PathLike) -> list[str]:
    """Names (not paths) directly under ``url``, sorted; [] when it does not exist."""
    s = os.fspath(url)
    if is_remote(s):
        fs = gcs()
        fs.invalidate_cache()
        try:
            entries = fs.ls(_key(s), detail=False)
        except FileNotFoundError:
            return []
        me = _key(s)
        return sorted({basename(e) for e in entries if e.rstrip("/") != me})
    p = _local(s)
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


def glob(pattern: str | os.PathLike) -> list[str]:
    """Paths or URLs matching ``pattern`` (``*``, ``?``, ``[..]``; ``**`` recursive), sorted."""
    s = os.fspath(pattern)
    if is_remote(s):
        fs = gcs()
        fs.invalidate_cache()
        return sorted(_url(k) for k in fs.glob(_key(s)))
    import glob as _glob

    return sorted(_glob.glob(_local(s), recursive=True))


def find(url: str | os.PathLike) -> list[str]:
    """Every file under ``url`` (recursively), as paths/URLs, sorted."""
    s = os.fspath(url)
    if is_remote(s):
        fs = gcs()
        fs.invalidate_cache()
        return sorted(_url(k) for k in fs.find(_key(s)))
    root = _local(s)
    if os.path.isfile(root):
        return [root]
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def makedirs(url: str | os.PathLike) -> None:
    """Creates a local folder (and parents). On object storage folders are implicit: no-op."""
    s = os.fspath(url)
    if not is_remote(s):
        _check_scheme(s)
        os.makedirs(_local(s), exist_ok=True)


def read_bytes(url: str | os.PathLike) -> bytes:
    s = os.fspath(url)
    if is_remote(s):
        return gcs().cat_file(_key(s))
    with open(_local(s), "rb") as f:
        return f.read()


def read_text(url: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(url).decode(encoding)


def read_json(url: str | os.PathLike) -> Any:
    return json.loads(read_bytes(url))


def write_bytes(url: str | os.PathLike, data: bytes) -> None:
    """Writes a whole file/object at once. Local: temp file in the same folder + rename (atomic
    for readers); object store: one upload (atomic by itself)."""
    s = os.fspath(url)
    if is_remote(s):
        gcs().pipe_file(_key(s), data)
        return
    _check_scheme(s)
    p = _local(s)
    folder = os.path.dirname(p) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(p)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # as open() would make it, not mkstemp's 0600: other readers' uids
        os.replace(tmp, p)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


def write_text(url: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    write_bytes(url, text.encode(encoding))


def write_json(url: str | os.PathLike, doc: Any, indent: int | None = 2) -> None:
    write_text(url, json.dumps(doc, indent=indent, default=str))


def create_new(url: str | os.PathLike, data: bytes) -> bool:
    """Creates ``url`` holding ``data`` only if nothing exists there; True when this call created
    it. Race-free: a hard link of a complete temporary file locally (the link fails when ``url``
    exists), an upload with the precondition
    ``ifGenerationMatch=0`` on GCS (the service refuses it with 412 when the object exists).
    The mutex primitive of the run lock and of registry version names."""
    s = os.fspath(url)
    if is_remote(s):
        try:
            gcs().pipe_file(_key(s), data, mode="create")
        except FileExistsError:
            return False
        return True
    p = _local(s)
    os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    # Written whole beside it, then linked in place: the link fails when ``p`` exists, and a
    # reader never sees ``p`` empty or half-written (O_EXCL then write would let it).
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(p)}.", dir=os.path.dirname(p) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.link(tmp, p)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def open(url: str | os.PathLike, mode: str = "rb", **kwargs) -> IO:  # noqa: A001 (the layer's open)
    """A file object (binary or text, per ``mode``). Writing to GCS uploads on close."""
    s = os.fspath(url)
    if is_remote(s):
        return gcs().open(_key(s), mode, **kwargs)
    _check_scheme(s)
    if any(m in mode for m in "wa"):
        os.makedirs(os.path.dirname(_local(s)) or ".", exist_ok=True)
    import builtins

    return builtins.open(_local(s), mode, **kwargs)


def rm(url: str | os.PathLike, recursive: bool = False) -> None:
    """Removes a file/object, or with ``recursive`` a whole folder/prefix; missing is fine."""
    s = os.fspath(url)
    if is_remote(s):
        fs = gcs()
        fs.invalidate_cache()
        try:
            if recursive:
                keys = fs.find(_key(s))
                if fs.isfile(_key(s)):
                    keys.append(_key(s))
                if keys:
                    fs.rm(keys)
            else:
                fs.rm_file(_key(s))
        except FileNotFoundError:
            pass
        return
    p = _local(s)
    if os.path.isdir(p) and not os.path.islink(p):
        if recursive:
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.rmdir(p)
    else:
        with _suppress():
            os.unlink(p)


def upload(local: str | os.PathLike, url: str | os.PathLike) -> list[str]:
    """Copies a local file, or a folder's files (keeping relative paths), to ``url``; returns the
    written URLs. Works for a local ``url`` too (a plain copy), so callers need no branch."""
    src, dst = _local(os.fspath(local)), os.fspath(url)
    if os.path.isfile(src):
        pairs = [(src, dst)]
    else:
        pairs = [(f, join(dst, *os.path.relpath(f, src).split(os.sep))) for f in find(src)]
    if is_remote(dst):
        fs = gcs()
        for f, u in pairs:
            fs.put_file(f, _key(u))
    else:
        for f, u in pairs:
            os.makedirs(os.path.dirname(_local(u)) or ".", exist_ok=True)
            shutil.copy2(f, _local(u))
    return [u for _, u in pairs]


def download(url: str | os.PathLike, local: str | os.PathLike) -> str:
    """Copies an object, or every object under a prefix (keeping relative paths), to ``local``;
    returns ``local``. A local ``url`` is copied too."""
    src, dst = os.fspath(url), _local(os.fspath(local))
    if not is_remote(src):
        s = _local(src)
        if os.path.isdir(s):
            shutil.copytree(s, dst, dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
            shutil.copy2(s, dst)
        return dst
    fs = gcs()
    fs.invalidate_cache()
    if fs.isfile(_key(src)):
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        fs.get_file(_key(src), dst)
        return dst
    root = _key(src)
    for k in fs.find(root):
        target = os.path.join(dst, *k[len(root):].lstrip("/").split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.get_file(k, target)
    return dst


def pyarrow_fs(url: str | os.PathLike):
    """``(pyarrow filesystem, path)`` for pyarrow readers/writers (``pq.read_table(path,
    filesystem=fs)``, ``pyarrow.dataset``): the local filesystem, or gcsfs wrapped for Arrow."""
    import pyarrow.fs as pafs

    s = os.fspath(url)
    if is_remote(s):
        return pafs.PyFileSystem(pafs.FSSpecHandler(gcs())), _key(s)
    return pafs.LocalFileSystem(), os.path.abspath(_local(s))


class _suppress:
    """``contextlib.suppress(OSError)`` without the import at module scope."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et, ev, tb) -> bool:
        return et is not None and issubclass(et, OSError)


def walk_files(url: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(path or URL, path relative to url with '/')`` of every file under ``url``."""
    root = os.fspath(url).rstrip("/")
    for f in find(root):
        rel = f[len(root):].lstrip("/") if is_remote(root) else os.path.relpath(f, _local(root))
        yield f, rel.replace(os.sep, "/")
