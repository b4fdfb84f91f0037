"""``gis run``'s lean mode (:attr:`gis.steps.RunContext.lean`): results written when their step ends, then released.

What a user would check: a lean run writes the same files with the same rows and the same
``summary.json`` keys as a run that keeps every result; its map has the same layers (the
service areas drawn at the coverage step are the same image); and what it keeps after
each step is only what a later step reads (no violation rows, no service-area polygons,
no ledgers), which is the point of the mode for a million-row ledger.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest

from gis import maps, steps
from gis.district import load_district

STEPS = ["load", "compliance", "coverage", "ledgers"]


def _no_timings(summary: object) -> object:
    """``summary`` without its solver timings (``*_seconds``: they differ from run to run)."""
    if isinstance(summary, dict):
        return {k: _no_timings(v) for k, v in summary.items() if not str(k).endswith("_seconds")}
    return summary


def _run(project: Path, out: Path, *, lean: bool) -> tuple[Path, dict, steps.RunContext]:
    for store in project.glob("campaign*"):  # each run a first run of the campaign store
        store.unlink()
    out.mkdir()
    d = load_district(project)
    summary, ctx = steps.run_steps(d, out, STEPS, ctx=steps.RunContext(d, lean=lean))
    return out, summary, ctx


@pytest.fixture(scope="module")
def runs(sample_project: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("lean")
    project = shutil.copytree(sample_project, base / "project")  # the ledger step keeps its campaign store here
    full = _run(project, base / "full", lean=False)
    lean = _run(project, base / "lean", lean=True)
    return full, lean


def test_lean_run_writes_the_same_files_and_summary(runs) -> None:
    (full_out, full_summary, _), (lean_out, lean_summary, _) = runs
    assert _no_timings(lean_summary) == _no_timings(full_summary)
    assert list(lean_summary) == list(full_summary)
    assert sorted(p.name for p in lean_out.iterdir()) == sorted(p.name for p in full_out.iterdir())
    for name in ("district.gpkg", "sites.gpkg", "coverage.gpkg", "ledgers.gpkg"):
        layers = [row[0] for row in pyogrio.list_layers(full_out / name)]
        assert [row[0] for row in pyogrio.list_layers(lean_out / name)] == layers
        for layer in layers:
            got = pyogrio.read_dataframe(lean_out / name, layer=layer)
            ref = pyogrio.read_dataframe(full_out / name, layer=layer)
            assert len(got) == len(ref), (name, layer)
            assert got.drop(columns="geometry").equals(ref.drop(columns="geometry")), (name, layer)
            same = got.geometry.geom_equals_exact(ref.geometry, tolerance=0) | (got.geometry.isna() & ref.geometry.isna())
            assert same.all(), (name, layer)
    for name in ("problem_ledger.xlsx", "summary_table.xlsx", "survey_form.xlsx"):
        got = pd.read_excel(lean_out / name, sheet_name=None, header=None)
        ref = pd.read_excel(full_out / name, sheet_name=None, header=None)
        assert list(got) == list(ref)
        for sheet in ref:
            assert got[sheet].equals(ref[sheet]), (name, sheet)


def test_lean_run_keeps_only_what_later_steps_read(runs) -> None:
    (_, _, full), (_, _, lean) = runs
    assert len(full.compliance.violations) > 0 and len(lean.compliance.violations) == 0
    assert list(lean.compliance.violations.columns) == list(full.compliance.violations.columns)
    kept = set(lean.compliance.sites.columns) - {lean.compliance.sites.geometry.name}
    assert kept <= set(steps.LEAN_SITE_COLUMNS)
    assert lean.compliance.sites["verdict"].tolist() == full.compliance.sites["verdict"].tolist()
    assert sum(len(r.service_areas) for r in full.coverage.by_tier.values()) > 0
    assert all(len(r.service_areas) == 0 and len(r.sites) == 0 for r in lean.coverage.by_tier.values())
    assert lean.ledgers is None and lean.site_problems is None and full.ledgers is not None
    assert lean.networks is None


def test_lean_run_draws_the_same_map_layers(runs) -> None:
    (_, _, full), (_, _, lean) = runs
    d = full.district
    ref = {lay.key: lay for lay in maps.build_layers(d, full.results())}
    got = {lay.key: lay for lay in maps.build_layers(lean.district, lean.results())}
    assert list(got) == list(ref)
    for key in ("service_areas", "gaps"):
        a, b = got[key], ref[key]
        assert a.kind == b.kind and a.title == b.title
        if a.image is not None:
            assert np.array_equal(a.image, b.image) and a.bounds == b.bounds
        else:
            assert a.gdf.drop(columns="geometry").equals(b.gdf.drop(columns="geometry"))
            assert a.gdf.geometry.geom_equals_exact(b.gdf.geometry, tolerance=1e-9).all()


def test_gis_run_is_lean_from_the_configured_size(sample_project: Path) -> None:
    """``limits.analysis.lean_run_from_rows``: the sample (hundreds of rows) keeps its results to the
    map step; a district at or over the limit is run lean."""
    import dataclasses

    from gis.pipeline import is_large

    d = load_district(sample_project)
    params = steps.RunContext(d).params
    rows = len(d.sites) + len(d.incidents)
    assert params.limits.analysis.lean_run_from_rows > rows
    assert not is_large(d, params)
    at_limit = dataclasses.replace(params, limits=dataclasses.replace(
        params.limits, analysis=dataclasses.replace(params.limits.analysis, lean_run_from_rows=rows)))
    assert is_large(d, at_limit)


def test_the_map_sheets_are_handed_out_before_the_ledgers_are_written(sample_project: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The maps step's ``start`` runs once compliance, coverage and hot spots are done, before the
    ledgers step, so the sheets are drawn while the ledgers are written; the run's files are unchanged."""
    project = shutil.copytree(sample_project, tmp_path / "project")
    order: list[str] = []
    real_start, real_ledgers = steps.start_maps, steps.run_ledgers

    def start(ctx, out):
        order.append("maps.start")
        return real_start(ctx, out)

    def ledgers(ctx, out):
        order.append("ledgers.run")
        return real_ledgers(ctx, out)

    registry = tuple(
        dataclasses.replace(s, start=start) if s.name == "maps"
        else dataclasses.replace(s, run=ledgers) if s.name == "ledgers" else s for s in steps.STEPS)
    monkeypatch.setattr(steps, "STEPS", registry)
    out = tmp_path / "out"
    out.mkdir()
    d = load_district(project)
    summary, ctx = steps.run_steps(d, out, steps.names(), on_step=lambda s: order.append(s.name))
    assert order == ["load", "compliance", "coverage", "hotspots", "maps.start", "ledgers", "ledgers.run", "maps"]
    assert ctx.map_layers is None and ctx.sheet_job is None  # the maps step took both
    assert (out / "map.html").exists() and (out / "problem_ledger.xlsx").exists()
    assert summary["map"]["sheets"]["png"] and (out / summary["map"]["sheets"]["png"][0]).stat().st_size > 0
