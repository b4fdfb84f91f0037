"""Typed, frozen analysis parameters, read once from ``layers/*.yaml`` and ``project.yaml``.

One frozen dataclass per config section (:class:`ComplianceParams`,
:class:`CoverageParams` with :class:`SitingParams`, :class:`HotspotsParams`,
:class:`MapParams`, :class:`TargetParams`; the toolkit-wide :class:`MunicipalParams`,
:class:`SolverParams`, :class:`RoadgraphParams` and :class:`LimitsParams`, which no
project overrides) and :class:`Params` holding them with the top-level project keys
(``outside_tolerance_m``). :data:`SECTIONS` lists them; ``tests/test_params.py``
checks every one (and fails on a ``layers/*.yaml`` file that is in no section). Every field's value comes from
``layers/<section>.yaml`` deep-merged with the project's ``<section>:`` block: no
numeric default is written in code (``tests/test_params.py`` checks that the
dataclass fields and the YAML keys are the same sets).

Unknown or misspelt keys (``outside_tolerence_m``, ``hotspots.clusterz``,
``target:`` for ``targets:``) and values of the wrong type (``distance_m: "abc"``)
raise :class:`gis._errors.CatalogError`, one line naming the file, the dotted key
path and the nearest valid key (:func:`difflib.get_close_matches`). ``gis
validate`` and ``gis run`` build the parameters before any analysis.

Sections are read-only mappings too (``cfg["k_new"]`` works like ``cfg.k_new``),
so code written against the former ``dict`` sections keeps working; new code
uses attributes. Change a value with :func:`dataclasses.replace`.

Examples
--------
>>> from gis.params import load_params
>>> p = load_params("data/sample_district")                     # doctest: +SKIP
>>> p.coverage.service_standards["collection_point"].distance_m  # doctest: +SKIP
500.0
>>> p2 = p.with_service_radius(300.0)                            # doctest: +SKIP
>>> p2.coverage.service_standards["drop_off_point"].distance_m   # doctest: +SKIP
300.0
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from gis import settings
from gis._errors import CatalogError
from gis.catalog import Project, deep_merge, load_project, load_yaml


class Section:
    """Base of the parameter sections: a frozen dataclass that reads like a mapping."""

    def __getitem__(self, key: str) -> Any:
        if key in self.keys():
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]`` when the section has that field, else ``default``."""
        return getattr(self, key) if key in self.keys() else default

    def keys(self) -> tuple[str, ...]:
        """Field names (the YAML keys of the section)."""
        return tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the section (nested sections too)."""
        return {k: _plain(getattr(self, k)) for k in self.keys()}


def _plain(v: Any) -> Any:
    if isinstance(v, Section):
        return v.to_dict()
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------------
# coverage.yaml
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceStandard(Section):
    """Service standard of one tier: travel ``mode`` (walk/drive/district) and radius ``distance_m``."""

    mode: str
    distance_m: float | None
    label_zh: str


@dataclass(frozen=True)
class HouseholdsPerPoint(Section):
    """Households one collection point serves at most (urban / rural 镇街), for ``tiers``."""

    urban: float
    rural: float
    tiers: tuple[str, ...]


@dataclass(frozen=True)
class GapParams(Section):
    """Coverage gaps: smallest uncovered population reported, most gaps listed."""

    min_population: float
    max_gaps: int


@dataclass(frozen=True)
class SitingParams(Section):
    """New-site recommendation (MCLP: ``k_new`` sites; LSCP: reach ``target_share``)."""

    candidates: str
    grid_spacing_m: float
    k_new: int
    target_share: float
    max_new: int
    exact_max_candidates: int
    exact_max_demand: int
    exact_time_limit_s: float
    # optional overrides of layers/siting.yaml (solver settings), None = the siting.yaml value
    exact_max_nnz: int | None = None
    mip_rel_gap: float | None = None
    presolve: bool | None = None
    preferred_bonus_residents: float | None = None


@dataclass(frozen=True)
class SolverParams(Section):
    """``layers/siting.yaml``: the exact siting solver (HiGHS) settings.

    A project overrides them under ``coverage: siting:`` (:class:`SitingParams`).
    """

    exact_max_nnz: int
    exact_time_limit_s: float
    mip_rel_gap: float
    presolve: bool
    preferred_bonus_residents: float


@dataclass(frozen=True)
class ServiceAreaDisplay(Section):
    """How a network service area is drawn: concave hull of the reached nodes, then a buffer."""

    concave_ratio: float
    buffer_m: float
    threads_from_sites: int


@dataclass(frozen=True)
class CoverageParams(Section):
    """``layers/coverage.yaml``: service standards per tier, speeds, snapping, gaps, siting."""

    service_standards: dict[str, ServiceStandard]
    headline_tier: str
    speeds_kmh: dict[str, dict[str, float | None]]
    node_tolerance_m: float
    max_snap_m: float
    service_area_display: ServiceAreaDisplay
    households_per_point: HouseholdsPerPoint
    gaps: GapParams
    siting: SitingParams


# ---------------------------------------------------------------------------------
# hotspots.yaml
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanMixtureParams(Section):
    """The mixture step of the scan detector (:mod:`gis.cluster_mixture`)."""

    min_sigma_m: float
    max_sigma_m: float | None
    reach_sigmas: float
    fit_background: bool
    sectors: int
    criterion: str
    split: bool
    max_iter: int
    tol: float
    place_sigmas: float
    time: bool
    min_tau_days: float
    assign_sigmas: float
    propose: str
    propose_tol: float
    split_max_iter: int
    accelerate: str
    max_step: float


@dataclass(frozen=True)
class ScanParams(Section):
    """The local-background scan detector (:mod:`gis.cluster_scan`)."""

    radii_m: tuple[float, ...]
    annulus_m: tuple[float, ...]
    core_p: float
    link_m: float
    attach_m: float
    bandwidth_m: float
    neighbours: int
    merge: str
    merge_link_m: float
    merge_saddle_ratio: float
    min_background_per_km2: float
    mixture: ScanMixtureParams


@dataclass(frozen=True)
class SignificanceParams(Section):
    """Per-cluster significance: observed vs expected from the local background, BH q-values."""

    annulus_m: tuple[float, ...]
    sectors: int
    radius_sigmas: float
    window_overlap: float
    min_radius_m: float
    min_background_per_km2: float
    alpha: float
    controls: bool
    background: str


@dataclass(frozen=True)
class ClusterParams(Section):
    """Incident clusters (DBSCAN / HDBSCAN) and their outlines."""

    method: str
    group_by: str | None
    kinds: tuple[str, ...] | None
    start: str | None
    end: str | None
    min_cluster_size: int
    eps_m: float | None
    eps_bounds_m: tuple[float, ...]
    hdbscan_min_samples: int | None
    hdbscan_min_probability: float
    outline: str
    concave_ratio: float
    outline_buffer_m: float
    max_spread_m: float
    scan: ScanParams
    significance: SignificanceParams


@dataclass(frozen=True)
class GiStarParams(Section):
    """Getis-Ord Gi* on a hexagon grid."""

    cell_size_m: float | None
    cell_size_factor: float
    cell_size_bounds_m: tuple[float, ...]
    max_cells: int
    weights: str
    band_cells: float
    knn: int
    fdr: bool
    permutations: int
    seed: int
    kinds: tuple[str, ...] | None


@dataclass(frozen=True)
class DensityParams(Section):
    """Kernel density (核密度) surface."""

    bandwidth_m: float | None
    cell_size_m: float
    padding_m: float | None
    max_pixels: int


@dataclass(frozen=True)
class EmergingParams(Section):
    """Emerging hot-spot analysis (space-time Gi*, Mann-Kendall)."""

    time_step: str
    neighborhood_time_steps: int
    alpha: float
    fdr: bool
    max_steps: int
    min_steps: int
    stages: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ReboundParams(Section):
    """Rebound (反弹): new incidents near a closed site soon after its closure."""

    distance_m: float
    window_days: int
    closed_statuses: tuple[str, ...]
    same_kind: bool
    min_closed_share: float


@dataclass(frozen=True)
class PriorityParams(Section):
    """Priority score of clusters and the deadlines by score."""

    weights: dict[str, float]
    unknown_kind_severity: float
    recency_half_life_days: float
    as_of: str | None
    deadline_days: tuple[dict[str, float], ...]


@dataclass(frozen=True)
class KindParams(Section):
    """One incident kind: severity, lead / support departments, legal basis, measures."""

    support: tuple[str, ...]
    basis: str
    measures: str
    lead: tuple[str, ...] = ()
    severity: float | None = None  # none: priority.unknown_kind_severity


@dataclass(frozen=True)
class FourMountainsParams(Section):
    """Departments, basis and measures added for clusters in the 四山 zones."""

    support: tuple[str, ...]
    basis: str
    measures: str


@dataclass(frozen=True)
class HotspotsParams(Section):
    """``layers/hotspots.yaml``: clusters, Gi*, density, emerging, rebound, priority, kinds."""

    clusters: ClusterParams
    gistar: GiStarParams
    density: DensityParams
    emerging: EmergingParams
    rebound: ReboundParams
    priority: PriorityParams
    kinds: dict[str, KindParams]
    four_mountains: FourMountainsParams


# ---------------------------------------------------------------------------------
# compliance.yaml, map.yaml, targets.yaml, project.yaml
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkageParams(Section):
    """Hierarchy linkage (三级衔接): point → transfer station → sorting centre."""

    serving_statuses: tuple[str, ...]
    linked_statuses: tuple[str, ...]
    distance: str
    network_mode: str
    point_max_distance_m: float
    station_max_distance_m: float
    point_demand_t_per_day: dict[str, float]
    default_capacity_t_per_day: dict[str, float]
    capacity: str
    snap_max_distance_m: float


@dataclass(frozen=True)
class LedgerParams(Section):
    """问题台账 / 摸排表 presentation."""

    reference_date: str | None
    status_open: str
    status_closed: str
    status_rectified: str
    verdicts_in_ledger: tuple[str, ...]
    elv_scope_keywords: tuple[str, ...]


@dataclass(frozen=True)
class CampaignRefParams(Section):
    """The district's own campaign plan (专项整治行动实施方案) cited by rules with ``cite_campaign``."""

    plan_title: str | None


@dataclass(frozen=True)
class RuleDefaults(Section):
    """Values a rule takes when it does not set them (整改时限 ``deadline_days``)."""

    deadline_days: int


@dataclass(frozen=True)
class ComplianceParams(Section):
    """``layers/compliance.yaml``: the rule table (validated by the rules reader), linkage, ledger."""

    rules: tuple[dict[str, Any], ...]
    rule_overrides: dict[str, Any]
    receptor_search_m: float
    rule_defaults: RuleDefaults
    campaign: CampaignRefParams
    linkage: LinkageParams
    ledger: LedgerParams


@dataclass(frozen=True)
class MapSheetParams(Section):
    """Print-ready map sheets (专题图, :mod:`gis.map_sheets`)."""

    enabled: bool
    paper: str
    overview_paper: str
    dpi: int
    pad_ratio: float
    layers: tuple[str, ...]
    png_compress_level: int
    workers: int


@dataclass(frozen=True)
class MapParams(Section):
    """``layers/map.yaml``: basemap tiles and drawing limits."""

    tiles: str | None
    attribution: str | None
    subdomains: str | None
    annotation_tiles: str | None
    max_plain_markers: int
    max_page_points: int
    max_vector_polygons: int
    max_vertices: int
    simplify_m: float
    max_text_chars: int
    width: int
    height: int
    sheets: MapSheetParams


@dataclass(frozen=True)
class Target(Section):
    """One target (目标): ``metric`` of a ``category`` (or ``tiers``) must reach ``target``.

    Only ``metric`` and ``target`` are required; the other keys apply to some metrics
    (see ``layers/targets.yaml`` and :mod:`gis.targets`, which checks their meaning).
    """

    metric: str
    target: float
    name: str | None = None
    tiers: tuple[str, ...] | str | None = None
    category: tuple[str, ...] | str | None = None
    table: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    only: str | None = None
    mode: str | None = None
    distance_m: float | None = None
    min_per_township: int | None = None
    min_per_street: int | None = None
    min_per_town: int | None = None


@dataclass(frozen=True)
class TargetRowDefaults(Section):
    """Values a target row takes when it does not set them."""

    min_per_township: int


@dataclass(frozen=True)
class TargetParams(Section):
    """``layers/targets.yaml``: the default target table (a project's ``targets:`` replaces it)."""

    row_defaults: TargetRowDefaults
    default: tuple[Target, ...]


@dataclass(frozen=True)
class ProjectParams(Section):
    """``layers/project.yaml``: top-level project keys with a toolkit-wide default."""

    outside_tolerance_m: float


@dataclass(frozen=True)
class MunicipalParams(Section):
    """``layers/municipal.yaml``: the Dask engine's cross-border grid and distances."""

    coverage_tiers: tuple[str, ...]
    hex_spacing_m: float
    eps_m: float
    merge_distance_m: float


@dataclass(frozen=True)
class RoadgraphParams(Section):
    """``layers/roadgraph.yaml``: the road-graph cache folder (``None`` = no cache)."""

    cache_dir: str | None


@dataclass(frozen=True)
class DistanceSlider(Section):
    """A distance slider of the app (metres): service radius, cluster distance."""

    min: float
    max: float
    step: float


@dataclass(frozen=True)
class KSlider(Section):
    """The app's new-sites slider (k of the MCLP)."""

    min: int
    max: int


@dataclass(frozen=True)
class WhatIfParams(Section):
    """The planner's "N new sites to reach X %" solve (HiGHS time limit)."""

    time_limit_s: float


@dataclass(frozen=True)
class AppParams(Section):
    """``layers/app.yaml``: slider ranges and what-if limits of the map app (``app.py``)."""

    radius_slider_m: DistanceSlider
    eps_slider_m: DistanceSlider
    k_slider: KSlider
    what_if: WhatIfParams


# ---------------------------------------------------------------------------------
# limits.yaml (never overridden by a project: an upload cannot raise its own limits)
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateLimits(Section):
    """Plausible-date window (合理日期范围) ``[min, today + max_days_after_today]``."""

    min: str
    max_days_after_today: int


@dataclass(frozen=True)
class YamlLimitParams(Section):
    """Alias / expansion / size bounds of every YAML file read (:mod:`gis.safeyaml`)."""

    max_aliases: int
    max_expanded_nodes: int
    max_bytes: int


@dataclass(frozen=True)
class UploadLimitParams(Section):
    """Upload quotas of the app (MiB, entries, compression ratio)."""

    max_zip_mib: float
    max_unpacked_mib: float
    max_entries: int
    max_ratio: float
    max_total_mib: float


@dataclass(frozen=True)
class LocalFolderLimits(Section):
    """Folders the app's local-folder mode may open (``None`` = any; :func:`gis.confine.local_roots`)."""

    roots: tuple[str, ...] | None


@dataclass(frozen=True)
class AnalysisLimits(Section):
    """Sizes checked before allocation (raster cells, grid cells, road-network nodes), and the
    size from which ``gis run`` releases each step's results once written (``lean_run_from_rows``)."""

    max_raster_cells: int
    max_grid_cells: int
    max_network_nodes: int
    lean_run_from_rows: int


@dataclass(frozen=True)
class LimitsParams(Section):
    """``layers/limits.yaml``: the security and resource limits (:mod:`gis.limits`)."""

    dates: DateLimits
    yaml: YamlLimitParams
    upload: UploadLimitParams
    local_folders: LocalFolderLimits
    analysis: AnalysisLimits


#: Section name → its dataclass (file ``layers/<name>.yaml``).
SECTIONS: dict[str, type[Section]] = {
    "compliance": ComplianceParams,
    "coverage": CoverageParams,
    "hotspots": HotspotsParams,
    "map": MapParams,
    "targets": TargetParams,
    "project": ProjectParams,
    "municipal": MunicipalParams,
    "siting": SolverParams,
    "roadgraph": RoadgraphParams,
    "limits": LimitsParams,
    "app": AppParams,
}

#: Sections that are not a ``<name>:`` block of ``project.yaml``: ``project`` keys are
#: top-level, ``targets`` is a list, ``siting`` is overridden under ``coverage: siting:``;
#: ``municipal``, ``roadgraph`` and ``limits`` are toolkit-wide (an upload cannot raise its limits).
NOT_PROJECT_SECTIONS: tuple[str, ...] = ("project", "targets", "municipal", "siting", "roadgraph", "limits")
#: Sections read from ``layers/`` only (no project override at all).
TOOLKIT_SECTIONS: tuple[str, ...] = ("municipal", "siting", "roadgraph", "limits")

#: Top-level keys of ``project.yaml`` that are not parameter sections.
PROJECT_KEYS: tuple[str, ...] = (
    "name", "code", "sample", "label", "generator", "crs", "layers", "targets", "target_tables", "categories",
    "campaign",  # typed by gis.campaign.CampaignParams (layers/campaign.yaml)
)


@dataclass(frozen=True)
class Params:
    """All analysis parameters of one district (what the steps, the app and the Dask engine read)."""

    project: ProjectParams
    compliance: ComplianceParams
    coverage: CoverageParams
    hotspots: HotspotsParams
    map: MapParams
    targets: tuple[Target, ...]
    municipal: MunicipalParams
    solver: SolverParams
    roadgraph: RoadgraphParams
    limits: LimitsParams
    app: AppParams

    @property
    def outside_tolerance_m(self) -> float:
        """How far outside the townships a point may lie before it is rejected."""
        return self.project.outside_tolerance_m

    def with_service_radius(self, radius_m: float) -> Params:
        """A copy with the walking radius of collection and drop-off points set (the app's slider)."""
        std = dict(self.coverage.service_standards)
        for tier in ("collection_point", "drop_off_point"):
            std[tier] = dataclasses.replace(std[tier], distance_m=float(radius_m))
        return dataclasses.replace(self, coverage=dataclasses.replace(self.coverage, service_standards=std))


# ---------------------------------------------------------------------------------
# Building and checking
# ---------------------------------------------------------------------------------


def _nearest(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(valid))}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any, path: Path, key: str, partial: bool) -> Any:
    """``value`` checked against the annotation ``tp`` (nested sections built)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _convert(a, value, path, key, partial)
            except CatalogError as exc:
                errors.append(exc)
        raise errors[0]
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Section):
        return _build(tp, value, path, key, partial)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise CatalogError(path, key, f"must be a list, not {value!r}")
        return tuple(_convert(args[0], v, path, f"{key}[{i}]", partial) for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise CatalogError(path, key, f"must be a mapping, not {value!r}")
        return {k: _convert(args[1], v, path, f"{key}.{k}", partial) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise CatalogError(path, key, f"must be true or false, not {value!r}")
        return value
    if tp in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or (tp is int and float(value) != int(value)):
            raise CatalogError(path, key, f"must be a{'n integer' if tp is int else ' number'}, not {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise CatalogError(path, key, f"must be text, not {value!r}")
        return str(value)
    raise CatalogError(path, key, f"unsupported parameter type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type[Section], data: Any, path: Path, key: str, partial: bool) -> Any:
    """Build (``partial=False``) or only check (``partial=True``) section ``cls`` from ``data``."""
    if not isinstance(data, Mapping):
        raise CatalogError(path, key or "(root)", f"must be a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{key}." if key else ""
    for k in data:
        if k not in hints:
            raise CatalogError(path, f"{prefix}{k}", f"unknown key; {_nearest(k, names)}")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in data and f.default is dataclasses.MISSING]  # optional keys default to None
    if missing and not partial:
        raise CatalogError(path, f"{prefix}{missing[0]}", "missing: every parameter needs a value")
    values = {k: _convert(hints[k], v, path, f"{prefix}{k}", partial) for k, v in data.items()}
    return values if partial else cls(**values)


def section_file(name: str) -> Path:
    """``layers/<name>.yaml``."""
    return settings.LAYERS_DIR / f"{name}.yaml"


def check_project_keys(project: Project) -> None:
    """Refuse unknown top-level keys of ``project.yaml`` and check each section's overrides.

    Raises
    ------
    CatalogError
        One line: the file, the dotted key path and the nearest valid key.
    """
    raw = project.raw
    valid = [*PROJECT_KEYS, *(s for s in SECTIONS if s not in NOT_PROJECT_SECTIONS),
             *(f.name for f in dataclasses.fields(ProjectParams))]
    for k in raw:
        if k in TOOLKIT_SECTIONS:
            where = "coverage: siting: in project.yaml" if k == "siting" else f"layers/{k}.yaml"
            raise CatalogError(project.path, str(k), f"not a project key: a toolkit-wide section, set in {where}")
        if k not in valid:
            raise CatalogError(project.path, str(k), f"unknown key; {_nearest(k, valid)}")
    for name, cls in SECTIONS.items():
        if name in TOOLKIT_SECTIONS:
            continue
        if name == "project":
            _build(cls, {k: raw[k] for k in raw if k in cls.__dataclass_fields__}, project.path, "", True)
        elif name == "targets":
            if raw.get("targets") is not None:
                _convert(tuple[Target, ...], raw["targets"], project.path, "targets", False)
        elif raw.get(name) is not None:
            rules = _strip_rules(name, raw[name])
            _build(cls, rules, project.path, name, True)


def _strip_rules(name: str, block: Any) -> Any:
    # the compliance rule table merges by id and is validated by the rule reader itself
    if name == "compliance" and isinstance(block, Mapping) and "rules" in block:
        return {k: v for k, v in block.items() if k != "rules"}
    return block


def build_section(name: str, project: Project | None = None) -> Section:
    """Section ``name`` from ``layers/<name>.yaml`` deep-merged with the project's overrides."""
    cls = SECTIONS[name]
    defaults = load_yaml(section_file(name))
    _build(cls, defaults, section_file(name), "", False)  # the bundled file itself is complete
    if name in TOOLKIT_SECTIONS:
        override = {}
    elif name == "project":
        override = {k: v for k, v in (project.raw if project else {}).items() if k in cls.__dataclass_fields__}
    else:
        override = (project.raw.get(name) if project else None) or {}
    if name == "targets":
        return _build(cls, defaults, section_file(name), "", False)
    merged = deep_merge(defaults, override)
    return _build(cls, merged, project.path if project and override else section_file(name), "", False)


def _assemble(project: Project | None) -> Params:
    """Every section built (``layers/*.yaml`` merged with ``project``'s overrides, if any)."""
    targets = build_section("targets", project)
    raw_targets = project.raw.get("targets") if project is not None else None
    table = (_convert(tuple[Target, ...], raw_targets, project.path, "targets", False)  # type: ignore[union-attr]
             if raw_targets is not None else targets.default)  # type: ignore[attr-defined]
    return Params(
        project=build_section("project", project),  # type: ignore[arg-type]
        compliance=build_section("compliance", project),  # type: ignore[arg-type]
        coverage=build_section("coverage", project),  # type: ignore[arg-type]
        hotspots=build_section("hotspots", project),  # type: ignore[arg-type]
        map=build_section("map", project),  # type: ignore[arg-type]
        targets=table,
        municipal=build_section("municipal", project),  # type: ignore[arg-type]
        solver=build_section("siting", project),  # type: ignore[arg-type]
        roadgraph=build_section("roadgraph", project),  # type: ignore[arg-type]
        limits=build_section("limits", project),  # type: ignore[arg-type]
        app=build_section("app", project),  # type: ignore[arg-type]
    )


def params_for(project: Project) -> Params:
    """The typed parameters of a loaded project (checks its keys first).

    Examples
    --------
    >>> from gis.catalog import load_project
    >>> p = params_for(load_project("data/sample_district"))   # doctest: +SKIP
    >>> p.coverage.siting.k_new                                 # doctest: +SKIP
    5
    """
    check_project_keys(project)
    return _assemble(project)


def load_params(project: str | Path | Project) -> Params:
    """The typed parameters of a project folder / ``project.yaml`` (or a loaded :class:`Project`).

    Examples
    --------
    >>> from gis import settings
    >>> p = load_params(settings.SAMPLE_PROJECT_DIR)
    >>> p.coverage.service_standards["collection_point"].mode
    'walk'
    >>> p.with_service_radius(300).coverage.service_standards["drop_off_point"].distance_m
    300.0
    """
    return params_for(project if isinstance(project, Project) else load_project(project))


def default_params() -> Params:
    """The toolkit-wide parameters (``layers/*.yaml`` alone, no project).

    Examples
    --------
    >>> p = default_params()
    >>> p.limits.dates.min                  # layers/limits.yaml
    '2000-01-01'
    >>> p.solver.exact_max_nnz > 0          # layers/siting.yaml
    True
    """
    return _assemble(None)


def engine_params(p: Params | None = None) -> dict[str, Any]:
    """The Dask engine's parameters (:mod:`gis.parallel`), all read from ``layers/*.yaml``.

    ``coverage_radius_m`` is the collection-point service radius, ``band_cells`` the
    Gi* band, ``min_samples`` the DBSCAN minimum and ``cluster_method`` the detector of the hotspots
    section (``scan``: the district's detector per partition, :mod:`gis.cluster_tiles`; ``dbscan``:
    DBSCAN per partition with ``eps_m``);
    ``coverage_tiers``, ``hex_spacing_m`` and ``eps_m`` come from ``municipal.yaml``.
    """
    p = p if p is not None else default_params()
    return {
        "coverage_radius_m": p.coverage.service_standards["collection_point"].distance_m,
        "coverage_tiers": list(p.municipal.coverage_tiers),
        "hex_spacing_m": p.municipal.hex_spacing_m,
        "band_cells": p.hotspots.gistar.band_cells,
        "eps_m": p.municipal.eps_m,
        "min_samples": p.hotspots.clusters.min_cluster_size,
        "cluster_method": p.hotspots.clusters.method,
    }
