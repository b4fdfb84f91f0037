"""The one registry of the main job's steps (load → compliance → coverage → hotspots → ledgers → maps).

Each :class:`Step` is declared once, with its name, its labels (Chinese, English),
the steps whose results it needs or uses, the ``project.yaml`` / ``layers/*.yaml``
parameter sections it reads and the function that runs it (imported directly, no
``"module:function"`` strings). Everything that runs steps reads :data:`STEPS`:
:func:`gis.pipeline.run`, the CLI subcommands (:mod:`gis.cli`), the app's step
runner (:mod:`gis.app_support`), the Dask engine (:mod:`gis.parallel`, through
:func:`run_steps`) and the step table of ``docs/ARCHITECTURE.md`` (checked by a test).

This module is the only glue between analyses and output writers: analyses
(:mod:`gis.compliance`, :mod:`gis.coverage`, :mod:`gis.hotspots`) return result
objects and never write files; the writers (:mod:`gis.export`, the ledger and map
writers) never import analyses. A step function ``run(ctx, out)`` reads earlier
results from the typed :class:`RunContext`, writes its files into ``out``, stores
its result on ``ctx`` and returns its ``summary.json`` keys.

Examples
--------
>>> from gis import map_sheets, steps
>>> [s.name for s in steps.STEPS]
['load', 'compliance', 'coverage', 'hotspots', 'ledgers', 'maps']
>>> steps.closure(["ledgers"])
['compliance', 'ledgers']
>>> steps.get("coverage").label_zh
'覆盖与选址'
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd

from gis import __version__, settings
from gis._errors import GisError
from gis.district import District
from gis.export import atomic_path, write_csv, write_geotiff, write_gpkg
from gis.params import Params, params_for
from gis.schema import REJECT_COLUMNS, Tier

if TYPE_CHECKING:  # the analysis modules are imported by their steps: the registry alone stays cheap
    from gis.compliance import ComplianceResult  # (``gis validate`` and the CLI's parser need only the registry)
    from gis.coverage import DistrictCoverage
    from gis.hotspots import DensitySurface, HotspotResult
    from gis.ledgers import LedgerSet
    from gis.routing import NetworkCSR

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What the steps of one run share: the district, its parameters and earlier results.

    Attributes
    ----------
    district
        The loaded district (:func:`gis.district.load_district`).
    params
        The typed parameters (:class:`gis.params.Params`: ``layers/*.yaml`` deep-merged
        with the project's ``project.yaml``); built from ``district.project`` when not given.
    compliance
        :class:`gis.compliance.ComplianceResult` of the ``compliance`` step.
    site_problems
        问题台账 rows found by the compliance check (:func:`gis.ledgers.problems_from_compliance`).
    coverage
        :class:`gis.coverage.DistrictCoverage` of the ``coverage`` step.
    networks
        The walking / driving networks the coverage step built (reused by later steps).
    hotspots
        :class:`gis.hotspots.HotspotResult` of the ``hotspots`` step.
    hotspot_problems
        问题台账 rows of the hot-spot step.
    ledgers
        :class:`gis.ledgers.LedgerSet` of the ``ledgers`` step.
    deferred
        File writes no later step reads (``district.gpkg``, ``sites.gpkg``,
        ``coverage.gpkg``, the ledgers), queued by :meth:`defer` and done by
        :meth:`flush` — by the maps step while its sheet workers draw (this process is
        otherwise idle then), else at the end of :func:`run_steps`. A ``lean`` run
        writes all but ``district.gpkg`` when their step ends instead. Not a result.
    sheet_job
        A :class:`gis.map_sheets.SheetJob` started early (its drawing workers import
        matplotlib while the analyses run); the maps step hands it the sheets. None: the
        maps step starts its own. Not a result.
    map_layers
        The map's display layers, built by the maps step's ``start`` (:func:`start_maps`,
        which handed them to the sheet workers); the maps step renders ``map.html`` from
        them. Not a result.
    started
        ``{step: seconds}`` of the steps whose ``start`` :func:`run_steps` has called (the
        seconds count in the step's time). Not a result.
    lean
        ``gis run``'s mode at scale (set by :func:`gis.pipeline.run` from the district's size,
        :func:`gis.pipeline.is_large`; the app keeps every result, so leaves it False): a write queued with ``now=True`` (:meth:`defer`) is done at once
        (in a forked child where the platform forks: ``writing``),
        and the step then keeps only what a later step reads (:func:`lean_compliance`,
        :func:`lean_coverage`, :func:`drawn_ahead`; the ledgers not at all), so a million-site run does not hold
        every step's results until the maps step. ``district.gpkg`` stays queued (the
        district is held to the end anyway) where the platform does not fork; else it is
        written by a forked child during the compliance step. Not a result.
    writing
        The file writes running in forked children (:meth:`defer` with a ``label`` in a
        ``lean`` run), waited for by :meth:`flush`. Not a result.
    """

    district: District
    params: Params | None = None
    compliance: ComplianceResult | None = None
    site_problems: pd.DataFrame | None = None
    coverage: DistrictCoverage | None = None
    networks: Mapping[str, NetworkCSR] | None = None
    hotspots: HotspotResult | None = None
    hotspot_problems: pd.DataFrame | None = None
    ledgers: LedgerSet | None = None
    deferred: list[Callable[[], Any]] = field(default_factory=list)
    sheet_job: Any = None
    map_layers: list[Any] | None = None
    started: dict[str, float] = field(default_factory=dict)
    lean: bool = False
    writing: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.params is None:
            self.params = params_for(self.district.project)

    @classmethod
    def result_names(cls) -> tuple[str, ...]:
        """Names of the result attributes (every field but those of ``_NOT_RESULTS``)."""
        return tuple(f.name for f in fields(cls)
                     if f.name not in _NOT_RESULTS)

    def defer(self, write: Callable[[], Any], *, now: bool = False, label: str | None = None,
              beside: bool = False) -> None:
        """Queue a file write that no later step reads (see ``deferred``).

        ``now``: in a ``lean`` run, write at once instead (what it writes is then released).
        ``label`` (the file written): in a ``lean`` run where the platform forks
        (:func:`gis.background.can_fork`), the write starts at once in a forked child
        (:class:`gis.background.ForkedWrite`, ``writing``) while this process goes on with
        the next step, ``now`` or not; one such child at a time (an earlier one is waited
        for first, which bounds the memory they hold) unless ``beside`` (started beside the
        earlier ones); all waited for by :meth:`flush`.
        """
        from gis.background import ForkedWrite, can_fork

        if label is not None and self.lean and can_fork():
            if not beside:
                self.wait_writes()
            self.writing.append(ForkedWrite(write, label))
        elif now and self.lean:
            write()
            release_memory()
        else:
            self.deferred.append(write)

    def flush(self) -> None:
        """Do the queued writes, in the order they were queued, and wait for the forked ones (``writing``)."""
        while self.deferred:
            self.deferred.pop(0)()
        self.wait_writes()

    def wait_writes(self) -> None:
        """Wait for the writes running in forked children (``writing``); raises when one failed."""
        while self.writing:
            self.writing.pop(0).wait()

    def cancel_writes(self) -> None:
        """Stop the writes still running in forked children (the run failed)."""
        while self.writing:
            self.writing.pop(0).cancel()

    def results(self) -> dict[str, Any]:
        """The results set so far, ``{name: value}`` (what the map and the app read)."""
        return {n: getattr(self, n) for n in self.result_names() if getattr(self, n) is not None}

    @classmethod
    def from_results(cls, district: District, results: Mapping[str, Any] | None = None) -> RunContext:
        """A context holding ``results`` (e.g. the app's results of earlier, cached steps)."""
        known = set(cls.result_names())
        return cls(district=district, **{k: v for k, v in (results or {}).items() if k in known})


StepFn = Callable[[RunContext, Path], dict[str, Any]]
_NOT_RESULTS = ("district", "params", "deferred", "sheet_job", "map_layers", "started", "lean", "writing")


@dataclass(frozen=True)
class Step:
    """One step of the main job.

    Attributes
    ----------
    name
        Step name (``gis run --steps``, the app's cache keys).
    label_zh, label_en
        Labels shown by the app and the progress display.
    needs
        Steps that must run before this one (their results are required).
    uses
        Steps whose results are used when present (run order only).
    params
        Config sections the step reads (the app re-runs a step when one changes).
    run
        ``run(ctx, out) -> summary keys``.
    command
        CLI subcommand running this step and its needs (``None``: none).
    help
        One-line help of that subcommand.
    outputs
        Files the step writes into ``OUT/``.
    start
        ``start(ctx, out)``, called by :func:`run_steps` as soon as the steps this one needs
        and uses have run, before the steps between (work handed to workers early: the maps
        step's sheets are drawn while the ledgers are written); ``run`` finishes it.
    """

    name: str
    label_zh: str
    label_en: str
    needs: tuple[str, ...]
    uses: tuple[str, ...]
    params: tuple[str, ...]
    run: StepFn
    command: str | None = None
    help: str = ""
    outputs: tuple[str, ...] = field(default=())
    start: Callable[[RunContext, Path], None] | None = None

    @property
    def label(self) -> str:
        """``"中文 English"`` (the app's panel titles)."""
        return f"{self.label_zh} {self.label_en}"


# ---------------------------------------------------------------------------------
# Step functions
# ---------------------------------------------------------------------------------


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


def run_load(ctx: RunContext, out: Path) -> dict[str, Any]:
    """Step ``load``: write ``district.gpkg`` and ``rejects.csv`` (deferred, see ``RunContext.deferred``); the load counts."""
    ctx.defer(lambda: write_district(ctx.district, out), label="district.gpkg")
    return district_summary(ctx.district)


def run_compliance(ctx: RunContext, out: Path) -> dict[str, Any]:
    """Step ``compliance``: write ``OUT/sites.gpkg`` and leave the problems for the ledger.

    Layers of ``sites.gpkg``: ``sites`` (compliance fields and assignments),
    ``violations`` (one row per site × rule), ``linkage`` (lines from each linked site
    to its station), ``incidents_located`` (when the district has incidents).
    Returns ``violations_total``, ``violations_by_rule``, ``sites_in_four_mountains``,
    ``orphan_points``, ``townships_without_transfer_station``,
    ``has_working_sorting_centre`` (and a few more).
    """
    from gis import compliance, ledgers

    result = compliance.check_district(ctx.district)
    ctx.defer(lambda: write_gpkg(sites_layers(result), out / "sites.gpkg"), now=True, label="sites.gpkg")
    ctx.compliance = result
    ctx.site_problems = ledgers.problems_from_compliance(result)
    summary = result.summary()
    if ctx.lean:
        ctx.compliance = lean_compliance(result)
        del result
        release_memory()
    return summary


def sites_layers(result: ComplianceResult) -> dict[str, gpd.GeoDataFrame]:
    """The layers of ``sites.gpkg`` (the linkage lines built only now, when they are written)."""
    from gis import compliance

    layers = {"sites": result.sites, "violations": result.violations, "linkage": compliance.linkage_lines(result)}
    if result.incidents is not None:
        layers["incidents_located"] = result.incidents
    return layers


#: The compliance fields of each site a later step reads (coverage: the verdict; the map: the verdict and
#: the rules broken; the ledgers: the rule table): all a ``lean`` run keeps once ``sites.gpkg`` is written.
LEAN_SITE_COLUMNS: tuple[str, ...] = ("site_id", "tier", "status", "township", "verdict", "rules_broken",
                                      "n_violations")


def lean_compliance(result: ComplianceResult) -> ComplianceResult:
    """``result`` with only what a later step reads (a ``lean`` run, once ``sites.gpkg`` is queued).

    The sites keep :data:`LEAN_SITE_COLUMNS` and their points; the violations (one row
    per site × rule, already turned into the ledger's site problems) and the linkage
    assignments keep their columns and no rows. The summary is taken before.
    """
    import dataclasses

    sites = result.sites
    keep = [c for c in LEAN_SITE_COLUMNS if c in sites.columns] + [sites.geometry.name]
    link = dataclasses.replace(result.linkage, assignments=_no_rows(result.linkage.assignments))
    return dataclasses.replace(result, sites=sites[keep].copy(), violations=_no_rows(result.violations), linkage=link)


def _no_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s columns without its rows, in arrays of its own (a slice would keep the full arrays alive)."""
    return frame.iloc[:0].copy()


def run_coverage(ctx: RunContext, out: Path) -> dict[str, Any]:
    """Step ``coverage``: write ``OUT/coverage.gpkg``; the ``coverage`` and ``targets`` keys.

    Layers: ``service_areas`` (one polygon per site and tier), ``gaps`` (uncovered
    population, ranked), ``recommended_sites`` (MCLP choice), ``population_cells``
    (each cell's distance and coverage for the headline tier).
    """
    from gis import coverage, targets

    result = coverage.analyse_district(ctx.district, compliance=ctx.compliance, networks=ctx.networks,
                                       target_evaluator=targets.district_evaluator(ctx.district, ctx.compliance))
    summary = result.summary()
    if not ctx.lean:
        ctx.defer(lambda: write_gpkg(result.layers(), out / "coverage.gpkg"))
        ctx.coverage, ctx.networks = result, result.networks
        return summary
    slim = lean_coverage(result)  # no later step of a run builds on the networks: ctx.networks stays None
    del result  # the sites' copies go before the service areas are drawn and written
    ctx.coverage = drawn_ahead(slim, ctx.district)  # drawn first: a forked write's copies and this
    ctx.defer(lambda: write_gpkg(slim.layers(), out / "coverage.gpkg"), now=True, label="coverage.gpkg")  # image's
    del slim  # memory are not held at the same time
    release_memory()
    return summary


def lean_coverage(result: DistrictCoverage) -> DistrictCoverage:
    """``result`` with only what the map draws (a ``lean`` run, once ``coverage.gpkg`` is written).

    Each tier keeps its standard, method, shares, service areas and population cells
    (all :meth:`gis.coverage.DistrictCoverage.layers` writes); the sites counted (copies
    of the eligible sites) keep their columns and no rows; the node distances, the
    networks, the candidate check and the targets' scope are dropped. The gaps and the
    siting outcome stay whole (the map's siting layer).
    """
    import dataclasses

    return _with_tiers(result, lambda r: dataclasses.replace(r, sites=_no_rows(r.sites), node_distances=None),
                       sites=_no_rows(result.sites), networks={}, candidate_check=None, scope=None)


def _with_tiers(cov: DistrictCoverage, per_tier: Callable[[Any], Any], **changes: Any) -> DistrictCoverage:
    """``cov`` with ``per_tier`` applied to each tier's result (the headline stays the same tier's) and ``changes``."""
    import dataclasses

    by_tier = {t: per_tier(r) for t, r in cov.by_tier.items()}
    headline = next((by_tier[t] for t, r in cov.by_tier.items() if r is cov.headline), None)
    return dataclasses.replace(cov, by_tier=by_tier, headline=headline, **changes)


def drawn_ahead(cov: DistrictCoverage, district: District) -> DistrictCoverage:
    """``cov`` with the map's service-area and gap layers drawn now (``map_layers``), no service-area or cell rows.

    At a million sites the service areas are an image (:func:`gis.maps.coverage_siting_layers`),
    a few MiB in place of their polygons; the maps step takes the layers as drawn.
    """
    import dataclasses

    from gis import maps

    drawn = [lay for lay in maps.coverage_siting_layers(district, {"coverage": cov})
             if lay.key in ("service_areas", "gaps")]
    return _with_tiers(cov, lambda r: dataclasses.replace(r, service_areas=_no_rows(r.service_areas),
                                                          points=_no_rows(r.points)), map_layers=drawn)


def release_memory() -> None:
    """Collect garbage and hand the freed memory back to the system: pyarrow's pool
    (``release_unused``) and glibc's heap (``malloc_trim``; elsewhere a no-op).

    A million sites' text and geometries freed by a ``lean`` step otherwise stay in the
    process's heap and Arrow's allocator (hundreds of MiB at a million rows), and its
    resident size never comes down.
    """
    import ctypes
    import ctypes.util
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    if name and os.uname().sysname == "Linux":
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def write_density(surface: DensitySurface, target: Path, *, tags: dict[str, str] | None = None) -> Path:
    """Write a kernel density surface (核密度) as a GeoTIFF (:func:`gis.export.write_geotiff`)."""
    base = {"units": "incidents per km2", "kernel": "gaussian", "bandwidth_m": f"{surface.bandwidth_m:.1f}"}
    return write_geotiff(surface.array, target, transform=surface.transform, crs=surface.crs,
                         tags={**base, **(tags or {})})


def run_hotspots(ctx: RunContext, out: Path) -> dict[str, Any]:
    """Step ``hotspots``: ``OUT/hotspots.gpkg``, ``OUT/density.tif`` and ``summary['hotspots']``.

    Layers of ``hotspots.gpkg``: :meth:`gis.hotspots.HotspotResult.layers` (clusters
    with their significance, centroids, the Gi* grid, the priority list of significant
    clusters, rebounds, and every incident with its ``cluster_id``). A district without
    incidents gives zero counts and no files.
    """
    from gis import hotspots

    d = ctx.district
    incidents = d.incidents
    if incidents is None or len(incidents) == 0:
        ctx.hotspot_problems = pd.DataFrame(columns=list(hotspots.PROBLEM_COLUMNS))
        log.warning("no incidents: hot-spot step skipped")
        return {"hotspots": {"clusters": 0, "clusters_in_four_mountains": 0, "hot_cells_99": 0, "rebounds": 0}}
    res = hotspots.analyse(incidents, ctx.params.hotspots, zones=d.zones, townships=d.townships, area=d.boundary)
    write_gpkg(res.layers(incidents), out / "hotspots.gpkg")  # incidents carry cluster_id
    if res.density is not None:
        write_density(res.density, out / "density.tif", tags={"district": d.name})
    ctx.hotspots = res
    ctx.hotspot_problems = res.problems
    return {"hotspots": res.summary()}


def run_ledgers(ctx: RunContext, out: Path) -> dict[str, Any]:
    """Step ``ledgers``: write 问题台账 / 汇总表 / 摸排表 (xlsx) and ``ledgers.gpkg``.

    Uses the compliance result (running the check when absent), the site problems
    and, when present, the hot-spot problems.
    """
    from gis import compliance, ledgers

    if ctx.compliance is None:
        ctx.compliance = compliance.check_district(ctx.district)
    project = ctx.district.project
    from gis import campaign  # the campaign store: stable 问题编号, statuses kept across runs

    # the run's ledger set is handed over without a name here: the sync drops it once it is stored
    ledger_set, synced = campaign.sync_from_run(ctx.district, _run_ledger_set(ctx), ctx.hotspots,
                                                getattr(ctx.compliance.rules, "ledger", None))
    books, rest = ledgers.LEDGER_PARTS[:1], ledgers.LEDGER_PARTS[1:]  # the 问题台账 workbook is most of the time:
    for parts, beside in ((books, False), (rest, True)):                # forked, the two halves are written at once
        ctx.defer(lambda parts=parts: ledgers.write_ledgers(ledger_set, out, sample=bool(project.sample), parts=parts),
                  now=True, label=" and ".join(parts), beside=beside)
    led = ledger_set.ledger
    summary = {
        "campaign": synced,
        "problems_total": int(len(led)),
        "problems_by_type": {str(k): int(v) for k, v in led["问题类型"].value_counts().items()},
        "problems_by_department": {str(k): int(v) for k, v in led["牵头单位"].value_counts().items()},
    }
    if ctx.lean:  # written; the map reads none of it
        ctx.ledgers, ctx.site_problems, ctx.hotspot_problems = None, None, None
        del ledger_set, led
        release_memory()
    else:
        ctx.ledgers = ledger_set
    return summary


def _run_ledger_set(ctx: RunContext) -> LedgerSet:
    """The run's own 问题台账 as a ledger set (no 汇总表 or 摸排表: the campaign sync rebuilds them from its store).

    A ``lean`` run then drops the site and hot-spot problems it was built from (nothing
    else reads them; 398,405 site problems at a million sites).
    """
    from gis import ledgers

    project, d = ctx.district.project, ctx.district
    towns = d.townships if isinstance(d.townships, gpd.GeoDataFrame) else None
    run_ledger = ledgers.run_ledger(ctx.compliance, district_name=str(project.name or ""),
                                    extra_problems=ctx.hotspot_problems, site_problems=ctx.site_problems)
    if ctx.lean:
        ctx.site_problems, ctx.hotspot_problems = None, None
    return ledgers.LedgerSet(run_ledger, pd.DataFrame(), gpd.GeoDataFrame(), str(project.name or ""), towns)


def start_maps(ctx: RunContext, out: Path) -> None:
    """Start of step ``maps``: build the display layers and hand the sheets to their drawing workers.

    Called by :func:`run_steps` once compliance, coverage and hot spots have run, so the
    workers draw while this process writes the ledgers; :func:`run_maps` renders
    ``map.html`` from the same layers and waits for the sheets.
    """
    from gis import map_sheets, maps

    d = ctx.district
    if ctx.sheet_job is None:  # map_sheets/ (PNG + PDF): drawing workers started early, or now
        ctx.sheet_job = map_sheets.SheetJob(d)
    ctx.map_layers = maps.build_layers(d, ctx.results(), maps.district_options(d), out=out)
    ctx.sheet_job.submit(ctx.map_layers, out)


def run_maps(ctx: RunContext, out: Path) -> dict[str, Any]:
    """Step ``maps``: write ``OUT/map.html`` and ``OUT/map.png`` from every result so far (:func:`start_maps` first)."""
    from gis import map_sheets, maps

    d = ctx.district
    if ctx.map_layers is None:
        start_maps(ctx, out)
    job, layers = ctx.sheet_job, ctx.map_layers
    ctx.sheet_job = ctx.map_layers = None
    m = maps.render_folium(layers, maps.district_options(d), title=maps.district_title(d),
                           attributions=maps.district_attributions(d), full_page_legend=True)
    html_path = maps.save_map_html(m, out / "map.html")
    ctx.flush()  # the earlier steps' file writes, while the sheet workers draw
    sheets = job.result()
    if sheets["png"]:  # map.png is the overview sheet: copied, not drawn a second time
        png = out / "map.png"
        with atomic_path(png) as tmp:
            shutil.copyfile(sheets["png"][0], tmp)
    else:  # sheets switched off (layers/map.yaml sheets.enabled: false)
        png = map_sheets.render_overview_png(d, layers, out / "map.png")
    return {"map": {
        "html": html_path.name, "png": png.name, "png_method": "matplotlib", "layers": [lay.key for lay in layers],
        "sheets": {"pdf": sheets["pdf"] and f"map_sheets/{sheets['pdf'].name}",
                   "png": [f"map_sheets/{p.name}" for p in sheets["png"]]},
    }}


# ---------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------

#: Every step of the main job, in run order.
STEPS: tuple[Step, ...] = (
    Step("load", "读取图层", "Load layers", (), (), ("layers", "project"), run_load,
         outputs=("district.gpkg", "rejects.csv")),
    Step("compliance", "合规核查", "Compliance", ("load",), (), ("compliance",), run_compliance,
         outputs=("sites.gpkg",)),
    Step("coverage", "覆盖与选址", "Coverage & siting", ("load",), ("compliance",), ("coverage", "targets"),
         run_coverage, command="coverage",
         help="service areas, coverage against targets, gaps and new-site recommendations (覆盖分析)",
         outputs=("coverage.gpkg",)),
    Step("hotspots", "热点分析", "Hotspots", ("load",), (), ("hotspots",), run_hotspots, command="hotspots",
         help="illegal-dismantling clusters, Gi* hot spots, density, rebound (热点分析)",
         outputs=("hotspots.gpkg", "density.tif")),
    Step("ledgers", "台账", "Ledgers", ("load", "compliance"), ("hotspots",), ("compliance", "hotspots"),
         run_ledgers, command="check",
         help="site compliance, hierarchy linkage and the 问题台账 / 汇总表 / 摸排表",
         outputs=("problem_ledger.xlsx", "summary_table.xlsx", "survey_form.xlsx", "ledgers.gpkg")),
    Step("maps", "地图", "Map", ("load",), ("compliance", "coverage", "hotspots"), ("map",), run_maps,
         outputs=("map.html", "map.png"), start=start_maps),
)


def names() -> list[str]:
    """Step names in run order (``load`` first)."""
    return [s.name for s in STEPS]


def analysis_names() -> list[str]:
    """The steps after ``load`` (what ``gis run --steps`` chooses from)."""
    return [s.name for s in STEPS if s.name != "load"]


def get(name: str) -> Step:
    """The step called ``name``.

    Raises
    ------
    GisError
        No such step (the message lists the known ones).
    """
    for s in STEPS:
        if s.name == name:
            return s
    raise GisError(f"unknown step {name!r}; known: {', '.join(names())}")


def closure(wanted: Iterable[str]) -> list[str]:
    """``wanted`` plus every step they need (transitively), in run order, without ``load``."""
    todo = set()
    stack = list(wanted)
    while stack:
        s = get(stack.pop())
        if s.name not in todo:
            todo.add(s.name)
            stack.extend(s.needs)
    return [n for n in analysis_names() if n in todo]


def commands() -> dict[str, Step]:
    """CLI subcommands that run one step and its needs: ``{command: step}``."""
    return {s.command: s for s in STEPS if s.command}


def upstream(name: str) -> tuple[str, ...]:
    """Steps whose results ``name`` reads (needs and uses, without ``load``)."""
    s = get(name)
    return tuple(n for n in (*s.needs, *s.uses) if n != "load")


def run_steps(
    district: District,
    out: Path,
    names_: Sequence[str],
    *,
    ctx: RunContext | None = None,
    on_step: Callable[[Step], None] | None = None,
    timings: dict[str, float] | None = None,
    background: Sequence[str] = (),
    flush: bool = True,
) -> tuple[dict[str, Any], RunContext]:
    """Run the named steps (in registry order) on a loaded district into ``out``.

    Parameters
    ----------
    district
        The loaded district.
    out
        Output folder (must exist).
    names_
        Steps to run; ``load`` writes the cleaned layers and the load counts.
    ctx
        Context holding earlier results (default: a new one).
    on_step
        Called before each step (progress display).
    timings
        Filled with each step's wall time in seconds (a background step: in its worker).
    background
        Steps among ``names_`` that need nothing but ``load`` to run in a spawned worker
        (:class:`gis.background.BackgroundStep`) from the start, while this process runs
        the others; their summary keys and results are taken in when their turn comes (in
        registry order, so ``summary.json`` is the same). A worker that fails is replaced by
        running the step here.
    flush
        Do the deferred writes (:meth:`RunContext.defer`) before returning; ``False``: the
        caller does them (``ctx.deferred``; the app, on a thread).

    Returns
    -------
    (summary, ctx)
        The summary keys of the steps run and the context holding their results.

    Examples
    --------
    >>> summary, ctx = run_steps(load_district("data/sample_district"), Path("out"), ["load", "compliance"])  # doctest: +SKIP
    >>> ctx.compliance.summary()["violations_total"] == summary["violations_total"]  # doctest: +SKIP
    True
    """
    wanted = set(names_)
    for n in wanted:
        get(n)  # an unknown name fails here, before any step runs
    ctx = ctx if ctx is not None else RunContext(district)
    jobs = _start_background(district, out, [n for n in background if n in wanted])
    summary: dict[str, Any] = {}
    finished: set[str] = set()
    try:
        for step in STEPS:
            if step.name not in wanted:
                continue
            _start_ready(ctx, out, wanted, finished)
            if on_step is not None:
                on_step(step)
            seconds = _run_one(step, ctx, out, summary, jobs.pop(step.name, None))
            if timings is not None:  # a step's start counts in its time
                timings[step.name] = round(seconds + ctx.started.get(step.name, 0.0), 3)
            finished.add(step.name)
        if flush:
            ctx.flush()
    finally:
        for job in jobs.values():  # a step failed: stop the workers not waited for
            job.cancel()
        ctx.cancel_writes()  # a step failed: stop the writes not waited for
        if ctx.map_layers is not None and ctx.sheet_job is not None:  # started, never finished
            ctx.sheet_job.close()
    return summary, ctx


def _run_one(step: Step, ctx: RunContext, out: Path, summary: dict[str, Any], job: Any) -> float:
    """Run ``step`` here, or take in what its worker ``job`` did (summary keys, results); its wall seconds."""
    import time

    t0 = time.perf_counter()
    done = job.result() if job is not None else None
    if done is None:
        summary.update(step.run(ctx, out))
        return round(time.perf_counter() - t0, 3)
    keys, results, seconds = done  # ran in its worker
    summary.update(keys)
    for name, value in results.items():
        setattr(ctx, name, value)
    return seconds


def _start_ready(ctx: RunContext, out: Path, wanted: set[str], done: set[str]) -> None:
    """Call the ``start`` of each wanted step not run yet whose wanted needs and uses have all run (once);
    its wall seconds go to ``ctx.started``."""
    import time

    for step in STEPS:
        if (step.start is not None and step.name in wanted and step.name not in done
                and step.name not in ctx.started and wanted & {*step.needs, *step.uses} <= done):
            t0 = time.perf_counter()
            step.start(ctx, out)
            ctx.started[step.name] = time.perf_counter() - t0


def _start_background(district: District, out: Path, names_: Sequence[str]) -> dict[str, Any]:
    """Start a worker for each of ``names_`` (steps needing nothing but ``load``): ``{name: BackgroundStep}``."""
    from gis.background import BackgroundStep

    jobs = {}
    for n in names_:
        if set(get(n).needs) - {"load"} or get(n).uses:
            raise GisError(f"step {n} cannot run in the background: it needs {', '.join(upstream(n))}")
        jobs[n] = BackgroundStep(n, district, out, run=lambda n=n: run_alone(n, district, out))
    return jobs


def worker_steps(district: District) -> tuple[str, ...]:
    """Steps worth running in a worker while the caller runs the others: ``hotspots`` (it needs
    only the loaded district, and nothing runs between it and the steps that read it) when there
    are incidents to analyse and a second core to run it on. ``gis run`` and the app use this."""
    has_incidents = district.incidents is not None and len(district.incidents) > 0
    return ("hotspots",) if has_incidents and (os.cpu_count() or 1) > 1 else ()


def run_alone(name: str, district: District, out: Path) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Run one step that needs only the loaded district, on a fresh context (a background worker's job).

    Returns
    -------
    (summary, results, seconds)
        The step's summary keys, its results (:meth:`RunContext.results`) and its wall time.
    """
    import time

    ctx = RunContext(district)
    t0 = time.perf_counter()
    summary = get(name).run(ctx, out)
    ctx.flush()
    return summary, ctx.results(), round(time.perf_counter() - t0, 3)


def markdown_table() -> str:
    """The step table of ``docs/ARCHITECTURE.md`` (a test keeps the two equal)."""
    rows = ["| step | 中文 | needs | uses | parameter sections | function | CLI | writes |",
            "|---|---|---|---|---|---|---|---|"]
    for s in STEPS:
        rows.append(
            f"| `{s.name}` | {s.label_zh} | {', '.join(s.needs) or '—'} | {', '.join(s.uses) or '—'} | "
            f"{', '.join(s.params)} | `steps.{s.run.__name__}` | {('`gis ' + s.command + '`') if s.command else '—'} | "
            f"{', '.join(s.outputs)} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - prints the docs table
    print(markdown_table())
