"""Non-UI helpers of the Streamlit app (``app.py``): projects, uploads, step runs.

The app stays a thin layer: it loads a district with :func:`gis.district.load_district`,
runs the steps of the one registry (:data:`gis.steps.STEPS`, the same step
functions ``gis run`` uses) and shows what they return. Sidebar parameters become overrides of the project's config
sections (``coverage:``, ``hotspots:`` …), so a parameter change re-runs only the step
that reads that section.

Uploads (a zip of layer files + ``project.yaml``) are unpacked by
:func:`extract_project_zip` with limits on size and file count, no absolute paths,
no ``..``, no links, and only data-file suffixes; nothing in an upload is ever
executed (``project.yaml`` is parsed with ``yaml.safe_load`` by :mod:`gis.catalog`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gis import outdir, steps
from gis._errors import InputError
from gis.district import District
from gis.outdir import OutputLockedError
from gis.params import Params

if TYPE_CHECKING:  # municipal imports the sample generator; only its type is needed here
    from gis.municipal import Rollup

#: File suffixes a project upload may contain (data and metadata only).
ALLOWED_SUFFIXES: frozenset[str] = frozenset(
    {
        ".yaml", ".yml", ".csv", ".txt", ".xlsx", ".xls", ".gpkg", ".geojson", ".json",
        ".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".xml",
        ".tif", ".tiff", ".tfw", ".ovr", ".aux", ".osm", ".pbf", ".graphml", ".md",
    }
)

#: Steps whose results the app shows (every analysis but the map), with their UI names.
STEP_LABELS: dict[str, str] = {s.name: s.label for s in steps.STEPS if s.name not in ("load", "maps")}

#: Which config sections each step reads (its cache key includes those sections' overrides).
STEP_SECTIONS: dict[str, tuple[str, ...]] = {s.name: s.params for s in steps.STEPS}

NOT_AVAILABLE = "该分析尚未提供 — analysis not available yet"


# ---------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------


def _upload_caps(max_bytes: int | None, max_unpacked: int | None, max_files: int | None) -> tuple[int, int, int]:
    """The given caps, each ``None`` replaced by its ``upload.*`` limit of ``layers/limits.yaml``."""
    from gis.limits import upload_limits

    lim = upload_limits()
    return (lim.max_zip_bytes if max_bytes is None else max_bytes,
            lim.max_unpacked_bytes if max_unpacked is None else max_unpacked,
            lim.max_entries if max_files is None else max_files)


def extract_project_zip(
    data: bytes,
    dest: str | Path,
    *,
    max_bytes: int | None = None,
    max_unpacked: int | None = None,
    max_files: int | None = None,
    name: str = "upload.zip",
) -> Path:
    """Unpack an uploaded project zip safely and return its ``project.yaml``.

    Parameters
    ----------
    data
        The zip file's bytes.
    dest
        Empty (or new) folder to unpack into.
    max_bytes, max_unpacked, max_files
        Limits on the upload, its declared unpacked size (zip bombs) and its entries;
        ``None`` (the app) = ``upload.*`` of ``layers/limits.yaml`` (:func:`gis.limits.upload_limits`).
    name
        Upload file name, for error messages.

    Raises
    ------
    InputError
        Not a zip; too large; an entry with an absolute path, ``..``, a drive letter,
        a symbolic link or a disallowed suffix; no ``project.yaml``.
    """
    import io

    max_bytes, max_unpacked, max_files = _upload_caps(max_bytes, max_unpacked, max_files)
    if len(data) > max_bytes:
        raise InputError(name, f"upload is {len(data) / 2**20:.0f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError(name, f"not a zip file ({exc})") from None
    from gis.confine import check_zip_quota

    check_zip_quota(zf, name, uploaded_bytes=len(data))  # upload size, entries, unpacked size, compression ratio (layers/limits.yaml upload.*)
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > max_files:
            raise InputError(name, f"{len(infos)} files in the zip; the limit is {max_files}")
        total = sum(i.file_size for i in infos)
        if total > max_unpacked:
            raise InputError(name, f"unpacks to {total / 2**20:.0f} MiB; the limit is {max_unpacked / 2**20:.0f} MiB")
        targets: list[tuple[zipfile.ZipInfo, Path]] = []
        for info in infos:
            entry = info.filename
            pure = PurePosixPath(entry.replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
                raise InputError(name, f"entry {entry!r} points outside the project folder")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputError(name, f"entry {entry!r} is a symbolic link")
            if pure.parts and pure.parts[0] == "__MACOSX":
                continue
            if pure.suffix.lower() not in ALLOWED_SUFFIXES:
                raise InputError(name, f"entry {entry!r}: file type {pure.suffix or '(none)'} is not a data file")
            target = (dest / Path(*pure.parts)).resolve()
            if dest not in target.parents:
                raise InputError(name, f"entry {entry!r} points outside the project folder")
            targets.append((info, target))
        written = 0
        for info, target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_unpacked:  # sizes in the header can lie
                        raise InputError(name, "unpacked size exceeds the limit")
                    dst.write(chunk)
    candidates = sorted(dest.rglob("project.yaml"), key=lambda p: len(p.parts))
    if not candidates:
        raise InputError(name, "no project.yaml in the zip (see docs/ARCHITECTURE.md for its format)")
    return candidates[0]


def project_key(project: str | Path) -> str:
    """A key that changes whenever the project's folder or files change (for caches)."""
    from gis.campaign import is_campaign_file  # the campaign store is state, not an input
    from gis.catalog import find_project_file

    path = find_project_file(project)
    return _files_key(path.parent, str(path.resolve()), is_campaign_file)


def _files_key(root: Path, seed: str, skip: Callable[[Path], bool]) -> str:
    """SHA-1 of ``seed`` and every file's relative path, size and mtime under ``root``,
    leaving out the files ``skip(relative path)`` names (16 hex digits)."""
    h = hashlib.sha1(seed.encode())
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if f.is_file() and not skip(rel):
            st_ = f.stat()
            h.update(f"{rel}:{st_.st_size}:{st_.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------
# Parameters → config overrides
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppParams:
    """Sidebar parameters; ``None`` keeps the project's own value.

    Attributes
    ----------
    service_radius_m
        Walking service radius of collection and drop-off points (coverage).
    cluster_distance_m
        DBSCAN search distance of incident clusters (hotspots ``clusters.eps_m``;
        setting it selects ``method: dbscan``).
    start, end
        Incident time window for the hot-spot analysis.
    k_new_sites
        Number of new sites to recommend (siting).
    """

    service_radius_m: float | None = None
    cluster_distance_m: float | None = None
    start: date | None = None
    end: date | None = None
    k_new_sites: int | None = None

    def apply(self, params: Params) -> Params:
        """The typed parameters with the sidebar's values (:func:`dataclasses.replace`)."""
        p = params if self.service_radius_m is None else params.with_service_radius(float(self.service_radius_m))
        if self.k_new_sites is not None:
            siting = dataclasses.replace(p.coverage.siting, k_new=int(self.k_new_sites))
            p = dataclasses.replace(p, coverage=dataclasses.replace(p.coverage, siting=siting))
        cl = {k: v for k, v in (("eps_m", None if self.cluster_distance_m is None else float(self.cluster_distance_m)),
                                ("start", self.start and self.start.isoformat()),
                                ("end", self.end and self.end.isoformat())) if v is not None}
        if self.cluster_distance_m is not None:  # a search distance is DBSCAN's parameter (default method: scan)
            cl["method"] = "dbscan"
        if cl:
            clusters = dataclasses.replace(p.hotspots.clusters, **cl)
            p = dataclasses.replace(p, hotspots=dataclasses.replace(p.hotspots, clusters=clusters))
        return p

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Config-section overrides, ``{section: {...}}`` (see :meth:`Project.section`)."""
        out: dict[str, dict[str, Any]] = {}
        if self.service_radius_m is not None:
            r = float(self.service_radius_m)
            out.setdefault("coverage", {})["service_standards"] = {
                "collection_point": {"distance_m": r},
                "drop_off_point": {"distance_m": r},
            }
        if self.k_new_sites is not None:
            out.setdefault("coverage", {}).setdefault("siting", {})["k_new"] = int(self.k_new_sites)
        clusters: dict[str, Any] = {}
        if self.cluster_distance_m is not None:  # a search distance is DBSCAN's parameter (default method: scan)
            clusters.update(method="dbscan", eps_m=float(self.cluster_distance_m))
        if self.start is not None:
            clusters["start"] = self.start.isoformat()
        if self.end is not None:
            clusters["end"] = self.end.isoformat()
        if clusters:
            out.setdefault("hotspots", {})["clusters"] = clusters
        return out


def with_overrides(district: District, overrides: Mapping[str, Mapping[str, Any]]) -> District:
    """A copy of ``district`` whose project config has ``overrides`` deep-merged in.

    The layers are shared (not copied); only the project's ``raw`` config changes, so
    every ``Project.section(name)`` read by a step sees the override.
    """
    if not overrides:
        return district
    from gis.catalog import deep_merge

    project = district.project
    raw = deep_merge(copy.deepcopy(project.raw), dict(overrides))
    return dataclasses.replace(district, project=dataclasses.replace(project, raw=raw))


def step_key(step: str, overrides: Mapping[str, Mapping[str, Any]]) -> str:
    """Cache key of one step: the overrides of the sections that step reads."""
    relevant = {s: overrides.get(s) for s in STEP_SECTIONS.get(step, (step,)) if overrides.get(s)}
    return hashlib.sha1(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------


def registered_steps() -> list[str]:
    """Analysis steps of the registry (after ``load``), in run order."""
    return steps.analysis_names()


def step_available(step: str) -> tuple[bool, str]:
    """Whether ``step`` is in the registry; ``(False, reason)`` otherwise."""
    if step in steps.analysis_names():
        return True, ""
    return False, NOT_AVAILABLE


def step_upstream(step: str) -> tuple[str, ...]:
    """Steps whose results ``step`` reads (its cache key includes theirs)."""
    return steps.upstream(step)


@dataclass
class StepOutput:
    """What one step produced: summary keys, results (by name) and the folder it wrote into.

    ``writes``: the step's file writes still running on a thread (:func:`run_one_step`);
    :attr:`files` waits for them.
    """

    step: str
    summary: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    error: str | None = None
    writes: Future[None] | None = None

    @property
    def files(self) -> list[Path]:
        """The files the step wrote, once its writes are done (an error of theirs is raised here)."""
        if self.writes is not None:
            self.writes.result()
        if self.folder is None:
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith("."))

    @property
    def write_error(self) -> str | None:
        """One line on why the step's file writes failed (waits for them); None when they did not."""
        if self.writes is None:
            return None
        try:
            self.writes.result()
        except Exception as exc:  # noqa: BLE001 - reported to the user in one line
            return f"{self.step}: {type(exc).__name__}: {exc}".splitlines()[0]
        return None


def run_one_step(
    step: str, district: District, out: str | Path, context_in: Mapping[str, Any] | None = None,
    background: Any = None,
) -> StepOutput:
    """Run one registered step into ``out``; errors are captured, not raised.

    ``context_in`` holds earlier steps' results by name (:meth:`gis.steps.RunContext.results`);
    the output's ``context`` holds the results this step set. A
    :class:`gis._errors.GisError` (bad data, missing layer) is reported in ``error``
    so the app can say why a panel is empty; other exceptions propagate.
    ``background``: a :class:`gis.background.BackgroundStep` already running the step
    into ``out`` — its answer is taken; when it failed, the step runs here.
    The step's deferred file writes (files no later step reads: its GeoPackages and
    workbooks) run on a thread, so the map is drawn while they are written
    (:attr:`StepOutput.files` waits for them).
    """
    from gis._errors import GisError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = steps.RunContext.from_results(district, context_in)
    before = {k: id(v) for k, v in ctx.results().items()}
    done = background.result() if background is not None else None
    try:
        if done is not None:
            summary, results, _ = done
            for name, value in results.items():
                setattr(ctx, name, value)
        else:
            summary, ctx = steps.run_steps(district, out, [step], ctx=ctx, flush=False)
    except GisError as exc:
        return StepOutput(step, error=f"{type(exc).__name__}: {exc}")
    new_ctx = {k: v for k, v in ctx.results().items() if before.get(k) != id(v) or k == step}
    return StepOutput(step, summary, new_ctx, out, writes=_write_on_thread(ctx))


def _write_on_thread(ctx: steps.RunContext) -> Future[None] | None:
    """``ctx``'s deferred writes done on a thread of their own (None when there are none)."""
    if not ctx.deferred:
        return None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gis-step-writes")
    try:
        return pool.submit(ctx.flush)
    finally:
        pool.shutdown(wait=False)


def download_files(outputs: Iterable[StepOutput]) -> list[Path]:
    """Files the steps wrote, ledgers first (for the Downloads page); a step whose writes failed
    gives none (:attr:`StepOutput.write_error` says why)."""
    order = {".xlsx": 0, ".gpkg": 1, ".tif": 2, ".html": 3, ".json": 4, ".csv": 5, ".png": 6}
    seen: dict[str, Path] = {}
    for o in outputs:
        if o.write_error is not None:
            continue
        for f in o.files:
            seen[f.name] = f
    return sorted(seen.values(), key=lambda p: (order.get(p.suffix, 9), p.name))


def clear_folder(path: str | Path) -> None:
    """Remove a cache folder the app created (never anything else)."""
    path = Path(path)
    if path.exists() and path.is_dir():
        shutil.rmtree(path)


def merged_summary(outputs: Mapping[str, StepOutput]) -> dict[str, Any]:
    """The summary keys of every step run (as ``summary.json`` would hold them)."""
    out: dict[str, Any] = {}
    for o in outputs.values():
        out.update(o.summary)
    return out


def merged_context(outputs: Mapping[str, StepOutput]) -> dict[str, Any]:
    """The context entries of every step run (results for the map)."""
    out: dict[str, Any] = {}
    for o in outputs.values():
        out.update(o.context)
    return out


#: Download labels (Chinese first).
FILE_LABELS: dict[str, str] = {
    "problem_ledger.xlsx": "问题台账 Problem ledger (problem_ledger.xlsx)",
    "summary_table.xlsx": "汇总表 Summary table (summary_table.xlsx)",
    "survey_form.xlsx": "摸排表 Survey form (survey_form.xlsx)",
    "sites.gpkg": "网点合规 Sites with compliance (sites.gpkg)",
    "ledgers.gpkg": "台账图层 Ledgers as map layers (ledgers.gpkg)",
    "coverage.gpkg": "覆盖与选址 Coverage, gaps, recommended sites (coverage.gpkg)",
    "hotspots.gpkg": "热点 Clusters, Gi* grid, priority (hotspots.gpkg)",
    "density.tif": "核密度 Density surface (density.tif)",
    "map.html": "地图 Map (map.html, opens offline)",
}


# ---------------------------------------------------------------------------------
# Page tables (what the app shows; the tests compare them with the library)
# ---------------------------------------------------------------------------------

_YES_NO = {True: "是 yes", False: "否 no"}


def network_status(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Three-tier network completeness from the compliance summary keys."""
    rows = [
        ("违规问题 Violations", summary.get("violations_total")),
        ("有运行中的分拣中心 Working sorting centre", _YES_NO.get(summary.get("has_working_sorting_centre"), "—")),
        ("无中转站的镇街 Townships without transfer station",
         "、".join(summary.get("townships_without_transfer_station") or []) or "无 none"),
        ("未衔接的回收网点 Orphan points", summary.get("orphan_points")),
        ("超负荷中转站 Overloaded stations", "、".join(map(str, summary.get("overloaded_stations") or [])) or "无 none"),
    ]
    fm = summary.get("sites_in_four_mountains") or {}
    if fm:
        rows.append(("四山内网点 Sites in Four-Mountains zones",
                     "；".join(f"{ZONE_ZH.get(k, k)} {v}" for k, v in fm.items())))
    return pd.DataFrame(rows, columns=["指标 Item", "值 Value"]).astype({"值 Value": str})


ZONE_ZH = {"no_build": "禁建区", "key_control": "重点控建区", "general_control": "一般控建区"}


def format_share(x: float | None) -> str:
    """A share as shown in the app (``—`` when not computed)."""
    return "—" if x is None or x != x else f"{x:.1%}"


def targets_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Targets met/unmet (``summary["targets"]`` of the coverage step)."""
    rows = summary.get("targets") or []
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if "met" in df:
        df["met"] = df["met"].map(lambda v: "达标 met" if v is True else ("未达标 unmet" if v is False else "—"))
    keep = [c for c in ("name", "metric", "tiers", "target", "actual", "met") if c in df]
    df = df[keep].rename(columns={"name": "目标 Target", "metric": "指标 Metric", "tiers": "层级 Tiers",
                                  "target": "目标值 Target", "actual": "现状 Actual", "met": "达标 Met"})
    for c in df.columns:
        df[c] = df[c].map(lambda v: "、".join(map(str, v)) if isinstance(v, (list, tuple))
                          else (f"{v:.4g}" if isinstance(v, float) else v))
    return df.astype(str)


@dataclass
class CoverageOverview:
    """The coverage panel: headline share, per-township table, gaps."""

    headline: float | None
    by_township: pd.DataFrame | None
    gaps: pd.DataFrame | None
    label: str = "人口覆盖率 Population covered"


def coverage_overview(output: StepOutput) -> CoverageOverview:
    """Coverage panel tables from the coverage step's result (``context["coverage"]``)."""
    res = output.context.get("coverage")
    cov = output.summary.get("coverage") or {}
    head = cov.get("population_covered_share")
    by_tw = None
    headline = getattr(res, "headline", None)
    if headline is not None and isinstance(getattr(headline, "by_township", None), pd.DataFrame):
        t = headline.by_township
        cols = [c for c in ("township", "population", "covered_population", "population_share",
                            "households", "covered_households", "household_share") if c in t]
        by_tw = pd.DataFrame(t[cols]).round({"population": 0, "covered_population": 0, "households": 0,
                                             "covered_households": 0, "population_share": 3,
                                             "household_share": 3}).rename(columns={
            "township": "镇街 Township", "population": "人口 Population",
            "covered_population": "覆盖人口 Covered", "population_share": "人口覆盖率 Share",
            "households": "户数 Households", "covered_households": "覆盖户数 Covered households",
            "household_share": "户数覆盖率 Household share"})
    gaps = getattr(res, "gaps", None)
    if isinstance(gaps, pd.DataFrame) and len(gaps):
        cols = [c for c in ("rank", "township", "population", "households", "area_km2") if c in gaps]
        gaps = pd.DataFrame(gaps[cols]).rename(columns={
            "rank": "排名 Rank", "township": "镇街 Township", "population": "未覆盖人口 Uncovered residents",
            "households": "未覆盖户数 Households", "area_km2": "面积 km²"})
    else:
        gaps = None
    label = "人口覆盖率 Population covered"
    std = getattr(headline, "standard", None)
    if std is not None:
        from gis.schema import TIER_LABEL_ZH, Tier

        tier = str(getattr(std, "tier", ""))
        tier_zh = TIER_LABEL_ZH.get(Tier(tier), tier) if tier in {t.value for t in Tier} else tier
        mode = {"walk": "步行 walk", "drive": "车行 drive"}.get(str(getattr(std, "mode", "")), str(getattr(std, "mode", "")))
        dist = getattr(std, "distance_m", None)
        method = cov.get("method", "")
        label += f" — {tier_zh} {tier}, {mode} {dist:.0f} m ({method})" if dist else f" — {tier_zh} {tier} ({method})"
    return CoverageOverview(None if head is None else float(head), by_tw, gaps, label)


def recommended_table(output: StepOutput) -> pd.DataFrame | None:
    """Recommended new sites (MCLP) from the coverage step's siting outcome."""
    res = output.context.get("coverage")
    siting = getattr(res, "siting", None)
    rec = getattr(siting, "recommended", None)
    if not isinstance(rec, pd.DataFrame) or len(rec) == 0:
        return None
    cols = [c for c in ("rank", "candidate_id", "name", "township", "kind", "gain_population", "cumulative_share",
                        "solver") if c in rec]
    return pd.DataFrame(rec[cols]).rename(columns={
        "rank": "顺序 Rank", "candidate_id": "候选编号 Candidate", "name": "名称 Name", "township": "镇街 Township",
        "kind": "类型 Kind", "gain_population": "新增覆盖人口 Residents newly covered",
        "cumulative_share": "累计覆盖率 Cumulative share", "solver": "求解 Solver"})


@dataclass(frozen=True)
class InspectorFilter:
    """Inspector filters: townships, incident kinds, last incident on/after a date."""

    townships: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None
    levels: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return bool(self.townships or self.kinds or self.since or self.until or self.levels)

    def incidents(self, inc: pd.DataFrame) -> pd.DataFrame:
        """Incident records passing the filters (township, kind, date window; 四山 level via ``levels_of``)."""
        keep = pd.Series(True, index=inc.index)
        if self.townships and "township" in inc:
            keep &= inc["township"].astype(str).isin(self.townships)
        if self.kinds and "kind" in inc:
            keep &= inc["kind"].astype(str).isin(self.kinds)
        if "date" in inc and (self.since or self.until):
            d = pd.to_datetime(inc["date"], errors="coerce")
            if self.since:
                keep &= d >= pd.Timestamp(self.since)
            if self.until:
                keep &= d <= pd.Timestamp(self.until)
        return inc.loc[keep]

    def ledger(self, led: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
        """问题台账 rows passing the filters.

        Township: the row's 镇街. A cluster row (``cluster_id``) passes when its cluster
        is in ``clusters`` (already filtered by :meth:`mask`). A site row has no incident
        kind or date: a kind or date filter leaves it out; its 四山 level is read from
        its 问题类型 (禁建区 / 重点控建区 / 一般控建区).
        """
        keep = pd.Series(True, index=led.index)
        if self.townships and "镇街" in led:
            keep &= led["镇街"].astype(str).isin(self.townships)
        cid = led["cluster_id"] if "cluster_id" in led else pd.Series(pd.NA, index=led.index)
        is_cluster = cid.notna()
        ok_cluster = cid.astype("string").isin(set(clusters["cluster_id"].astype(str)) if "cluster_id" in clusters else set())
        site_ok = pd.Series(not (self.kinds or self.since or self.until), index=led.index)
        if self.levels:
            text = led.get("问题类型", pd.Series("", index=led.index)).astype(str)
            site_ok &= text.map(lambda t: any(ZONE_ZH[lv] in t for lv in self.levels if lv in ZONE_ZH))
        keep &= (is_cluster & ok_cluster.fillna(False).astype(bool)) | (~is_cluster & site_ok)
        return led.loc[keep.astype(bool)]

    def mask(self, df: pd.DataFrame) -> pd.Series:
        """Rows of a cluster/priority/ledger table that pass the filters."""
        keep = pd.Series(True, index=df.index)
        if self.townships:
            tw_col = next((c for c in ("townships", "township", "镇街") if c in df), None)
            if tw_col is not None:
                want = set(self.townships)
                keep &= df[tw_col].map(
                    lambda v: bool(want & set(v)) if isinstance(v, (list, tuple, np.ndarray)) else
                    any(t in str(v) for t in want)
                )
        if self.kinds and "kinds" in df:
            want_k = set(self.kinds)
            keep &= df["kinds"].map(lambda v: bool(want_k & set(v)) if isinstance(v, (list, tuple, np.ndarray))
                                    else str(v) in want_k)
        if self.since is not None and "last_date" in df:
            keep &= pd.to_datetime(df["last_date"]) >= pd.Timestamp(self.since)
        if self.until is not None and "first_date" in df:
            keep &= pd.to_datetime(df["first_date"]) <= pd.Timestamp(self.until)
        if self.levels and "four_mountains_level" in df:
            keep &= df["four_mountains_level"].astype("string").isin(self.levels).fillna(False).astype(bool)
        return keep


@dataclass
class HotspotOverview:
    """The inspector panel: counts and tables."""

    n_clusters: int
    n_in_four_mountains: int
    n_rebounds: int
    priority: pd.DataFrame
    in_four_mountains: pd.DataFrame
    rebounds: pd.DataFrame


_PRIORITY_COLS = {
    "rank": "优先级 Rank", "score": "得分 Score", "cluster_id": "聚集区 Cluster", "township": "镇街 Township",
    "address": "地址 Address", "n_incidents": "事件数 Incidents", "kinds": "问题类型 Kinds",
    "first_date": "最早 First", "last_date": "最近 Last", "four_mountains_level": "四山级别 Four-Mountains level",
    "rebound": "反弹 Rebound", "lead_departments": "牵头单位 Lead", "support_departments": "配合单位 Support",
}


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(df[[c for c in _PRIORITY_COLS if c in df]]).copy()
    if "kinds" in out:
        from gis.schema import INCIDENT_KIND_LABEL_ZH

        zh = {k.value: v for k, v in INCIDENT_KIND_LABEL_ZH.items()}
        out["kinds"] = out["kinds"].map(
            lambda ks: "、".join(zh.get(k, str(k)) for k in ks) if isinstance(ks, (list, tuple, np.ndarray)) else ks)
    if "four_mountains_level" in out:
        out["four_mountains_level"] = out["four_mountains_level"].map(lambda v: ZONE_ZH.get(v, "") if v else "")
    for c in ("lead_departments", "support_departments"):
        if c in out:
            out[c] = out[c].map(lambda v: "、".join(v) if isinstance(v, (list, tuple, np.ndarray)) else v)
    for c in ("first_date", "last_date"):
        if c in out:
            out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d")
    return out.rename(columns=_PRIORITY_COLS)


def hotspot_overview(output: StepOutput, filt: InspectorFilter | None = None) -> HotspotOverview:
    """Inspector tables from the hotspot step's result (``context["hotspots"]``).

    Counts are those of the filtered priority list; with no filter they equal the
    step's ``summary["hotspots"]``.
    """
    res = output.context.get("hotspots")
    filt = filt or InspectorFilter()
    pr = getattr(res, "priority", None)
    pr = pr if isinstance(pr, pd.DataFrame) else pd.DataFrame()
    pr = pr[filt.mask(pr)] if len(pr) else pr
    fm = pr[pr["four_mountains_level"].notna()] if "four_mountains_level" in pr else pr.iloc[0:0]
    rb = pr[pr["rebound"].fillna(False).astype(bool)] if "rebound" in pr else pr.iloc[0:0]
    return HotspotOverview(
        n_clusters=int(len(pr)),
        n_in_four_mountains=int(len(fm)),
        n_rebounds=int(len(rb)),
        priority=_readable(pr),
        in_four_mountains=_readable(fm),
        rebounds=_readable(rb),
    )


def ledger_preview(output: StepOutput, filt: InspectorFilter | None = None,
                   clusters: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The 问题台账 rows (``context["ledgers"].ledger``) passing the filters (:meth:`InspectorFilter.ledger`;
    ``clusters``: the filtered priority list, see :func:`filtered_clusters`)."""
    ledgers = output.context.get("ledgers")
    led = getattr(ledgers, "ledger", None)
    if not isinstance(led, pd.DataFrame):
        return None
    if filt is not None and filt.active:
        hot = clusters if clusters is not None else pd.DataFrame({"cluster_id": []})
        led = filt.ledger(led, hot)
    return pd.DataFrame(led.drop(columns=[c for c in ("geometry",) if c in led.columns]))


def filtered_clusters(output: StepOutput, filt: InspectorFilter) -> pd.DataFrame:
    """The hotspot step's priority list (raw columns) passing the filters."""
    pr = getattr(output.context.get("hotspots"), "priority", None)
    if not isinstance(pr, pd.DataFrame) or not len(pr):
        return pd.DataFrame({"cluster_id": []})
    return pr[filt.mask(pr)]


def filtered_ledger_file(output: StepOutput, filt: InspectorFilter, clusters: pd.DataFrame, out: str | Path,
                         *, sample: bool = False) -> Path | None:
    """Write the filtered 问题台账 (``problem_ledger.xlsx``, official form) into ``out`` with the ledger writer."""
    from gis import ledgers as lg

    full = output.context.get("ledgers")
    led = getattr(full, "ledger", None)
    if not isinstance(led, pd.DataFrame):
        return None
    sub = filt.ledger(led, clusters) if filt.active else led
    sub = sub.copy()
    sub["序号"] = np.arange(1, len(sub) + 1)
    part = lg.LedgerSet(sub, full.summary, full.survey, full.district_name, full.townships)
    return lg.write_ledgers(part, out, sample=sample)["problem_ledger"]


# ---------------------------------------------------------------------------------
# Municipal page (市级汇总): a municipality or a folder of per-district results
# ---------------------------------------------------------------------------------

#: Pipeline steps run per district for the roll-up (what :func:`gis.municipal.rollup` reads).
MUNICIPAL_STEPS: tuple[str, ...] = ("compliance", "coverage", "hotspots", "ledgers")
NEEDS_MUNICIPALITY = (
    "市级汇总需要一个市（多区县）项目：含 municipality.yaml 的文件夹，或各区县 `gis run` 结果所在的文件夹。"
    "当前项目是单个区县，没有可汇总的数据。 — The municipal roll-up needs a municipality: a folder with "
    "municipality.yaml, or a folder of per-district `gis run` results. This project is a single district, "
    "so there is nothing to roll up."
)


def project_kind(path: str | Path) -> str:
    """``municipality`` (holds ``municipality.yaml``), ``runs`` (per-district results) or ``district``.

    A folder holding ``project.yaml`` (or the file itself) is a district; a folder
    whose ``districts/<code>/`` or ``<any>/`` sub-folders hold ``summary.json``
    (:func:`gis.municipal.district_runs`) is a folder of results.
    """
    from gis._errors import GisError
    from gis.municipal import district_runs, is_municipality

    p = Path(path)
    if is_municipality(p):
        return "municipality"
    if p.is_dir() and not (p / "project.yaml").exists():
        try:
            found = district_runs(p)
        except GisError:
            return "district"
        if found and found != [p]:
            return "runs"
    return "district"


def is_openable_project(path: Path) -> bool:
    """Whether the app can open ``path``: a municipality, a folder of results, or a district
    folder holding ``project.yaml`` (or the YAML file itself)."""
    if project_kind(path) != "district":
        return True
    return (path / "project.yaml").is_file() or (path.suffix in (".yaml", ".yml") and path.is_file())


def folder_key(path: str | Path) -> str:
    """A cache key that changes whenever an input file under ``path`` changes (size or mtime).

    The districts' campaign stores (``campaign*.gpkg``, ``campaign_rejects/``) are left out:
    running the districts writes them, and must not change the key of their results.
    """
    from gis.campaign import is_campaign_file  # each district's campaign store is state, not an input

    p = Path(path).resolve()
    return _files_key(p, str(p), lambda rel: "campaign_rejects" in rel.parts or is_campaign_file(rel.name))


def municipal_district_runs(
    index_folder: str | Path, runs: str | Path, *, steps: Iterable[str] = MUNICIPAL_STEPS,
    on_district: Callable[[int, int, str], Any] | None = None,
) -> Path:
    """Run every district of a municipality (``gis run``) into ``runs/districts/<code>/``.

    Districts whose results are already complete (a ``.done`` marker written after
    their ``summary.json``) are skipped, so an interrupted run resumes.
    ``on_district(i, n, name)`` is called before each district (progress display).
    """
    from gis import pipeline
    from gis.municipal import district_folder, load_index

    index = load_index(index_folder)
    root: Path = index["root"]
    runs = Path(runs)
    entries = index["districts"]
    for i, e in enumerate(entries):
        out = runs / "districts" / str(e["code"])
        if (out / ".done").exists():
            continue
        if on_district is not None:
            on_district(i, len(entries), str(e["name"]))
        try:
            pipeline.run(district_folder(root, e), out, steps=list(steps), progress=False)
        except OutputLockedError:  # another session is running this district: wait, then use its result
            outdir.wait_unlocked(out)
            if not (out / "summary.json").exists():  # that run failed: run it here (its error, if any, is ours)
                pipeline.run(district_folder(root, e), out, steps=list(steps), progress=False)
        (out / ".done").touch()
    return runs


def municipal_runs_complete(index_folder: str | Path, runs: str | Path) -> bool:
    """Whether every district of the municipality has results under ``runs``."""
    from gis.municipal import load_index

    index = load_index(index_folder)
    return all((Path(runs) / "districts" / str(e["code"]) / ".done").exists() for e in index["districts"])


@dataclass
class MunicipalOverview:
    """The municipal page: headline figures and tables of a :class:`gis.municipal.Rollup`."""

    headline: dict[str, Any]
    targets_by_district: pd.DataFrame
    targets: pd.DataFrame
    coverage: pd.DataFrame
    ranges: pd.DataFrame
    cross_border: pd.DataFrame
    departments: pd.DataFrame
    departments_by_district: pd.DataFrame


_RANGE_COLS = {"range": "山系 Range", "clusters": "聚集区 Clusters", "cross_border": "跨区 Cross-border",
               "incidents": "事件数 Incidents", "no_build": "禁建区内 In no-build zone", "districts": "涉及区县 Districts"}
_CROSS_COLS = {"merged_id": "编号 ID", "range": "山系 Range", "districts": "涉及区县 Districts",
               "n_parts": "区内分段 Parts", "n_incidents": "事件数 Incidents", "main_kind": "主要类型 Main kind",
               "four_mountains_level": "四山级别 Level"}


def municipal_overview(r: Rollup) -> MunicipalOverview:
    """Page tables from a :class:`gis.municipal.Rollup` (no figure is recomputed here).

    ``headline`` holds the roll-up's own ``summary`` keys; the tables are its
    ``districts``, ``targets``, ``coverage``, ``ranges``, ``clusters`` (cross-border
    ones) and ``departments`` frames with bilingual column names.
    """
    s = r.summary
    d = pd.DataFrame(r.districts.drop(columns="geometry"))
    tbd = pd.DataFrame({
        "区县 District": d["区县"], "代码 Code": d["代码"].astype(str),
        "达标 Targets met": [f"{m}/{n}" for m, n in zip(d["达标指标数"], d["指标数"])],
        "网点 Sites": d["网点数"], "违规 Violations": d["违规条数"], "聚集区 Clusters": d["聚集区数"],
        "四山聚集区 In Four-Mountains": d["四山聚集区数"], "问题台账 Problems": d["问题台账条数"],
    })
    tg = r.targets.copy()
    tg["代码"] = tg["代码"].astype(str)
    tg = tg.rename(columns={"区县": "区县 District", "代码": "代码 Code", "指标": "指标 Target", "口径": "口径 Metric",
                            "目标值": "目标值 Target value", "实际值": "实际值 Actual", "是否达标": "是否达标 Met"})
    for c in ("目标值 Target value", "实际值 Actual"):
        tg[c] = tg[c].map(lambda v: "、".join(map(str, v)) if isinstance(v, (list, tuple)) else v).astype(str)
    cov = r.coverage.copy()
    cov["代码"] = cov["代码"].astype(str)
    cov = cov.rename(columns={"区县": "区县 District", "代码": "代码 Code", "覆盖口径": "覆盖口径 Tier",
                              "方式": "方式 Method", "服务半径(米)": "服务半径(米) Radius (m)",
                              "常住人口": "常住人口 Population", "覆盖人口": "覆盖人口 Covered",
                              "人口覆盖率": "人口覆盖率 Share", "户覆盖率": "户覆盖率 Household share",
                              "覆盖缺口数": "覆盖缺口数 Gaps"})
    ranges = pd.DataFrame(r.ranges).rename(columns=_RANGE_COLS)
    cl = r.clusters
    cb = pd.DataFrame(cl.loc[cl["cross_border"].astype(bool)].drop(columns="geometry")) if len(cl) else pd.DataFrame(columns=list(_CROSS_COLS))
    cb = cb[[c for c in _CROSS_COLS if c in cb]].rename(columns=_CROSS_COLS)
    if "四山级别 Level" in cb:
        cb["四山级别 Level"] = cb["四山级别 Level"].map(lambda v: ZONE_ZH.get(v, "") if isinstance(v, str) else "")
    dep = r.departments.groupby("牵头部门", as_index=False)[["违规条数", "台账问题数"]].sum()
    dep = dep.sort_values(["违规条数", "台账问题数"], ascending=False).reset_index(drop=True)
    dep = dep.rename(columns={"牵头部门": "牵头部门 Lead department", "违规条数": "违规条数 Violations",
                              "台账问题数": "台账问题数 Ledger problems"})
    dbd = r.departments.copy()
    dbd["代码"] = dbd["代码"].astype(str)
    dbd = dbd.rename(columns={"牵头部门": "牵头部门 Lead department", "区县": "区县 District", "代码": "代码 Code",
                              "违规条数": "违规条数 Violations", "台账问题数": "台账问题数 Ledger problems"})
    return MunicipalOverview(dict(s), tbd, tg, cov, ranges, cb, dep, dbd)
