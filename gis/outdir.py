"""Atomic, locked output folders (输出目录原子替换与加锁).

A run never writes into ``--out`` itself. :func:`atomic_output` takes an
exclusive lock (``.<name>.lock`` beside the folder, an ``fcntl`` lock that the
operating system releases when the process dies, so a killed run leaves no
stale lock), writes into a fresh sibling ``.<name>.tmp-<run id>``, and only when
every output is complete writes ``run_manifest.json`` (run id, and the size and
SHA-256 of each file) and swaps the folder in:

1. ``out`` → ``.<name>.old-<run id>`` (rename),
2. ``.<name>.tmp-<run id>`` → ``out`` (rename),
3. the old folder is deleted.

A kill at any point leaves ``out`` as the previous complete run; only between the
two renames (microseconds) is ``out`` absent, and the next run puts the old
folder back before anything else (:func:`recover`). Stale temporary folders of
killed runs are deleted by the next run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from gis._errors import GisError


#: errno values meaning "this folder cannot take the outputs" (full, read-only, forbidden).
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class OutputLockedError(GisError):
    """Another run is writing into the same output folder."""


def new_run_id() -> str:
    """A run id: UTC time and 8 random hex digits, e.g. ``20261202T210501Z-1a2b3c4d``."""
    return f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _siblings(out: Path, kind: str) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.{kind}-*"))


def recover(out: Path) -> None:
    """Undo what a killed run left: restore an old folder, delete temporary ones.

    Call with the lock held.
    """
    olds = _siblings(out, "old")
    if not out.exists() and olds:
        os.replace(olds[-1], out)  # killed between the two renames: put the previous run back
        olds = olds[:-1]
    for p in olds + _siblings(out, "tmp"):
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold the exclusive lock of output folder ``out`` (refuse if another run holds it)."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(out)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise OutputLockedError(
                    f"{out}: another run (pid {holder}) is writing this output folder; wait for it or choose another --out"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield lock
    finally:
        os.close(fd)  # releases the lock; the lock file itself is harmless and reused


def _lock_path(out: Path) -> Path:
    """The lock file of output folder ``out``: ``.<name>.lock`` beside it."""
    return out.parent / f".{out.name}.lock"


def wait_unlocked(out: str | Path) -> None:
    """Block until no run holds the lock of output folder ``out`` (return at once when none does).

    For callers that share an output folder with other sessions (the app's municipal
    runs): rather than fail on :class:`OutputLockedError`, wait for the other run and
    use its outputs, which are complete once it releases the lock (:func:`atomic_output`).
    """
    import fcntl

    lock = _lock_path(Path(out).absolute())
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # granted once the writer's exclusive lock is released
    finally:
        os.close(fd)


#: From this many bytes of output, :func:`manifest` hashes the files on one thread per core
#: (``hashlib`` lets go of the GIL while it hashes; a million-site run writes ~2.4 GB).
HASH_THREADS_FROM_BYTES = 256 * 2**20


def manifest(folder: Path, run_id: str) -> dict:
    """``{run_id, files: {relative path: {bytes, sha256}}}`` of every file in ``folder``."""
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    sizes = [p.stat().st_size for p in paths]
    if sum(sizes) >= HASH_THREADS_FROM_BYTES and (os.cpu_count() or 1) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            digests = list(pool.map(_sha256, paths))
    else:
        digests = [_sha256(p) for p in paths]
    files = {str(p.relative_to(folder)): {"bytes": n, "sha256": d} for p, n, d in zip(paths, sizes, digests)}
    return {"run_id": run_id, "files": files}


def _sha256(path: Path) -> str:
    """The SHA-256 of a file, read 1 MiB at a time."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def swap_in(tmp: Path, out: Path, run_id: str) -> None:
    """Replace ``out`` by the complete folder ``tmp`` (two renames, then delete the old)."""
    old = out.parent / f".{out.name}.old-{run_id}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_output(out: str | Path, run_id: str | None = None) -> Iterator[tuple[Path, str]]:
    """Write a run's outputs into a temporary sibling and swap it in as ``out`` on success.

    Yields
    ------
    (folder, run_id)
        The temporary folder to write every output into, and the run id to
        record in ``summary.json``.

    Raises
    ------
    OutputLockedError
        Another run holds the lock of ``out``.
    GisError
        The output's parent folder cannot be written (one line, naming it).
    """
    out = Path(out).absolute()
    run_id = run_id or new_run_id()
    try:
        lock_cm = output_lock(out)
        lock_cm.__enter__()
    except PermissionError:
        raise GisError(f"{out.parent}: the output folder cannot be written (permission denied)") from None
    try:
        recover(out)
        tmp = out.parent / f".{out.name}.tmp-{run_id}"
        try:
            tmp.mkdir()
        except OSError as exc:
            raise GisError(f"{out.parent}: cannot create the output folder ({exc.strerror})") from None
        try:
            yield tmp, run_id
            from gis.export import write_json

            write_json(manifest(tmp, run_id), tmp / "run_manifest.json")
            swap_in(tmp, out, run_id)
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            raise GisError(f"{out}: writing the outputs failed ({exc.strerror}); the previous outputs are kept") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock_cm.__exit__(None, None, None)
