"""One step of the main job run in a child process while the caller runs the others (the caller's side).

``gis run`` has two cores' worth of work only at its end (the map sheets); while the
caller runs compliance and coverage, the second core is idle. A step that needs nothing
but the loaded district (``hotspots``) can run there. :class:`BackgroundStep` forks the
caller where the platform forks cleanly (Linux and the BSDs): the child starts with the
caller's imports and the loaded district in memory, runs the step and writes an answer
pickle; elsewhere it spawns ``python -m gis.step_worker`` (:mod:`gis.step_worker`) and hands
it the district and the step's name as a pickle. Either way the child writes the step's
files into the same output folder, and :meth:`BackgroundStep.result` collects the step's
summary keys and results (:class:`gis.steps.RunContext` attributes) when the caller needs them.

When the child fails (it cannot start, a pickle does not load, the analysis raises),
:meth:`BackgroundStep.result` returns None and the caller runs the step itself, so an
error in the data is reported as it would be without the worker.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gis.district import District

__all__ = ["BackgroundStep", "ForkedGrid", "ForkedWrite", "can_fork", "fork_child", "reap"]

Answer = tuple[dict[str, Any], dict[str, Any], float]


class BackgroundStep:
    """A step of the main job running in a child process.

    Parameters
    ----------
    name
        Step name (:data:`gis.steps.STEPS`); it must need nothing but ``load``.
    district
        The loaded district (pickled to a spawned worker).
    out
        Output folder the step writes into.
    run
        ``run() -> (summary keys, results, seconds)``: the step, called in a forked child
        (:func:`gis.steps.run_alone` on the district). None, or a platform that does not
        fork cleanly (:func:`can_fork`): a spawned ``python -m gis.step_worker``.

    Examples
    --------
    >>> job = BackgroundStep("hotspots", district, Path("out"))   # doctest: +SKIP
    >>> summary, results, seconds = job.result()                   # doctest: +SKIP
    >>> sorted(results)                                            # doctest: +SKIP
    ['hotspot_problems', 'hotspots']
    """

    def __init__(self, name: str, district: District, out: Path, *, run: Callable[[], Answer] | None = None) -> None:
        self.name = name
        self._taken, self._value = False, None
        self._scratch = tempfile.TemporaryDirectory(prefix="gis_step_")
        folder = Path(self._scratch.name)
        self._answer = folder / "result.pickle"
        self._stderr = open(folder / "stderr.txt", "w+b")  # noqa: SIM115 (closed in result / cancel)
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        if run is not None and can_fork():
            self._pid = self._fork(run)
            return
        task = folder / "task.pickle"
        task.write_bytes(pickle.dumps((name, district, str(out), str(self._answer)), protocol=pickle.HIGHEST_PROTOCOL))
        root = str(Path(__file__).resolve().parent.parent)  # this copy of gis
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._proc = subprocess.Popen([sys.executable, "-m", "gis.step_worker", str(task)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env)

    def _fork(self, run: Callable[[], Answer]) -> int:
        """Fork; the child calls ``run`` and writes the answer pickle (a failure's traceback to the stderr file)."""

        def report(trace: str) -> None:
            self._stderr.write(trace.encode(errors="replace"))
            self._stderr.flush()

        return fork_child(lambda: write_answer(run(), self._answer), report)

    def _wait(self) -> int:
        """The child's exit status, once it has ended."""
        if self._pid is not None:
            return reap(self._pid)
        assert self._proc is not None
        return self._proc.wait()

    def result(self) -> Answer | None:
        """Wait for the child: (summary keys, results, the step's seconds in the child), or None when it failed.

        The scratch folder is removed either way; a second call gives the same answer.
        """
        if self._taken:
            return self._value
        try:
            code = self._wait()
            if code == 0 and self._answer.exists():
                self._value = pickle.loads(self._answer.read_bytes())  # written by write_answer, in our scratch folder
            return self._value
        finally:
            self._taken = True
            self._stderr.close()
            self._scratch.cleanup()

    def cancel(self) -> None:
        """Stop the child (the caller failed) and remove the scratch folder; nothing once its result is taken."""
        import signal

        if self._taken:
            return
        self._taken = True
        if self._pid is not None:
            os.kill(self._pid, signal.SIGKILL)
        elif self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._wait()
        self._stderr.close()
        self._scratch.cleanup()


class ForkedWrite:
    """A file write done in a child forked from the caller while the caller goes on.

    A lean ``gis run`` (:attr:`gis.steps.RunContext.lean`) writes a step's files when the
    step ends: GDAL's GeoPackage writer and the workbook writer hold one core for tens of
    seconds at a million sites while the second core is idle. The child starts with the
    caller's memory (copy-on-write: the layers are not copied or pickled), calls ``write``
    and leaves with ``os._exit``; the caller drops its references and goes on with the next
    step. :meth:`wait` raises when the write failed. Only where :func:`can_fork`.

    Parameters
    ----------
    write
        The write (e.g. a closure over the layers and :func:`gis.export.write_gpkg`).
    label
        What is written (error messages).

    Examples
    --------
    >>> job = ForkedWrite(lambda: write_gpkg(layers, out / "sites.gpkg"), "sites.gpkg")  # doctest: +SKIP
    >>> job.wait()                                                                          # doctest: +SKIP
    """

    def __init__(self, write: Callable[[], Any], label: str) -> None:
        self.label = label
        self._done = False
        read_end, write_end = os.pipe()  # the child reports a failure on it
        pid = fork_child(write, lambda trace: os.write(write_end, trace.encode(errors="replace")[-4000:]))
        os.close(write_end)
        self._pid, self._pipe = pid, read_end

    def wait(self) -> None:
        """Wait for the child; raise :class:`gis._errors.GisError` (its last error line) if the write failed."""
        if self._done:
            return
        chunks = []
        while chunk := os.read(self._pipe, 65536):  # until the child exits (its end of the pipe closes)
            chunks.append(chunk)
        os.close(self._pipe)
        code = reap(self._pid)
        self._done = True
        if code != 0:
            from gis._errors import GisError

            lines = b"".join(chunks).decode(errors="replace").strip().splitlines()
            raise GisError(f"writing {self.label} failed: {lines[-1] if lines else f'exit status {code}'}")

    def cancel(self) -> None:
        """Stop the child (the run failed); nothing once it has been waited for."""
        import signal

        if self._done:
            return
        self._done = True
        os.kill(self._pid, signal.SIGKILL)
        reap(self._pid)
        os.close(self._pipe)


class ForkedGrid:
    """A numpy grid filled by ``fill(grid)`` in a forked child, in memory shared with the caller.

    The grid (``int32``, zeros) lives in an anonymous shared mapping made before the fork,
    so the child's pixels need no pickle or file; the caller does its own part meanwhile
    (:func:`gis.map_scale.burn_mercator` burns the two halves of a big layer at once).
    Only where :func:`can_fork`.

    Parameters
    ----------
    fill
        ``fill(grid)``, writing into the grid it is given.
    shape
        The grid's shape.
    """

    def __init__(self, fill: Callable[[Any], None], shape: tuple[int, ...]) -> None:
        import mmap

        import numpy as np

        self._shape = shape
        self._map = mmap.mmap(-1, max(int(np.prod(shape)) * 4, 1))  # MAP_SHARED | MAP_ANONYMOUS
        self._pid = fork_child(lambda: fill(self._grid()))

    def _grid(self) -> Any:
        """The shared grid (a view of the mapping)."""
        import numpy as np

        return np.frombuffer(self._map, dtype=np.int32, count=int(np.prod(self._shape))).reshape(self._shape)

    def result(self) -> Any:
        """Wait for the child: the filled grid (a copy), or None when the child failed."""
        code = reap(self._pid)
        grid = self._grid().copy()
        self._map.close()
        return grid if code == 0 else None


def fork_child(body: Callable[[], Any], report: Callable[[str], Any] | None = None) -> int:
    """Fork; the child calls ``body`` and leaves with ``os._exit`` (no atexit handlers, no flushes):
    status 0 when ``body`` returned, 1 when it raised (its traceback handed to ``report`` first).
    Returns the child's pid to the caller (:func:`reap` it). Only where :func:`can_fork`."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        body()
        code = 0
    except BaseException:  # noqa: BLE001 - the child reports any failure by its exit status (and ``report``)
        if report is not None:
            import traceback

            report(traceback.format_exc())
    finally:
        os._exit(code)


def reap(pid: int) -> int:
    """Wait for the child ``pid``; its exit status."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def can_fork() -> bool:
    """Whether a child is forked from the caller (Linux and the BSDs), not spawned."""
    return hasattr(os, "fork") and sys.platform.startswith(("linux", "freebsd", "openbsd"))


def write_answer(answer: Answer, path: Path) -> None:
    """Pickle a child's answer to ``path`` (a temporary name first, then renamed)."""
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)
