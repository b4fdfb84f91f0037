"""The main job: load a district, run every analysis step, write ``OUT/``.

``run(project, out)`` loads the district (:func:`gis.district.load_district`),
writes the cleaned layers (``district.gpkg``) and the rejects (``rejects.csv``),
then runs the analysis steps in :data:`STEPS` order. Each step is a function
``run_step(district, out, summary, context)`` in its own module that writes its
files, adds its keys to ``summary`` and leaves results in ``context`` for later
steps (the ledger step gathers problems found by compliance and hotspots; the map
step draws everything). ``summary.json`` is written last.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from . import __version__, settings
from ._errors import GisError
from .catalog import load_project
from .district import District, load_district
from .outdir import atomic_output
from .precheck import check_inputs
from .export import write_csv, write_gpkg, write_json
from .schema import REJECT_COLUMNS, Tier

log = logging.getLogger(__name__)

#: Analysis steps of the main job: (name, "module:function"). They run in
#: :data:`STEP_ORDER` order whatever order they are registered in.
STEPS: list[tuple[str, str]] = [
    ("compliance", "gis.compliance:run_step"),
    ("coverage", "gis.coverage:run_step"),
    ("hotspots", "gis.hotspots:run_step"),
    ("ledgers", "gis.ledgers:run_step"),
    ("maps", "gis.maps:run_step"),
]

#: Run order: ledgers gather the problems of compliance and hotspots; maps draw all.
STEP_ORDER: tuple[str, ...] = ("compliance", "coverage", "hotspots", "ledgers", "maps")

StepFn = Callable[[District, Path, dict[str, Any], dict[str, Any]], None]


def _ordered() -> list[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(STEP_ORDER)}
    return sorted(STEPS, key=lambda st: rank.get(st[0], len(rank)))


def step_names() -> list[str]:
    """Names of the registered analysis steps, in run order."""
    return [name for name, _ in _ordered()]


def _resolve(target: str) -> StepFn:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def district_summary(d: District) -> dict[str, Any]:
    """The load part of ``summary.json``: counts that balance against the inputs."""
    sites = d.sites
    by_tier = {t.value: int((sites["tier"] == t.value).sum()) for t in Tier}
    by_status = sites["status"].fillna("unknown").value_counts().sort_index().to_dict()
    rejects = d.rejects
    return {
        "district": d.name,
        "code": d.project.code,
        "sample": d.project.sample,
        "label": settings.SAMPLE_LABEL if d.project.sample else None,
        "toolkit_version": __version__,
        "metric_crs": d.crs.to_string(),
        "sites_total": int(len(sites)),
        "sites_by_tier": {k: v for k, v in by_tier.items() if v},
        "sites_by_status": {str(k): int(v) for k, v in by_status.items()},
        "incidents_total": int(len(d.incidents)) if d.incidents is not None else 0,
        "townships_total": int(len(d.townships)),
        "read": dict(d.read_counts),
        "loaded": {k: v for k, v in d.loaded_counts.items() if k in d.read_counts},
        "rejects": int(len(rejects)),
        "rejects_by_reason": {str(k): int(v) for k, v in rejects["reason"].value_counts().sort_index().items()},
        "rejects_by_layer": {str(k): int(v) for k, v in rejects["layer"].value_counts().sort_index().items()},
        "coordinate_conversions": {
            role: [
                {"file": Path(i["file"]).name, "from": i.get("coords"), "to": "wgs84 → " + d.crs.to_string()}
                for i in infos
                if i.get("coords")
            ]
            for role, infos in d.provenance.items()
        },
    }


def write_district(d: District, out: Path) -> None:
    """Write the cleaned layers (``district.gpkg``) and the rejects (``rejects.csv``)."""
    layers: dict[str, gpd.GeoDataFrame] = {}
    for role in ("townships", "sites", "incidents", "candidates", "zones", "landuse", "population"):
        gdf = getattr(d, role)
        if isinstance(gdf, gpd.GeoDataFrame):
            layers[role] = gdf
    write_gpkg(layers, out / "district.gpkg")
    rejects = d.rejects if len(d.rejects) else pd.DataFrame(columns=list(REJECT_COLUMNS))
    write_csv(rejects, out / "rejects.csv")


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
        Analysis steps to run (default: all of :data:`STEPS`). Loading always runs.
    progress
        Show a progress display (default: :data:`gis.settings.SHOW_PROGRESS`).

    Returns
    -------
    dict
        The summary, also written to ``OUT/summary.json``.
    """
    project = Path(project) if project is not None else settings.SAMPLE_PROJECT_DIR
    out = Path(out)
    wanted = list(steps) if steps is not None else step_names()
    unknown = [s for s in wanted if s not in step_names()]
    if unknown:
        raise GisError(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(step_names()) or '(none)'}")
    todo = [(n, t) for n, t in _ordered() if n in wanted]
    show = settings.SHOW_PROGRESS if progress is None else progress

    timings: dict[str, float] = {}
    context: dict[str, Any] = {}
    with _progress(show, 1 + len(todo)) as advance:
        t0 = time.perf_counter()
        advance("load 读取图层")
        proj = load_project(project, confined=confined)
        check_inputs(proj)  # gis.precheck: fail now, not minutes later
        d = load_district(proj)  # validated before anything is written
        with atomic_output(out) as (folder, run_id):  # gis.outdir: locked temp sibling, swapped in when complete
            summary = district_summary(d)
            summary["run_id"] = run_id
            write_district(d, folder)
            timings["load"] = round(time.perf_counter() - t0, 3)
            context["district"] = d
            for name, target in todo:
                advance(name)
                t0 = time.perf_counter()
                _resolve(target)(d, folder, summary, context)
                timings[name] = round(time.perf_counter() - t0, 3)
            summary["steps_run"] = ["load"] + [n for n, _ in todo]
            summary["timings_s"] = timings
            write_json(summary, folder / "summary.json")
    return summary


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


def iter_steps() -> Iterable[tuple[str, StepFn]]:
    """The registered steps as callables (for the app and notebooks)."""
    for name, target in _ordered():
        yield name, _resolve(target)
