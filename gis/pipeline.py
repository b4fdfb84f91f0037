"""The main job: load a district, run every analysis step, write ``OUT/``.

``run(project, out)`` loads the district (:func:`gis.district.load_district`) and
runs the steps of the registry :data:`gis.steps.STEPS` in order: ``load`` writes
the cleaned layers (``district.gpkg``) and the rejects (``rejects.csv``), then
compliance, coverage, hotspots, ledgers and maps each write their files and
add their keys to the summary; ``summary.json`` is written last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gis import settings, steps
from gis._errors import GisError
from gis.district import District, load_district
from gis.export import write_json
from gis.params import Params, load_params

from gis.catalog import load_project
from gis.outdir import atomic_output
from gis.precheck import check_inputs

# re-exported for callers of the former pipeline API
district_summary = steps.district_summary
write_district = steps.write_district


def run(
    project: str | Path | None = None,
    out: str | Path = "out",
    *,
    steps: Sequence[str] | None = None,
    progress: bool | None = None,
    confined: bool = False,
) -> dict[str, Any]:
    """Run the main job on a district project.

    Parameters
    ----------
    project
        Project folder or ``project.yaml``; ``None`` = the bundled sample district.
    out
        Output folder (created).
    steps
        Analysis steps to run (default: all of :data:`gis.steps.STEPS`). Loading always runs.
    progress
        Show a progress display (default: :data:`gis.settings.SHOW_PROGRESS`).

    Returns
    -------
    dict
        The summary, also written to ``OUT/summary.json``.

    Raises
    ------
    GisError
        An unknown step name, or a problem in the project's files (one line naming it).

    Examples
    --------
    >>> from gis.pipeline import run
    >>> summary = run("data/sample_district", "out", steps=["compliance"])  # doctest: +SKIP
    >>> summary["steps_run"]                                                  # doctest: +SKIP
    ['load', 'compliance']
    """
    from gis import steps as registry

    project = Path(project) if project is not None else settings.SAMPLE_PROJECT_DIR
    out = Path(out)
    wanted = list(steps) if steps is not None else registry.analysis_names()
    unknown = [s for s in wanted if s not in registry.analysis_names()]
    if unknown:
        raise GisError(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(registry.analysis_names())}")
    todo = ["load"] + [n for n in registry.analysis_names() if n in wanted]
    show = settings.SHOW_PROGRESS if progress is None else progress
    timings: dict[str, float] = {}
    with _progress(show, len(todo)) as advance:
        advance("load 读取图层")
        load_params(project)  # refuse unknown / misspelt keys and wrong types before any analysis
        proj = load_project(project, confined=confined)
        with _early_sheets(proj, todo) as job:
            check_inputs(proj)  # gis.precheck: fail now, not minutes later
            d = load_district(proj)  # validated before anything is written
            ctx = registry.RunContext(d, sheet_job=job and job.attach(d))
            ctx.lean = is_large(d, ctx.params)
            with atomic_output(out) as (folder, run_id):
                summary, _ = registry.run_steps(
                    d, folder, todo, ctx=ctx, on_step=lambda s: advance(s.name) if s.name != "load" else None,
                    timings=timings, background=registry.worker_steps(d),
                )
                summary["run_id"] = run_id
                summary["steps_run"] = todo
                summary["timings_s"] = timings
                write_json(summary, folder / "summary.json")
    return summary


def is_large(district: District, params: Params) -> bool:
    """Whether ``gis run`` is lean on ``district`` (:attr:`gis.steps.RunContext.lean`): at least
    ``limits.analysis.lean_run_from_rows`` (``layers/limits.yaml``) site and incident rows.

    A lean run writes each step's files when the step ends and releases them (a million sites
    fit in memory); below the limit the writes wait for the map step, whose sheet workers
    then have the other core busy, and nothing is collected early.
    """
    rows = len(district.sites) + (len(district.incidents) if district.incidents is not None else 0)
    return rows >= params.limits.analysis.lean_run_from_rows


@contextlib.contextmanager
def _early_sheets(proj: Any, todo: Sequence[str]) -> Iterator[Any]:
    """A map-sheet job started now, before the district is read, when the maps step will run (else None).

    Its drawing worker imports matplotlib while this process reads the layers and the
    analyses run (the second core has room then); the maps step hands it the sheets.
    Stopped here if the run fails before (the maps step takes the job and clears it).
    """
    from gis import map_sheets

    job = map_sheets.SheetJob(None, settings=map_sheets.project_sheet_settings(proj)) if "maps" in todo else None
    try:
        yield job
    finally:
        if job is not None:  # stops the workers unless the maps step has had their files
            job.close()


class _progress:
    """A rich progress bar over the steps (a no-op when switched off)."""

    def __init__(self, show: bool, total: int) -> None:
        self.show = show
        self.total = total
        self._p = None

    def __enter__(self) -> Callable[[str], None]:
        if not self.show:
            return lambda label: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=False)
        self._p.__enter__()
        self._task = self._p.add_task("gis run", total=self.total)
        self._started = False

        def advance(label: str) -> None:
            if self._started:
                self._p.advance(self._task)
            self._started = True
            self._p.update(self._task, description=f"gis run · {label}")

        return advance

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            if exc[0] is None:
                self._p.update(self._task, completed=self.total, description="gis run · done")
            self._p.__exit__(*exc)
