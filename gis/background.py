"""One step of the main job run in a spawned process while the caller runs the others (the caller's side).

``gis run`` has two cores' worth of work only at its end (the map sheets); while the
caller runs compliance and coverage, the second core is idle. A step that needs nothing
but the loaded district (``hotspots``) can run there: :class:`BackgroundStep` starts
``python -m gis.step_worker`` (:mod:`gis.step_worker`), hands it the district and the step's name (a pickle in a
private scratch folder), and :meth:`BackgroundStep.result` collects the step's summary
keys and results (:class:`gis.steps.RunContext` attributes) when the caller needs them.
The worker writes the step's files into the same output folder. A plain child process
rather than :mod:`multiprocessing`, as for the map sheets (:mod:`gis.map_sheets`):
nothing of the caller's ``__main__`` is re-imported.

When the worker fails (it cannot start, a pickle does not load, the analysis raises),
:meth:`BackgroundStep.result` returns None and the caller runs the step itself, so an
error in the data is reported as it would be without the worker.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gis.district import District

__all__ = ["BackgroundStep"]


class BackgroundStep:
    """A step of the main job running in a spawned worker process.

    Parameters
    ----------
    name
        Step name (:data:`gis.steps.STEPS`); it must need nothing but ``load``.
    district
        The loaded district (pickled to the worker).
    out
        Output folder the step writes into.

    Examples
    --------
    >>> job = BackgroundStep("hotspots", district, Path("out"))   # doctest: +SKIP
    >>> summary, results, seconds = job.result()                   # doctest: +SKIP
    >>> sorted(results)                                            # doctest: +SKIP
    ['hotspot_problems', 'hotspots']
    """

    def __init__(self, name: str, district: District, out: Path) -> None:
        self.name = name
        self._scratch = tempfile.TemporaryDirectory(prefix="gis_step_")
        folder = Path(self._scratch.name)
        task, self._answer = folder / "task.pickle", folder / "result.pickle"
        task.write_bytes(pickle.dumps((name, district, str(out), str(self._answer)), protocol=pickle.HIGHEST_PROTOCOL))
        root = str(Path(__file__).resolve().parent.parent)  # this copy of gis
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._stderr = open(folder / "stderr.txt", "w+b")  # noqa: SIM115 (closed in result)
        self._proc = subprocess.Popen([sys.executable, "-m", "gis.step_worker", str(task)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env)

    def result(self) -> tuple[dict[str, Any], dict[str, Any], float] | None:
        """Wait for the worker: (summary keys, results, the step's seconds in the worker), or None when it failed.

        The scratch folder is removed either way.
        """
        try:
            code = self._proc.wait()
            self._stderr.close()
            if code != 0 or not self._answer.exists():
                return None
            return pickle.loads(self._answer.read_bytes())  # written by gis.step_worker, in our scratch folder
        finally:
            self._scratch.cleanup()

    def cancel(self) -> None:
        """Stop the worker (the caller failed) and remove the scratch folder."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._stderr.close()
        self._scratch.cleanup()
