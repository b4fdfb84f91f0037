"""Site compliance (合规核查) and hierarchy linkage (三级衔接).

Every site of the ledger — and every incident location — is placed against the
district's layers in one vectorised pass:

* the GB/T 21010 land-use class under it (vector overlay: a spatial index on the
  points queried with the prepared land-use polygons, *and* raster sampling by index arithmetic on a land-use
  GeoTIFF, whichever the district provides; with both, the vector wins and the
  raster fills its gaps);
* every control zone it falls in (四山 / 生态保护红线 / 永久基本农田 / 饮用水水源保护区)
  with the strictest 四山 level. **A point exactly on a zone outline counts as inside**
  (the zone *covers* it): a site on the line of a no-build zone is treated as a no-build
  site, the conservative reading for enforcement;
* the distance to the nearest sensitive receptor of each class (school, hospital,
  residential, water source), from the receptor classes of the land-use table and the
  water-source zones (STRtree nearest with a ``max_distance``);
* the township (镇街, 属地) whose polygon covers it.

Then every rule of the rule table (``layers/compliance.yaml``; see
:class:`RuleTable`) is evaluated as a boolean mask over all sites at once — the only
Python loop runs over *rules*, never over sites. Defined outcomes at the edges:

* a site on a land-use gap, on a raster nodata cell, outside the raster, or on a code
  the class table does not know gets ``landuse_code`` null and breaks the
  ``landuse_unknown`` rule (地类不明, ``needs_review``) — never a crash, never a
  silent pass;
* a site outside every township polygon gets ``township`` null and breaks the
  ``outside_townships`` rule (位置待核实, ``needs_review``);
* a layer the district does not provide skips the rules that need it; the skipped
  rule ids and the reason are kept in :attr:`ComplianceResult.skipped_rules`.

The hierarchy linkage assigns each collection / drop-off point (回收网点 / 分类投放点)
to a serving transfer station (中转分拣站) and each transfer station to a sorting
centre (分拣中心) — by shortest road-network distance (multi-source Dijkstra,
:func:`scipy.sparse.csgraph.dijkstra` with ``min_only=True``) when a road graph is
given, by straight-line distance otherwise — within the configured distance limits,
and reports orphans, overloaded stations, townships without a transfer station, and
whether the district has a working sorting centre.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import yaml

from gis._errors import AnalysisError, CatalogError
from gis.schema import TIER_LABEL_ZH, ZONE_LEVEL_LABEL_ZH, ZONE_LEVEL_RANK, Tier, ZoneLevel
from gis.settings import LAYERS_DIR

__all__ = [
    "CONDITION_TYPES",
    "VERDICT_RANK",
    "ComplianceResult",
    "LandUseClasses",
    "LinkageResult",
    "Rule",
    "RuleTable",
    "check_district",
    "check_sites",
    "link_hierarchy",
    "locate",
    "run_step",
    "sample_raster_codes",
]

#: Verdicts, from harmless to worst.
VERDICT_RANK: dict[str, int] = {"ok": 0, "needs_review": 1, "prohibited": 2}

#: Condition types of the rule table and the parameters each one requires.
CONDITION_TYPES: dict[str, tuple[str, ...]] = {
    "in_zone": ("zone_type",),
    "landuse_not_allowed": (),
    "landuse_unknown": (),
    "near_receptor": ("receptor", "distance_m"),
    "missing_attribute": ("field",),
    "below_norm": ("field", "min"),
    "outside_townships": (),
    "unlinked": (),
}

RECEPTORS: tuple[str, ...] = ("school", "hospital", "residential", "water_source")
RECEPTOR_LABEL_ZH: dict[str, str] = {
    "school": "学校",
    "hospital": "医院",
    "residential": "居住区",
    "water_source": "饮用水水源",
}
ATTRIBUTE_FIELDS: dict[str, str] = {
    "business_licence": "营业执照",
    "dismantling_qualification": "回收拆解资质认定",
    "police_filing": "公安机关备案",
}
NORM_FIELDS: dict[str, tuple[str, str]] = {
    "floor_area_m2": ("占地面积", "㎡"),
    "capacity_t_per_day": ("日处理能力", "吨/日"),
}
ZONE_TYPE_LABEL_ZH: dict[str, str] = {
    "four_mountains": "四山管制区",
    "ecological_red_line": "生态保护红线",
    "basic_farmland": "永久基本农田",
    "water_source": "饮用水水源保护区",
    "urban_development_boundary": "城镇开发边界",
}
_TIERS = {t.value for t in Tier}
_LEVELS = {lv.value for lv in ZoneLevel}
_RULE_REQUIRED = (
    "id",
    "title_zh",
    "problem_type",
    "verdict",
    "applies_to",
    "condition",
    "legal_source",
    "lead_department",
)

DEFAULT_RULES_PATH: Path = LAYERS_DIR / "compliance.yaml"
DEFAULT_CLASSES_PATH: Path = LAYERS_DIR / "landuse_gbt21010.yaml"


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """One row of the compliance rule table (合规规则).

    Attributes
    ----------
    id, title_zh, problem_type
        Identifier, short Chinese title, and the 问题类型 the ledger shows.
    verdict
        ``prohibited``, ``needs_review`` or ``ok``.
    tiers, statuses, scope_keywords, match
        Which sites the rule applies to: tier in ``tiers``; status in ``statuses``
        (empty = any); 经营范围 containing a keyword (empty = any). ``match='all'`` ANDs
        the tier and keyword filters, ``'any'`` ORs them.
    condition
        ``{"type": <one of CONDITION_TYPES>, ...params}``.
    legal_source, lead_department, co_departments, measure_zh, deadline_days
        依据, 牵头单位, 配合单位 (the township is appended at ledger time), 整改措施, 整改时限.
    """

    id: str
    title_zh: str
    problem_type: str
    verdict: str
    tiers: tuple[str, ...]
    condition: Mapping[str, Any]
    legal_source: str
    lead_department: str
    co_departments: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    scope_keywords: tuple[str, ...] = ()
    match: str = "all"
    measure_zh: str = ""
    deadline_days: int = 30
    enabled: bool = True

    @property
    def condition_type(self) -> str:
        return str(self.condition["type"])


@dataclass(frozen=True)
class LandUseClasses:
    """The GB/T 21010 class table (``layers/landuse_gbt21010.yaml``).

    Attributes
    ----------
    classes
        ``{code: {"name_zh", "allowed_tiers", "receptor"}}`` as in the YAML.
    """

    classes: Mapping[str, Mapping[str, Any]]

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CLASSES_PATH) -> "LandUseClasses":
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        classes = data.get("classes")
        if not isinstance(classes, dict):
            raise CatalogError(path, "classes", "missing or not a mapping")
        return cls({str(k): dict(v or {}) for k, v in classes.items()})

    def resolve(self, code: Any) -> str | None:
        """The class-table entry for ``code`` (own entry, else its first-level class)."""
        if code is None or (isinstance(code, float) and np.isnan(code)):
            return None
        code = str(code).strip()
        if code in self.classes:
            return code
        if len(code) > 2 and code[:2] in self.classes:
            return code[:2]
        return None

    def table(self, codes: pd.Series) -> pd.DataFrame:
        """Resolve codes (vectorised over unique values) to name, entry, receptor.

        Returns a frame aligned with ``codes`` with columns ``landuse_code`` (null when
        the code is null or unknown), ``landuse_name``, ``class_entry``, ``receptor``.
        """
        codes = codes.astype("object").where(codes.notna(), None)
        uniq = [str(c) for c in pd.unique(codes.dropna())]
        # resolve each distinct code once (a district has tens of classes, not sites)
        rows = {}
        for c in uniq:
            e = self.resolve(c)
            own = self.classes.get(c, {})
            base = self.classes.get(e, {}) if e else {}
            rows[c] = (
                c if e else None,
                e,
                (own.get("name_zh") or base.get("name_zh")) if e else None,
                (own.get("receptor") or base.get("receptor")) if e else None,
            )
        lookup = pd.DataFrame.from_dict(
            rows, orient="index", columns=["landuse_code", "class_entry", "landuse_name", "receptor"]
        )
        key = codes.astype("string").to_numpy(dtype=object, na_value=None)
        out = lookup.reindex(key).set_axis(codes.index)
        for col in out.columns:
            out[col] = _none(out[col])
        return out

    def allowed_pairs(self) -> set[str]:
        """``{"<code>|<tier>"}`` for every allowed (class entry, tier) pair."""
        return {
            f"{code}|{tier}"
            for code, spec in self.classes.items()
            for tier in (spec.get("allowed_tiers") or [])
        }

    def receptor_codes(self, receptor: str, codes: Sequence[str]) -> list[str]:
        """Those of ``codes`` whose (resolved) class is a ``receptor`` class."""
        t = self.table(pd.Series(list(codes), dtype="object"))
        return [c for c, r in zip(codes, t["receptor"]) if r == receptor]


@dataclass
class RuleTable:
    """The validated rule table plus the linkage and ledger settings.

    Build it from a merged ``compliance`` section with :meth:`from_section`
    (``Project.section("compliance")``) or from the bundled defaults with
    :meth:`default`.

    Override semantics (documented in ``layers/compliance.yaml``): ``rules`` is the base
    list (a project's own list replaces it); ``rule_overrides`` is a mapping keyed by
    rule id, deep-merged into the rule with that id (``{enabled: false}`` disables it);
    an unknown id with a full definition adds a rule.
    """

    rules: list[Rule]
    linkage: dict[str, Any]
    ledger: dict[str, Any]
    classes: LandUseClasses
    source: str = str(DEFAULT_RULES_PATH)

    @property
    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]

    def get(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    @classmethod
    def default(cls) -> "RuleTable":
        data = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
        return cls.from_section(data, source=DEFAULT_RULES_PATH)

    @classmethod
    def from_section(
        cls,
        section: Mapping[str, Any],
        *,
        source: str | Path = DEFAULT_RULES_PATH,
        classes: LandUseClasses | None = None,
    ) -> "RuleTable":
        """Validate a ``compliance`` section into a rule table.

        Raises
        ------
        CatalogError
            Naming the key at fault, e.g. ``compliance.rules[3].condition.type``.
        """
        section = copy.deepcopy(dict(section or {}))
        raw_rules = section.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise CatalogError(source, "compliance.rules", "must be a non-empty list of rules")
        keyed: dict[str, tuple[str, dict]] = {}
        order: list[str] = []
        for i, raw in enumerate(raw_rules):
            key = f"compliance.rules[{i}]"
            if not isinstance(raw, dict):
                raise CatalogError(source, key, "a rule must be a mapping")
            rid = raw.get("id")
            if not rid:
                raise CatalogError(source, f"{key}.id", "missing")
            if rid in keyed:
                raise CatalogError(source, f"{key}.id", f"duplicate rule id '{rid}'")
            keyed[str(rid)] = (key, raw)
            order.append(str(rid))
        overrides = section.get("rule_overrides") or {}
        if not isinstance(overrides, dict):
            raise CatalogError(source, "compliance.rule_overrides", "must be a mapping keyed by rule id")
        for rid, patch in overrides.items():
            key = f"compliance.rule_overrides.{rid}"
            if not isinstance(patch, dict):
                raise CatalogError(source, key, "must be a mapping of rule fields")
            if str(rid) in keyed:
                base_key, base = keyed[str(rid)]
                keyed[str(rid)] = (key, _deep_merge(base, patch))
            else:
                if "condition" not in patch:
                    raise CatalogError(
                        source, key, f"no rule '{rid}' to override, and not a full rule (no condition)"
                    )
                keyed[str(rid)] = (key, {"id": rid, **patch})
                order.append(str(rid))
        rules = [_parse_rule(keyed[rid][1], keyed[rid][0], source) for rid in order]
        linkage = dict(section.get("linkage") or {})
        _validate_linkage(linkage, source)
        ledger = dict(section.get("ledger") or {})
        return cls(rules, linkage, ledger, classes or LandUseClasses.load(), str(source))


def _none(s: pd.Series) -> pd.Series:
    """Object series with None (not NaN) for missing values."""
    s = s.astype("object")
    return s.where(s.notna(), None)


def _deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(copy.deepcopy(base))
    for k, v in patch.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _parse_rule(raw: Mapping[str, Any], key: str, source: str | Path) -> Rule:
    for name in _RULE_REQUIRED:
        if raw.get(name) in (None, ""):
            raise CatalogError(source, f"{key}.{name}", "missing")
    verdict = str(raw["verdict"])
    if verdict not in VERDICT_RANK:
        raise CatalogError(source, f"{key}.verdict", f"'{verdict}' is not one of {sorted(VERDICT_RANK)}")
    applies = raw["applies_to"]
    if not isinstance(applies, Mapping):
        raise CatalogError(source, f"{key}.applies_to", "must be a mapping")
    tiers = tuple(str(t) for t in (applies.get("tiers") or []))
    bad = [t for t in tiers if t not in _TIERS]
    if bad:
        raise CatalogError(source, f"{key}.applies_to.tiers", f"unknown tier(s) {bad}")
    keywords = tuple(str(k) for k in (applies.get("scope_keywords") or []))
    if not tiers and not keywords:
        raise CatalogError(source, f"{key}.applies_to", "needs tiers or scope_keywords")
    match = str(applies.get("match", "all"))
    if match not in ("all", "any"):
        raise CatalogError(source, f"{key}.applies_to.match", "must be 'all' or 'any'")
    cond = raw["condition"]
    if not isinstance(cond, Mapping):
        raise CatalogError(source, f"{key}.condition", "must be a mapping with a 'type'")
    ctype = cond.get("type")
    if ctype not in CONDITION_TYPES:
        raise CatalogError(
            source, f"{key}.condition.type", f"'{ctype}' is not one of {sorted(CONDITION_TYPES)}"
        )
    for p in CONDITION_TYPES[ctype]:
        if cond.get(p) in (None, ""):
            raise CatalogError(source, f"{key}.condition.{p}", f"required by condition type '{ctype}'")
    if ctype == "in_zone":
        levels = cond.get("levels") or []
        badl = [lv for lv in levels if lv not in _LEVELS]
        if badl:
            raise CatalogError(source, f"{key}.condition.levels", f"unknown level(s) {badl}")
    if ctype == "near_receptor":
        if cond["receptor"] not in RECEPTORS:
            raise CatalogError(source, f"{key}.condition.receptor", f"not one of {list(RECEPTORS)}")
        if not _is_number(cond["distance_m"]) or float(cond["distance_m"]) < 0:
            raise CatalogError(source, f"{key}.condition.distance_m", "must be a number ≥ 0")
    if ctype == "missing_attribute":
        if cond["field"] not in ATTRIBUTE_FIELDS:
            raise CatalogError(source, f"{key}.condition.field", f"not one of {list(ATTRIBUTE_FIELDS)}")
        if cond.get("unknown", "ok") not in ("ok", "missing"):
            raise CatalogError(source, f"{key}.condition.unknown", "must be 'ok' or 'missing'")
    if ctype == "below_norm":
        if cond["field"] not in NORM_FIELDS:
            raise CatalogError(source, f"{key}.condition.field", f"not one of {list(NORM_FIELDS)}")
        if not _is_number(cond["min"]):
            raise CatalogError(source, f"{key}.condition.min", "must be a number")
    days = raw.get("deadline_days", 30)
    if not _is_number(days) or int(days) <= 0:
        raise CatalogError(source, f"{key}.deadline_days", "must be a positive number of days")
    co = raw.get("co_departments") or []
    if not isinstance(co, list):
        raise CatalogError(source, f"{key}.co_departments", "must be a list")
    return Rule(
        id=str(raw["id"]),
        title_zh=str(raw["title_zh"]),
        problem_type=str(raw["problem_type"]),
        verdict=verdict,
        tiers=tiers,
        condition=dict(cond),
        legal_source=str(raw["legal_source"]),
        lead_department=str(raw["lead_department"]),
        co_departments=tuple(str(c) for c in co),
        statuses=tuple(str(s) for s in (applies.get("statuses") or [])),
        scope_keywords=keywords,
        match=match,
        measure_zh=str(raw.get("measure_zh") or ""),
        deadline_days=int(days),
        enabled=bool(raw.get("enabled", True)),
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate_linkage(linkage: Mapping[str, Any], source: str | Path) -> None:
    for k in ("point_max_distance_m", "station_max_distance_m", "snap_max_distance_m"):
        if k in linkage and (not _is_number(linkage[k]) or linkage[k] <= 0):
            raise CatalogError(source, f"compliance.linkage.{k}", "must be a positive number")
    if linkage.get("distance", "auto") not in ("auto", "network", "euclidean"):
        raise CatalogError(source, "compliance.linkage.distance", "must be auto, network or euclidean")
    if linkage.get("capacity", "report") not in ("report", "enforce"):
        raise CatalogError(source, "compliance.linkage.capacity", "must be report or enforce")


# ------------------------------------------------------------------------ location
def sample_raster_codes(
    path: str | Path,
    points: gpd.GeoSeries,
    *,
    value_to_code: Mapping[int, str] | None = None,
    nodata: float | int | None = None,
) -> pd.Series:
    """Land-use code under each point of a classified GeoTIFF (index arithmetic).

    Rows and columns come from the inverse affine transform,
    ``(col, row) = floor(~T · (x, y))``, computed for all points at once; the band is
    read once. Points outside the raster and cells equal to ``nodata`` give null.

    Parameters
    ----------
    path
        Single-band classified raster.
    points
        Points (any CRS with a defined ``crs``; reprojected to the raster's).
    value_to_code
        Raster value → GB/T 21010 code; default ``str(value)`` zero-padded to 2 or 4
        digits (the class table stores ``raster_value = int(code)``).
    nodata
        Overrides the file's nodata value.
    """
    import rasterio

    with rasterio.open(path) as ds:
        pts = points.to_crs(ds.crs) if points.crs is not None and ds.crs is not None else points
        xs = shapely.get_x(pts.values)
        ys = shapely.get_y(pts.values)
        inv = ~ds.transform
        cols = np.floor(inv.a * xs + inv.b * ys + inv.c).astype(np.int64)
        rows = np.floor(inv.d * xs + inv.e * ys + inv.f).astype(np.int64)
        inside = (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)
        band = ds.read(1)
        nd = ds.nodata if nodata is None else nodata
    vals = np.zeros(len(xs), dtype=band.dtype)
    vals[inside] = band[rows[inside], cols[inside]]
    valid = inside.copy()
    if np.issubdtype(vals.dtype, np.floating):
        valid &= ~np.isnan(vals)
    if nd is not None:
        valid &= vals != nd
    out = pd.Series([None] * len(xs), index=points.index, dtype="object")
    if valid.any():
        v = vals[valid].astype(np.int64)
        if value_to_code:
            mapped = pd.Series(v).map({int(k): str(c) for k, c in value_to_code.items()})
        else:
            sv = v.astype(str)
            mapped = pd.Series(np.where(v < 100, np.char.zfill(sv, 2), np.char.zfill(sv, 4)), dtype=object)
        out.iloc[np.flatnonzero(valid)] = mapped.to_numpy(dtype=object)
    return out.where(out.notna(), None)


def _raster_receptor_geoms(
    path: str | Path,
    crs: Any,
    classes: LandUseClasses,
    value_to_code: Mapping[int, str] | None,
    nodata: Any,
) -> dict[str, np.ndarray]:
    """Polygonise the receptor classes of a land-use raster (rasterio.features.shapes)."""
    import rasterio
    from rasterio.features import shapes

    with rasterio.open(path) as ds:
        band = ds.read(1)
        transform, rcrs = ds.transform, ds.crs
    values = np.unique(band)
    if nodata is not None:
        values = values[values != nodata]
    codes = [
        str(value_to_code[int(v)]) if value_to_code and int(v) in value_to_code
        else (f"{int(v):02d}" if int(v) < 100 else f"{int(v):04d}")
        for v in values
    ]
    out: dict[str, np.ndarray] = {}
    for receptor in RECEPTORS:
        hit = set(classes.receptor_codes(receptor, codes))
        vals = [v for v, c in zip(values, codes) if c in hit]
        if not vals:
            continue
        mask = np.isin(band, vals)
        geoms = [shapely.geometry.shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, transform=transform)]
        gs = gpd.GeoSeries(geoms, crs=rcrs)
        if crs is not None and rcrs is not None:
            gs = gs.to_crs(crs)
        out[receptor] = gs.values
    return out


def _covering(points: np.ndarray, polygons: np.ndarray, tree: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(point index, polygon index) of every polygon covering a point (boundary inside).

    The spatial index is built on the points and queried with the polygons, so each
    polygon is prepared once and tested against the points in its envelope — about
    ten times faster than querying a polygon index point by point on parcel layers.
    """
    if not len(points) or not len(polygons):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    tree = tree if tree is not None else shapely.STRtree(points)
    poly_i, pt_i = tree.query(polygons, predicate="covers")
    return pt_i.astype(np.int64), poly_i.astype(np.int64)


def _first_hit(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """For each of ``n`` inputs, the smallest tree index hit (-1 when none)."""
    res = np.full(n, -1, dtype=np.int64)
    if len(left):
        order = np.lexsort((right, left))
        l, r = left[order], right[order]
        first = np.r_[True, l[1:] != l[:-1]]
        res[l[first]] = r[first]
    return res


def locate(
    points: gpd.GeoSeries,
    *,
    townships: gpd.GeoDataFrame | None = None,
    zones: gpd.GeoDataFrame | None = None,
    landuse: gpd.GeoDataFrame | None = None,
    landuse_raster: Any = None,
    classes: LandUseClasses | None = None,
    receptor_max_distance_m: float = 1000.0,
) -> pd.DataFrame:
    """Place points against the district's layers (one spatial-index query per layer).

    Parameters
    ----------
    points
        Point geometries in the district's metric CRS.
    townships, zones, landuse
        GeoDataFrames (canonical fields) in the same CRS, or None.
    landuse_raster
        An object with ``path``, and optionally ``nodata`` and ``classes``
        (``{raster value: code}``) — :class:`gis.district.RasterLayer` — or a path.
    classes
        The GB/T 21010 class table.
    receptor_max_distance_m
        Distances to receptors are searched up to this far; further → NaN.

    Returns
    -------
    DataFrame aligned with ``points`` with ``township``, ``landuse_code``,
    ``landuse_name``, ``landuse_source`` (vector / raster / None), ``zones`` (``;``-joined
    ``zone_type[:level]``), ``in_<zone_type>`` booleans, ``four_mountains_level``,
    ``zone_names`` and ``dist_<receptor>_m`` for each receptor.
    """
    classes = classes or LandUseClasses.load()
    geoms = points.values
    n = len(points)
    out = pd.DataFrame(index=points.index)
    ptree = shapely.STRtree(geoms) if n else None

    # 属地: township polygon covering the point (boundary counts as inside).
    if townships is not None and len(townships):
        l, r = _covering(geoms, townships.geometry.values, ptree)
        hit = _first_hit(n, l, r)
        names = townships["township"].to_numpy(dtype=object)
        out["township"] = np.where(hit >= 0, names[np.clip(hit, 0, None)], None)
    else:
        out["township"] = None

    # Land use: vector overlay first, raster fills the gaps.
    codes = pd.Series([None] * n, index=points.index, dtype="object")
    source = pd.Series([None] * n, index=points.index, dtype="object")
    receptor_geoms: dict[str, list[np.ndarray]] = {r: [] for r in RECEPTORS}
    if landuse is not None and len(landuse):
        l, r = _covering(geoms, landuse.geometry.values, ptree)
        hit = _first_hit(n, l, r)
        lc = landuse["landuse_code"].astype("object").where(landuse["landuse_code"].notna(), None)
        lc = lc.astype("string").str.strip().to_numpy(dtype=object, na_value=None)
        got = hit >= 0
        codes.iloc[np.flatnonzero(got)] = lc[hit[got]]
        source.iloc[np.flatnonzero(got)] = "vector"
        ltab = classes.table(pd.Series(lc, dtype="object"))
        for rec in RECEPTORS:
            sel = (ltab["receptor"] == rec).to_numpy()
            if sel.any():
                receptor_geoms[rec].append(landuse.geometry.values[sel])
    if landuse_raster is not None:
        rpath = getattr(landuse_raster, "path", landuse_raster)
        v2c = getattr(landuse_raster, "classes", None) or None
        nodata = getattr(landuse_raster, "nodata", None)
        need = codes.isna().to_numpy()
        if need.any():
            sampled = sample_raster_codes(rpath, points[need], value_to_code=v2c, nodata=nodata)
            got = sampled.notna().to_numpy()
            idx = np.flatnonzero(need)[got]
            codes.iloc[idx] = sampled.to_numpy(dtype=object)[got]
            source.iloc[idx] = "raster"
        if landuse is None or not len(landuse):
            for rec, g in _raster_receptor_geoms(rpath, points.crs, classes, v2c, nodata).items():
                receptor_geoms[rec].append(g)
    tab = classes.table(codes)
    out["landuse_code"] = tab["landuse_code"]
    out["landuse_name"] = tab["landuse_name"]
    out["landuse_class"] = tab["class_entry"]
    out["landuse_source"] = source.where(tab["landuse_code"].notna(), None)
    out["landuse_raw"] = codes  # what the layer said, even when the table does not know it

    # Zones: every zone covering the point, strictest 四山 level.
    zone_types = [z for z in ZONE_TYPE_LABEL_ZH]
    for zt in zone_types:
        out[f"in_{zt}"] = False
    out["four_mountains_level"] = None
    out["zones"] = ""
    out["zone_names"] = ""
    if zones is not None and len(zones):
        l, r = _covering(geoms, zones.geometry.values, ptree)
        zt = zones["zone_type"].astype(str).to_numpy(dtype=object)
        lv = zones["level"].astype("object").where(zones["level"].notna(), None).to_numpy(dtype=object) if "level" in zones else np.full(len(zones), None, dtype=object)
        nm = zones["name"].astype("object").where(zones["name"].notna(), "").to_numpy(dtype=object) if "name" in zones else np.full(len(zones), "", dtype=object)
        pairs = pd.DataFrame({"i": l, "zone_type": zt[r], "level": lv[r], "name": nm[r]})
        pairs = pairs.drop_duplicates(["i", "zone_type", "level"])
        for t in set(pairs["zone_type"]):
            if t not in zone_types:
                out[f"in_{t}"] = False
            idx = pairs.loc[pairs["zone_type"] == t, "i"].unique()
            out.iloc[idx, out.columns.get_loc(f"in_{t}")] = True
        fm = pairs[(pairs["zone_type"] == "four_mountains") & pairs["level"].notna()].copy()
        if len(fm):
            fm["rank"] = fm["level"].map({k.value: v for k, v in ZONE_LEVEL_RANK.items()}).fillna(0)
            best = fm.sort_values(["i", "rank"], ascending=[True, False]).drop_duplicates("i")
            col = out.columns.get_loc("four_mountains_level")
            out.iloc[best["i"].to_numpy(), col] = best["level"].to_numpy(dtype=object)
        label = pairs["zone_type"] + np.where(pairs["level"].notna(), ":" + pairs["level"].astype(str), "")
        pairs["label"] = label
        pairs = pairs.sort_values(["i", "label"], kind="stable")
        from gis.overlay import join_per_point  # per-point joins without per-point Python

        out["zones"] = join_per_point(pairs["i"].to_numpy(), pairs["label"].to_numpy(dtype=object), n)
        named = pairs[pairs["name"].astype(str) != ""].drop_duplicates(["i", "name"])
        out["zone_names"] = join_per_point(named["i"].to_numpy(), named["name"].to_numpy(dtype=object), n)
        for t, part in named.groupby("zone_type"):
            out[f"zone_names_{t}"] = join_per_point(part["i"].to_numpy(), part["name"].to_numpy(dtype=object), n)
        ws = zones.geometry.values[(zones["zone_type"].astype(str) == "water_source").to_numpy()]
        if len(ws):
            receptor_geoms["water_source"].append(ws)

    # Receptors: nearest distance per class within the search radius.
    for rec in RECEPTORS:
        dist = np.full(n, np.nan)
        parts = [g for g in receptor_geoms[rec] if len(g)]
        if parts and n:
            tree = shapely.STRtree(np.concatenate(parts))
            (pi, _ti), d = tree.query_nearest(
                geoms, max_distance=receptor_max_distance_m, return_distance=True, all_matches=False
            )
            dist[pi] = d
        out[f"dist_{rec}_m"] = dist
    return out


# ------------------------------------------------------------------------- linkage
@dataclass
class LinkageResult:
    """Hierarchy linkage (三级衔接) of the network.

    Attributes
    ----------
    assignments
        One row per linked site (points and transfer stations): ``site_id``, ``tier``,
        ``assigned_to`` (site_id of the serving station / centre or None),
        ``link_distance_m``, ``link_method`` (network / euclidean), ``demand_t_per_day``.
    stations
        One row per serving transfer station and sorting centre: ``site_id``, ``tier``,
        ``township``, ``n_assigned``, ``load_t_per_day``, ``capacity_t_per_day``,
        ``utilisation``, ``overloaded``.
    orphans
        site_ids of linked sites with no serving station within the limit.
    overloaded
        site_ids of serving stations whose assigned demand exceeds their capacity.
    townships_without_transfer_station
        Townships with no serving transfer station inside them.
    has_working_sorting_centre
        Whether an active sorting centre without a ``prohibited`` verdict exists.
    method
        ``network`` or ``euclidean`` (what the district used overall).
    """

    assignments: pd.DataFrame
    stations: pd.DataFrame
    orphans: list[str]
    overloaded: list[str]
    townships_without_transfer_station: list[str]
    has_working_sorting_centre: bool
    method: str


def _as_csr(graph: Any, crs: Any) -> Any:
    """The road graph as a :class:`gis.network.NetworkCSR` in ``crs``."""
    from pyproj import CRS

    from gis.network import NetworkCSR

    net = graph if isinstance(graph, NetworkCSR) else NetworkCSR.from_graph(graph)
    if crs is not None and not CRS.from_user_input(net.crs).equals(CRS.from_user_input(crs)):
        raise AnalysisError(
            f"road graph CRS {CRS.from_user_input(net.crs).to_string()} differs from the sites' "
            f"{CRS.from_user_input(crs).to_string()}; load it with gis.network.load_graph(..., crs=district.crs)"
        )
    return net


def _nearest_euclidean(src: np.ndarray, dst: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest ``dst`` for each ``src`` within ``limit`` (-1 if none), distance."""
    idx = np.full(len(src), -1, dtype=np.int64)
    dist = np.full(len(src), np.nan)
    if len(src) and len(dst):
        tree = shapely.STRtree(dst)
        (si, ti), d = tree.query_nearest(src, max_distance=limit, return_distance=True, all_matches=False)
        idx[si] = ti
        dist[si] = d
    return idx, dist


def _main_component(net: Any) -> np.ndarray:
    """Row indices of the largest strongly connected component of the road graph.

    Sites snap only onto it, so that every snapped pair is mutually reachable (a
    site snapped onto a dead-end one-way fragment or an isolated service road would
    otherwise look unreachable from everywhere).
    """
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(net.matrix, directed=True, connection="strong")
    return np.flatnonzero(labels == np.bincount(labels).argmax())


def _snap(nodes: np.ndarray, xy: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest of ``nodes`` (row indices into ``xy``) for each point, and the distance."""
    from scipy.spatial import cKDTree

    if not len(pts):
        return np.empty(0, np.int64), np.empty(0, float)
    d, i = cKDTree(xy[nodes]).query(pts)
    return nodes[i].astype(np.int64), d


def _nearest_network(
    src: np.ndarray,
    dst: np.ndarray,
    limit: float,
    net: Any,
    snap_max: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest ``dst`` by road distance (one multi-source Dijkstra from all ``dst``).

    Runs :func:`scipy.sparse.csgraph.dijkstra` with ``min_only=True`` on the reversed
    graph from the stations' nodes, so that one pass gives, for every node, the road
    distance *to* its nearest station honouring one-way streets, and which station.
    Distance = snap(src) + network(src node → dst node) + snap(dst), snapping onto
    the largest strongly connected component. Points and stations further than
    ``snap_max`` from it are not routed (``routed`` False) and fall back to
    straight-line distance in the caller. Returns (station index or -1, distance,
    routed mask of ``src``, routable mask of ``dst``).
    """
    from scipy.sparse.csgraph import dijkstra

    main = _main_component(net)
    s_node, s_snap = _snap(main, net.xy, shapely.get_coordinates(src))
    d_node, d_snap = _snap(main, net.xy, shapely.get_coordinates(dst))
    idx = np.full(len(src), -1, dtype=np.int64)
    dist = np.full(len(src), np.nan)
    routed = s_snap <= snap_max
    dst_ok = d_snap <= snap_max
    ok_dst = np.flatnonzero(dst_ok)
    if not len(ok_dst) or not routed.any():
        return idx, dist, routed & False, dst_ok
    # one station per node (the one nearest to the node wins the node)
    order = np.lexsort((d_snap[ok_dst], d_node[ok_dst]))
    ok_sorted = ok_dst[order]
    keep = np.r_[True, d_node[ok_sorted][1:] != d_node[ok_sorted][:-1]]
    sources = ok_sorted[keep]
    node_to_dst = np.full(net.n, -1, dtype=np.int64)
    node_to_dst[d_node[sources]] = sources
    dn, _pred, src_node = dijkstra(
        net.transposed(), directed=True, indices=d_node[sources], limit=limit,
        min_only=True, return_predecessors=True,
    )
    at = s_node[routed]
    nd = dn[at]
    reach = np.isfinite(nd) & (src_node[at] >= 0)
    ri = np.flatnonzero(routed)[reach]
    station = node_to_dst[src_node[at][reach]]
    total = s_snap[ri] + nd[reach] + d_snap[station]
    within = total <= limit
    idx[ri[within]] = station[within]
    dist[ri[within]] = total[within]
    return idx, dist, routed, dst_ok


def link_hierarchy(
    sites: gpd.GeoDataFrame,
    *,
    params: Mapping[str, Any] | None = None,
    graph: Any = None,
    townships: gpd.GeoDataFrame | None = None,
    verdicts: pd.Series | None = None,
) -> LinkageResult:
    """Assign points → transfer stations → sorting centre (三级衔接).

    Each linked site goes to its nearest serving station of the tier above within
    the distance limit — by road distance (multi-source Dijkstra on the road graph,
    ``scipy.sparse.csgraph.dijkstra(..., min_only=True)``) when ``graph`` is given,
    straight-line otherwise. A point's demand is its own ``capacity_t_per_day`` when
    given, else ``point_demand_t_per_day[tier]``; a station's load is the sum of its
    points' demand, overloaded when it exceeds its ``capacity_t_per_day`` (default
    ``default_capacity_t_per_day[tier]``). With ``capacity: enforce`` the assignment
    minimises total distance subject to capacities (MILP, HiGHS), and the points that
    do not fit are orphans.

    Parameters
    ----------
    sites
        Sites with ``site_id``, ``tier``, ``status``, ``capacity_t_per_day``,
        ``township`` (spatial) in a metric CRS.
    params
        The ``linkage`` block of the compliance section.
    graph
        A networkx (osmnx) road graph with node ``x``/``y`` and edge ``length`` in the
        sites' CRS (:func:`gis.network.load_graph`), or a
        :class:`gis.network.NetworkCSR`; None for straight-line distance.
    townships
        Township polygons (for townships without a transfer station).
    verdicts
        Worst verdict per site (aligned with ``sites``) for the working-centre test.
    """
    p = dict(params or {})
    serving = set(p.get("serving_statuses", ["active"]))
    linked = set(p.get("linked_statuses", ["active", "planned"]))
    pmax = float(p.get("point_max_distance_m", 4000))
    smax = float(p.get("station_max_distance_m", 60000))
    snap_max = float(p.get("snap_max_distance_m", 500))
    demand_default = dict(p.get("point_demand_t_per_day", {"collection_point": 1.0, "drop_off_point": 0.2}))
    cap_default = dict(p.get("default_capacity_t_per_day", {"transfer_station": 30.0, "sorting_centre": 100.0}))
    mode = p.get("distance", "auto")
    use_net = graph is not None and mode in ("auto", "network")
    if mode == "network" and graph is None:
        raise AnalysisError("compliance.linkage.distance is 'network' but the district has no road graph")

    tier = sites["tier"].astype(str)
    status = sites["status"].astype("object").where(sites["status"].notna(), "active").astype(str)
    is_point = tier.isin(["collection_point", "drop_off_point"])
    is_ts = tier == "transfer_station"
    is_sc = tier == "sorting_centre"
    serves = status.isin(serving)
    needs = status.isin(linked)
    cap = pd.to_numeric(sites["capacity_t_per_day"], errors="coerce") if "capacity_t_per_day" in sites else pd.Series(np.nan, index=sites.index)
    demand = cap.where(cap.notna(), tier.map(demand_default)).where(is_point, np.nan)
    capacity = cap.where(cap.notna(), tier.map(cap_default)).where(is_ts | is_sc, np.nan)

    net = _as_csr(graph, sites.crs) if use_net else None
    geoms = sites.geometry.values
    sid = sites["site_id"].astype(str).to_numpy(dtype=object)
    parts = []
    enforce = p.get("capacity", "report") == "enforce"
    for lower, upper, limit, points_level in (
        (is_point & needs, is_ts & serves, pmax, True),
        (is_ts & needs, is_sc & serves, smax, False),
    ):
        li = np.flatnonzero(lower.to_numpy())
        ui = np.flatnonzero(upper.to_numpy())
        idx, dist = _nearest_euclidean(geoms[li], geoms[ui], limit)
        method = np.full(len(li), "euclidean", dtype=object)
        if use_net and len(li) and len(ui):
            nidx, ndist, routed, dst_ok = _nearest_network(geoms[li], geoms[ui], limit, net, snap_max)
            # stations off the road graph are reached in a straight line; a routed site
            # takes whichever is nearer, the routed station or an off-graph one
            off = np.flatnonzero(~dst_ok)
            oidx, odist = _nearest_euclidean(geoms[li], geoms[ui][off], limit)
            oidx = np.where(oidx >= 0, off[np.clip(oidx, 0, None)] if len(off) else -1, -1)
            use_off = routed & (oidx >= 0) & ((nidx < 0) | (odist < np.nan_to_num(ndist, nan=np.inf)))
            use_net_hit = routed & ~use_off
            idx = np.where(use_off, oidx, np.where(use_net_hit, nidx, idx))
            dist = np.where(use_off, odist, np.where(use_net_hit, ndist, dist))
            method[use_net_hit] = "network"
        if enforce and points_level and len(li) and len(ui):
            idx, dist = _capacitated(geoms[li], geoms[ui], demand.to_numpy()[li], capacity.to_numpy()[ui], limit, idx, dist)
        parts.append(
            pd.DataFrame(
                {
                    "site_id": sid[li],
                    "tier": tier.to_numpy()[li],
                    "assigned_to": np.where(idx >= 0, sid[ui][np.clip(idx, 0, None)] if len(ui) else None, None),
                    "link_distance_m": dist,
                    "link_method": np.where(idx >= 0, method, None),
                    "demand_t_per_day": demand.to_numpy()[li],
                }
            )
        )
    assignments = pd.concat(parts, ignore_index=True)
    srv = (is_ts | is_sc) & serves
    stations = pd.DataFrame(
        {
            "site_id": sid[srv.to_numpy()],
            "tier": tier[srv].to_numpy(),
            "township": sites.loc[srv, "township"].to_numpy() if "township" in sites else None,
            "capacity_t_per_day": capacity[srv].to_numpy(),
        }
    )
    load = assignments.dropna(subset=["assigned_to"]).groupby("assigned_to").agg(
        n_assigned=("site_id", "size"), load_t_per_day=("demand_t_per_day", "sum")
    )
    stations = stations.merge(load, left_on="site_id", right_index=True, how="left")
    stations["n_assigned"] = stations["n_assigned"].fillna(0).astype(int)
    stations["load_t_per_day"] = stations["load_t_per_day"].fillna(0.0)
    # sorting centres take the summed load of their stations
    ts_load = stations.set_index("site_id")["load_t_per_day"]
    a_ts = assignments[assignments["tier"] == "transfer_station"].dropna(subset=["assigned_to"])
    sc_load = a_ts.assign(load=a_ts["site_id"].map(ts_load).fillna(0.0)).groupby("assigned_to")["load"].sum()
    is_sc_row = stations["tier"] == "sorting_centre"
    stations.loc[is_sc_row, "load_t_per_day"] = stations.loc[is_sc_row, "site_id"].map(sc_load).astype(float).fillna(0.0)
    stations["utilisation"] = stations["load_t_per_day"] / stations["capacity_t_per_day"]
    stations["overloaded"] = stations["load_t_per_day"] > stations["capacity_t_per_day"]
    orphans = assignments.loc[assignments["assigned_to"].isna(), "site_id"].tolist()
    overloaded = stations.loc[stations["overloaded"], "site_id"].tolist()
    no_ts: list[str] = []
    if townships is not None and len(townships):
        have = set(sites.loc[is_ts & serves, "township"].dropna()) if "township" in sites else set()
        no_ts = [t for t in townships["township"].astype(str) if t not in have]
    ok_verdict = (
        verdicts.reindex(sites.index).fillna("ok") != "prohibited"
        if verdicts is not None
        else pd.Series(True, index=sites.index)
    )
    working = bool((is_sc & (status == "active") & ok_verdict).any())
    return LinkageResult(
        assignments=assignments,
        stations=stations,
        orphans=orphans,
        overloaded=overloaded,
        townships_without_transfer_station=no_ts,
        has_working_sorting_centre=working,
        method="network" if use_net else "euclidean",
    )


def _capacitated(
    src: np.ndarray,
    dst: np.ndarray,
    demand: np.ndarray,
    capacity: np.ndarray,
    limit: float,
    near_idx: np.ndarray,
    near_dist: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Capacity-respecting assignment (generalised assignment problem, MILP).

    minimise Σ d_ij x_ij + M Σ_i (1 − Σ_j x_ij)
    s.t. Σ_j x_ij ≤ 1,  Σ_i q_i x_ij ≤ Q_j,  x_ij ∈ {0,1},  only pairs with d_ij ≤ limit.

    Candidate pairs use straight-line distance (the nearest-station distance from the
    router is kept for the chosen nearest station). Solved by scipy's HiGHS.
    """
    import scipy.sparse as sp
    from scipy.optimize import Bounds, LinearConstraint, milp

    tree = shapely.STRtree(dst)
    i, j = tree.query(src, predicate="dwithin", distance=limit)
    if not len(i):
        return near_idx, near_dist
    d = shapely.distance(src[i], dst[j])
    q = np.nan_to_num(demand, nan=0.0)
    big = limit * 10.0
    c = d - big  # maximise assignment first, then minimise distance
    a1 = sp.csr_matrix((np.ones(len(i)), (i, np.arange(len(i)))), shape=(len(src), len(i)))
    a2 = sp.csr_matrix((q[i], (j, np.arange(len(i)))), shape=(len(dst), len(i)))
    cap = np.nan_to_num(capacity, nan=np.inf)
    res = milp(
        c,
        constraints=[LinearConstraint(a1, 0, 1), LinearConstraint(a2, 0, cap)],
        integrality=np.ones(len(i)),
        bounds=Bounds(0, 1),
        options={"time_limit": 60},
    )
    if res.x is None:
        raise AnalysisError("capacitated linkage: the MILP solver found no solution")
    chosen = res.x > 0.5
    idx = np.full(len(src), -1, dtype=np.int64)
    dist = np.full(len(src), np.nan)
    idx[i[chosen]] = j[chosen]
    dist[i[chosen]] = np.where(j[chosen] == near_idx[i[chosen]], near_dist[i[chosen]], d[chosen])
    return idx, dist


# ------------------------------------------------------------------------ checking
@dataclass
class ComplianceResult:
    """Outcome of the compliance check (合规核查).

    Attributes
    ----------
    sites
        The sites with compliance fields: ``township`` (spatial, 属地; the ledger's own
        value is kept as ``township_ledger``), ``landuse_code``, ``landuse_name``,
        ``zones``, ``four_mountains_level``, ``dist_<receptor>_m``, ``verdict`` (worst),
        ``rules_broken`` (``;``-joined ids), ``n_violations``, and the linkage fields
        ``assigned_to``, ``link_distance_m``, ``link_method``.
    violations
        One row per (site, rule): ``site_id``, ``name``, ``address``, ``township``,
        ``rule_id``, ``verdict``, ``problem_type``, ``description``, ``legal_source``,
        ``lead_department``, ``co_departments``, ``measure_zh``, ``deadline_days``,
        ``site_status``, geometry.
    by_rule
        Violations per enabled rule id (zeros included).
    incidents
        The incident locations with the same location fields (or None).
    linkage
        :class:`LinkageResult`.
    skipped_rules
        ``{rule_id: reason}`` for rules whose layer the district lacks.
    rules
        The :class:`RuleTable` used.
    """

    sites: gpd.GeoDataFrame
    violations: gpd.GeoDataFrame
    by_rule: pd.Series
    incidents: gpd.GeoDataFrame | None
    linkage: LinkageResult
    skipped_rules: dict[str, str]
    rules: RuleTable

    def sites_in_four_mountains(self) -> dict[str, int]:
        """Number of sites per strictest 四山 level."""
        s = self.sites["four_mountains_level"].dropna().value_counts()
        return {lv.value: int(s.get(lv.value, 0)) for lv in ZoneLevel}

    def summary(self) -> dict[str, Any]:
        """The keys this step adds to ``summary.json``."""
        out: dict[str, Any] = {
            "violations_total": int(len(self.violations)),
            "violations_by_rule": {k: int(v) for k, v in self.by_rule.items()},
            "sites_by_verdict": {
                v: int((self.sites["verdict"] == v).sum()) for v in VERDICT_RANK
            },
            "sites_in_four_mountains": self.sites_in_four_mountains(),
            "orphan_points": int(
                self.linkage.assignments.loc[
                    self.linkage.assignments["assigned_to"].isna()
                    & self.linkage.assignments["tier"].isin(["collection_point", "drop_off_point"])
                ].shape[0]
            ),
            "orphan_transfer_stations": int(
                self.linkage.assignments.loc[
                    self.linkage.assignments["assigned_to"].isna()
                    & (self.linkage.assignments["tier"] == "transfer_station")
                ].shape[0]
            ),
            "overloaded_stations": list(self.linkage.overloaded),
            "townships_without_transfer_station": list(self.linkage.townships_without_transfer_station),
            "has_working_sorting_centre": bool(self.linkage.has_working_sorting_centre),
            "linkage_method": self.linkage.method,
            "compliance_skipped_rules": dict(self.skipped_rules),
        }
        if self.incidents is not None:
            out["incidents_in_four_mountains"] = int(self.incidents["four_mountains_level"].notna().sum())
        return out


def _applies(rule: Rule, sites: pd.DataFrame) -> np.ndarray:
    tier_ok = sites["tier"].astype(str).isin(rule.tiers).to_numpy() if rule.tiers else None
    kw_ok = None
    if rule.scope_keywords and "business_scope" in sites:
        scope = sites["business_scope"].astype("object").fillna("").astype(str)
        pattern = "|".join(map(_re_escape, rule.scope_keywords))
        kw_ok = scope.str.contains(pattern, regex=True).to_numpy()
    elif rule.scope_keywords:
        kw_ok = np.zeros(len(sites), dtype=bool)
    if tier_ok is None:
        m = kw_ok
    elif kw_ok is None:
        m = tier_ok
    else:
        m = (tier_ok | kw_ok) if rule.match == "any" else (tier_ok & kw_ok)
    if rule.statuses:
        st = sites["status"].astype("object").where(sites["status"].notna(), "active").astype(str)
        m = m & st.isin(rule.statuses).to_numpy()
    return np.asarray(m, dtype=bool)


def _re_escape(s: str) -> str:
    import re

    return re.escape(s)


def _bool_field(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(is_false, is_unknown) of a boolean-ish column."""
    v = s.astype("object")
    unknown = v.isna().to_numpy()
    false = np.zeros(len(v), dtype=bool)
    known = ~unknown
    false[known] = ~v[known].astype(bool).to_numpy()
    return false, unknown


def _fmt_m(x: pd.Series) -> pd.Series:
    return x.round(0).astype("Int64").astype(str)


def _evaluate(
    rule: Rule,
    sites: pd.DataFrame,
    loc: pd.DataFrame,
    classes: LandUseClasses,
    allowed: set[str],
    orphans: set[str],
    have: Mapping[str, bool],
) -> tuple[np.ndarray, pd.Series] | str:
    """Mask of sites breaking ``rule`` and their 问题描述; or a skip reason."""
    c = rule.condition
    t = rule.condition_type
    n = len(sites)
    empty = pd.Series([""] * n, index=sites.index)
    if t == "in_zone":
        if not have["zones"]:
            return "district has no zones layer"
        col = f"in_{c['zone_type']}"
        m = loc[col].to_numpy(dtype=bool) if col in loc else np.zeros(n, dtype=bool)
        levels = c.get("levels") or []
        if levels:
            if c["zone_type"] == "four_mountains":
                m = m & loc["four_mountains_level"].isin(levels).to_numpy()
            else:
                pat = "|".join(f"{c['zone_type']}:{lv}" for lv in levels)
                m = m & loc["zones"].str.contains(pat, regex=True).to_numpy()
        label = ZONE_TYPE_LABEL_ZH.get(c["zone_type"], c["zone_type"])
        lvl = loc["four_mountains_level"].map({k.value: v for k, v in ZONE_LEVEL_LABEL_ZH.items()}).fillna("")
        names = loc.get(f"zone_names_{c['zone_type']}", pd.Series("", index=loc.index)).fillna("")
        desc = "位于" + label + (lvl if c["zone_type"] == "four_mountains" else "") + np.where(
            names != "", "（" + names + "）", ""
        )
        return m, pd.Series(desc, index=sites.index)
    if t in ("landuse_not_allowed", "landuse_unknown"):
        if not have["landuse"]:
            return "district has no land-use layer (vector or raster)"
        known = loc["landuse_code"].notna().to_numpy()
        if t == "landuse_unknown":
            raw = loc["landuse_raw"].astype("object")
            desc = np.where(raw.notna(), "地类编码 " + raw.astype(str) + " 不在GB/T 21010分类表中", "网点所在位置无地类数据（图斑空隙或栅格无数据）")
            return ~known, pd.Series(desc, index=sites.index)
        key = loc["landuse_class"].astype(str) + "|" + sites["tier"].astype(str)
        m = known & ~key.isin(allowed).to_numpy()
        tier_zh = sites["tier"].astype(str).map({k.value: v for k, v in TIER_LABEL_ZH.items()}).fillna("")
        desc = "现状地类为" + loc["landuse_code"].astype(str) + " " + loc["landuse_name"].astype(str) + "，" + tier_zh + "不得占用"
        return m, desc
    if t == "near_receptor":
        col = f"dist_{c['receptor']}_m"
        d = loc[col]
        m = (d <= float(c["distance_m"])).to_numpy()
        desc = "距最近" + RECEPTOR_LABEL_ZH[c["receptor"]] + _fmt_m(d) + "米（限值" + f"{float(c['distance_m']):.0f}" + "米）"
        return m, desc
    if t == "missing_attribute":
        f = c["field"]
        if f not in sites:
            return f"sites have no '{f}' field"
        false, unknown = _bool_field(sites[f])
        m = false | (unknown if c.get("unknown", "ok") == "missing" else False)
        return m, pd.Series(np.where(unknown, "未登记", "未取得") + ATTRIBUTE_FIELDS[f], index=sites.index)
    if t == "below_norm":
        f = c["field"]
        if f not in sites:
            return f"sites have no '{f}' field"
        v = pd.to_numeric(sites[f], errors="coerce")
        m = (v < float(c["min"])).fillna(False).to_numpy(dtype=bool)
        label, unit = NORM_FIELDS[f]
        desc = label + v.round(1).astype(str) + unit + "，低于规范" + f"{float(c['min']):g}" + unit
        return m, desc
    if t == "outside_townships":
        return loc["township"].isna().to_numpy(), pd.Series("坐标不在辖区任何镇街范围内", index=sites.index)
    if t == "unlinked":
        m = sites["site_id"].astype(str).isin(orphans).to_numpy()
        return m, pd.Series("限定距离内无在营的上级站点（中转站/分拣中心）", index=sites.index)
    raise AssertionError(t)  # validated in _parse_rule


def check_sites(
    sites: gpd.GeoDataFrame,
    *,
    townships: gpd.GeoDataFrame | None,
    zones: gpd.GeoDataFrame | None = None,
    landuse: gpd.GeoDataFrame | None = None,
    landuse_raster: Any = None,
    incidents: gpd.GeoDataFrame | None = None,
    rules: RuleTable | None = None,
    graph: Any = None,
    locator: Any = None,
) -> ComplianceResult:
    """Check every site against land use, zones and receptors, and link the hierarchy.

    Parameters
    ----------
    sites
        Canonical site layer (points, metric CRS).
    townships, zones, landuse, landuse_raster
        The district's layers (see :func:`locate`).
    incidents
        Incident points; they get the same location fields.
    rules
        The rule table (default: the bundled one).
    graph
        Road graph for network-distance linkage (None: straight-line).
    locator
        Replacement for :func:`locate` with the same signature (benchmarks compare a
        plain ``geopandas.sjoin`` implementation through it).

    Returns
    -------
    ComplianceResult
    """
    rules = rules or RuleTable.default()
    if sites.crs is not None and sites.crs.is_geographic:
        raise AnalysisError("compliance check needs sites in a metric CRS")
    sites = sites.copy()
    if "status" not in sites:
        sites["status"] = "active"
    rmax = max(
        [float(r.condition["distance_m"]) for r in rules.enabled if r.condition_type == "near_receptor"] + [1000.0]
    )
    base_locator = locator or locate

    def locator(points: gpd.GeoSeries) -> pd.DataFrame:
        return base_locator(
            points,
            townships=townships,
            zones=zones,
            landuse=landuse,
            landuse_raster=landuse_raster,
            classes=rules.classes,
            receptor_max_distance_m=rmax,
        )

    loc = locator(sites.geometry)
    sites = _keep_ledger_township(sites)
    for col in loc.columns:
        sites[col] = loc[col]
    have = {
        "zones": zones is not None,
        "landuse": landuse is not None or landuse_raster is not None,
    }

    # Pre-linkage verdicts (working-centre test), then linkage, then the unlinked rule.
    allowed = rules.classes.allowed_pairs()
    results: dict[str, tuple[np.ndarray, pd.Series]] = {}
    skipped: dict[str, str] = {}
    for rule in rules.enabled:
        if rule.condition_type == "unlinked":
            continue
        r = _evaluate(rule, sites, loc, rules.classes, allowed, set(), have)
        if isinstance(r, str):
            skipped[rule.id] = r
        else:
            results[rule.id] = (r[0] & _applies(rule, sites), r[1])
    pre = _worst(rules, results, len(sites), sites.index)
    linkage = link_hierarchy(
        sites, params=rules.linkage, graph=graph, townships=townships, verdicts=pre
    )
    orphans = set(linkage.orphans)
    for rule in rules.enabled:
        if rule.condition_type == "unlinked":
            m, desc = _evaluate(rule, sites, loc, rules.classes, allowed, orphans, have)  # type: ignore[misc]
            results[rule.id] = (m & _applies(rule, sites), desc)

    frames = []
    for rule in rules.enabled:
        if rule.id not in results:
            continue
        m, desc = results[rule.id]
        if not m.any():
            continue
        sel = sites.loc[m]
        frames.append(
            pd.DataFrame(
                {
                    "site_id": sel["site_id"].astype(str).to_numpy(),
                    "name": sel["name"].to_numpy() if "name" in sel else None,
                    "address": sel["address"].to_numpy() if "address" in sel else None,
                    "township": sel["township"].to_numpy(),
                    "township_ledger": sel["township_ledger"].to_numpy() if "township_ledger" in sel else None,
                    "tier": sel["tier"].astype(str).to_numpy(),
                    "site_status": sel["status"].astype("object").to_numpy(),
                    "rule_id": rule.id,
                    "verdict": rule.verdict,
                    "problem_type": rule.problem_type,
                    "title_zh": rule.title_zh,
                    "description": (rule.title_zh + "：" + desc[m]).to_numpy(),
                    "legal_source": rule.legal_source,
                    "lead_department": rule.lead_department,
                    "co_departments": "、".join(rule.co_departments),
                    "measure_zh": rule.measure_zh,
                    "deadline_days": rule.deadline_days,
                    "geometry": sel.geometry.to_numpy(),
                }
            )
        )
    cols = [
        "site_id", "name", "address", "township", "township_ledger", "tier", "site_status", "rule_id",
        "verdict", "problem_type", "title_zh", "description", "legal_source", "lead_department",
        "co_departments", "measure_zh", "deadline_days", "geometry",
    ]
    vdf = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in cols})
    violations = gpd.GeoDataFrame(vdf[cols], geometry="geometry", crs=sites.crs)

    worst = _worst(rules, results, len(sites), sites.index)
    sites["verdict"] = worst
    if len(violations):
        broken = violations.groupby("site_id")["rule_id"].agg(";".join)
        cnt = violations.groupby("site_id").size()
    else:
        broken = pd.Series(dtype=object)
        cnt = pd.Series(dtype=int)
    key = sites["site_id"].astype(str)
    rb = key.map(broken).astype("object")
    sites["rules_broken"] = rb.where(rb.notna(), "")
    sites["n_violations"] = key.map(cnt).fillna(0).astype(int)
    a = linkage.assignments.set_index("site_id")
    for col in ("assigned_to", "link_distance_m", "link_method"):
        sites[col] = key.map(a[col]) if len(a) else None
    by_rule = pd.Series(
        {r.id: int((violations["rule_id"] == r.id).sum()) for r in rules.enabled}, dtype=int
    )

    inc = None
    if incidents is not None and len(incidents):
        iloc = locator(incidents.geometry)
        inc = _keep_ledger_township(incidents.copy())
        for col in iloc.columns:
            inc[col] = iloc[col]
    return ComplianceResult(
        sites=sites,
        violations=violations,
        by_rule=by_rule,
        incidents=inc,
        linkage=linkage,
        skipped_rules=skipped,
        rules=rules,
    )


def _keep_ledger_township(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Keep the ledger's own 镇街 as ``township_ledger`` (the spatial one replaces ``township``).

    :func:`gis.district.load_district` already stores it as ``township_ledger``; a
    plain GeoDataFrame's ``township`` column is taken to be the ledger's value.
    """
    if "township_ledger" in gdf:
        return gdf.drop(columns=["township"], errors="ignore")
    if "township" in gdf:
        return gdf.rename(columns={"township": "township_ledger"})
    return gdf


def _worst(
    rules: RuleTable, results: Mapping[str, tuple[np.ndarray, pd.Series]], n: int, index: pd.Index
) -> pd.Series:
    rank = np.zeros(n, dtype=np.int8)
    for rule in rules.enabled:
        if rule.id in results:
            m = results[rule.id][0]
            rank = np.where(m, np.maximum(rank, VERDICT_RANK[rule.verdict]), rank)
    inv = {v: k for k, v in VERDICT_RANK.items()}
    return pd.Series([inv[int(r)] for r in rank], index=index, dtype="object") if n else pd.Series([], index=index, dtype="object")


# ----------------------------------------------------------------------- district
def _road_graph(district: Any, mode: str) -> Any:
    """The district's road network as CSR (:func:`gis.roadgraph.network_for_district`, cached), or None."""
    if getattr(district, "roads_path", None) is None:
        return None
    from gis.roadgraph import network_for_district

    return network_for_district(district, mode=mode)  # type: ignore[arg-type]


def check_district(district: Any, *, graph: Any = None, use_network: bool = True) -> ComplianceResult:
    """Run :func:`check_sites` on a loaded :class:`gis.district.District`.

    The rule table is ``district.project.section("compliance")``; the road graph comes
    from :mod:`gis.network` when the district has roads (unless ``graph`` is given or
    ``use_network`` is False).
    """
    project = getattr(district, "project", None)
    if project is not None:
        src = getattr(project, "path", DEFAULT_RULES_PATH)
        rules = RuleTable.from_section(project.section("compliance"), source=src)
    else:
        rules = RuleTable.default()
    if graph is None and use_network and rules.linkage.get("distance", "auto") != "euclidean":
        graph = _road_graph(district, str(rules.linkage.get("network_mode", "drive")))
    return check_sites(
        district.sites,
        townships=district.townships,
        zones=district.zones,
        landuse=district.landuse,
        landuse_raster=district.landuse_raster,
        incidents=getattr(district, "incidents", None),
        rules=rules,
        graph=graph,
    )


def run_step(district: Any, out: Path, summary: dict, context: dict) -> None:
    """Pipeline step: write ``OUT/sites.gpkg`` and leave the problems for the ledger.

    Layers of ``sites.gpkg``: ``sites`` (compliance fields and assignments),
    ``violations`` (one row per site × rule), ``linkage`` (lines from each linked site
    to its station), ``incidents_located`` (when the district has incidents).
    Adds ``violations_total``, ``violations_by_rule``, ``sites_in_four_mountains``,
    ``orphan_points``, ``townships_without_transfer_station``,
    ``has_working_sorting_centre`` (and a few more) to ``summary``; puts the result in
    ``context["compliance"]`` and the ledger rows in ``context["site_problems"]``.
    """
    from gis import export
    from gis.ledgers import problems_from_compliance

    result = check_district(district)
    layers = {
        "sites": result.sites,
        "violations": result.violations,
        "linkage": linkage_lines(result),
    }
    if result.incidents is not None:
        layers["incidents_located"] = result.incidents
    export.write_gpkg(layers, Path(out) / "sites.gpkg")
    summary.update(result.summary())
    context["compliance"] = result
    context["site_problems"] = problems_from_compliance(result)


def linkage_lines(result: ComplianceResult) -> gpd.GeoDataFrame:
    """Lines from each assigned site to its station (for maps and ``sites.gpkg``)."""
    a = result.linkage.assignments.dropna(subset=["assigned_to"])
    pos = result.sites.set_index(result.sites["site_id"].astype(str)).geometry
    if len(a):
        p0 = pos.reindex(a["site_id"]).values
        p1 = pos.reindex(a["assigned_to"]).values
        lines = shapely.linestrings(
            np.stack([shapely.get_coordinates(p0), shapely.get_coordinates(p1)], axis=1)
        )
    else:
        lines = np.array([], dtype=object)
    return gpd.GeoDataFrame(a.reset_index(drop=True), geometry=list(lines), crs=result.sites.crs)
