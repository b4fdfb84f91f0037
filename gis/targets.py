"""The general target model (目标任务): what a district committed to, built vs planned.

A district writes its targets in ``project.yaml`` (``targets:``), e.g. Shizhu's 2025
targets (石柱府办发〔2023〕54号): 40 再生资源回收站, 85 分类投放点, 20 回收企业, 40 可循环快递
回收装置网点, 城乡生活垃圾回收利用率 ≥ 40 %, 50 二手商品经营市场主体, 城区生活垃圾分类全覆盖.

Each row names a ``metric`` and what it counts — a site ``category`` (data:
``layers/categories.yaml`` plus the project's ``categories:``), or ``tiers`` — and a
``target``. Every row is reported with

* ``built``        the value with the built (active, compliant) items,
* ``planned``      the number of planned (规划/在建) items of the row's category,
* ``with_planned`` the value once the planned items are built,
* ``gap``          what is missing with the built items (in ``gap_unit``),
* ``planned_closes_gap`` whether the planned items close the gap (None when the
  metric has no planned counterpart, e.g. a ratio from a tonnage table).

Metrics (``direction``: the target is a minimum ``>=`` or a maximum ``<=``):

``count``
    items of the category; with ``unit: enterprise`` distinct 统一社会信用代码 (else
    distinct 经营者). ``gap = max(target − built, 0)`` items.
``per_township``
    share of 镇街 with at least ``min_per_street`` (街道) / ``min_per_town`` (镇, 乡)
    items (default ``min_per_township``, 1); ``only: urban|rural`` restricts the
    townships (城区全覆盖 = urban, 1, target 1.0). ``gap = Σ max(minᵢ − nᵢ, 0)`` items.
``township_presence``
    as ``per_township`` (kept for existing tables).
``population_coverage`` / ``household_coverage``
    share of residents / households within the tier's service standard
    (:mod:`gis.coverage`). ``gap = max(target − built, 0)`` (share).
``households_per_point``
    district households ÷ items (maximum). ``gap = max(⌈H / target⌉ − n, 0)`` items.
``townships_meeting_norm``
    share of townships whose points meet the SB/T 10719 households-per-point norm.
``ratio``
    ``Σ numerator ÷ Σ denominator`` over the rows of a table declared under
    ``target_tables:`` (e.g. 回收利用率 = 回收量 / 产生量 per township), with the table's
    own rejects. ``gap = max(target − built, 0)``.

:func:`validate_targets` catches every problem of the table (unknown metric, category,
tier or table; a table file or column that does not exist) in well under a second,
before any analysis; ``gis validate`` and ``gis run`` call it first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gis._errors import CatalogError
from gis.settings import CSV_ENCODINGS, LAYERS_DIR

if TYPE_CHECKING:  # types only (coverage and the pipeline import this module)
    from gis.compliance import ComplianceResult
    from gis.district import District

__all__ = [
    "METRICS",
    "Category",
    "TableSpec",
    "TargetReport",
    "evaluate_targets",
    "load_categories",
    "read_table",
    "table_specs",
    "validate_targets",
]

#: metric -> direction of the target (minimum ">=" or maximum "<=")
METRICS: dict[str, str] = {
    "count": ">=",
    "per_township": ">=",
    "township_presence": ">=",
    "population_coverage": ">=",
    "household_coverage": ">=",
    "households_per_point": "<=",
    "townships_meeting_norm": ">=",
    "ratio": ">=",
}
_TIERS = ("sorting_centre", "transfer_station", "collection_point", "drop_off_point", "dismantler")
_BUILT = "active"
_PLANNED = "planned"


@dataclass(frozen=True)
class Category:
    """A site category (站点类别) as in ``layers/categories.yaml``."""

    id: str
    label_zh: str
    aliases: tuple[str, ...] = ()
    source: str = "ledger"
    tiers: tuple[str, ...] = ()
    scope_keywords: tuple[str, ...] = ()
    match: str = "all"
    unit: str = "site"


@dataclass(frozen=True)
class TableSpec:
    """A table declared under ``target_tables:`` (a tonnage table, a list of items)."""

    name: str
    path: Path
    columns: Mapping[str, str] = field(default_factory=dict)
    sheet: str | int | None = None
    encoding: str | None = None


#: Keys a category (``categories:`` of ``layers/categories.yaml`` / ``project.yaml``) may set.
CATEGORY_KEYS: tuple[str, ...] = ("label_zh", "aliases", "source", "tiers", "scope_keywords", "match", "unit")
#: Keys a ``target_tables:`` entry may set.
TABLE_KEYS: tuple[str, ...] = ("file", "columns", "sheet", "encoding")


def _refuse_unknown(spec: Mapping[str, Any], valid: Sequence[str], source: str | Path, key: str) -> None:
    """One line naming ``key.<unknown>`` and the nearest valid key."""
    from gis.catalog import did_you_mean

    extra = sorted(str(k) for k in spec if k not in valid)
    if extra:
        raise CatalogError(source, f"{key}.{extra[0]}", f"unknown key; {did_you_mean(extra[0], valid)}")


def load_categories(
    project_categories: Mapping[str, Any] | None = None,
    *,
    layers_dir: str | Path = LAYERS_DIR,
    source: str | Path = "project.yaml",
) -> dict[str, Category]:
    """The bundled categories merged (by id) with a project's ``categories:``.

    Raises
    ------
    CatalogError
        A category with an unknown tier, unit or match.
    """
    from gis.catalog import load_yaml  # the one YAML reader

    path = Path(layers_dir) / "categories.yaml"
    raw = dict(load_yaml(path).get("categories") or {})
    for cid, spec in (project_categories or {}).items():
        if not isinstance(spec, Mapping):
            raise CatalogError(source, f"categories.{cid}", "must be a mapping {label_zh, tiers, ...}")
        raw[str(cid)] = {**(raw.get(str(cid)) or {}), **dict(spec)}
    out: dict[str, Category] = {}
    for cid, spec in raw.items():
        where = path if cid not in (project_categories or {}) else source
        _refuse_unknown(spec, CATEGORY_KEYS, where, f"categories.{cid}")
        tiers = tuple(str(t) for t in spec.get("tiers") or ())
        bad = [t for t in tiers if t not in _TIERS]
        if bad:
            raise CatalogError(where, f"categories.{cid}.tiers", f"unknown tier {bad[0]!r}; one of {', '.join(_TIERS)}")
        unit = str(spec.get("unit", "site"))
        if unit not in ("site", "enterprise"):
            raise CatalogError(where, f"categories.{cid}.unit", "must be site or enterprise")
        match = str(spec.get("match", "all"))
        if match not in ("all", "any"):
            raise CatalogError(where, f"categories.{cid}.match", "must be all or any")
        out[str(cid)] = Category(
            str(cid), str(spec.get("label_zh") or cid), tuple(str(a) for a in spec.get("aliases") or ()),
            str(spec.get("source") or "ledger"), tiers, tuple(str(k) for k in spec.get("scope_keywords") or ()),
            match, unit,
        )
    return out


def _category_lookup(categories: Mapping[str, Category]) -> dict[str, str]:
    look: dict[str, str] = {}
    for c in categories.values():
        for n in (c.id, c.label_zh, *c.aliases):
            look.setdefault(str(n).strip(), c.id)
    return look


def table_specs(project_raw: Mapping[str, Any], root: str | Path, *, source: str | Path = "project.yaml") -> dict[str, TableSpec]:
    """The ``target_tables:`` of a project (paths relative to the project folder)."""
    raw = project_raw.get("target_tables") or {}
    if not isinstance(raw, Mapping):
        raise CatalogError(source, "target_tables", "must be a mapping of table name -> {file, columns}")
    out = {}
    for name, spec in raw.items():
        key = f"target_tables.{name}"
        if isinstance(spec, str):
            spec = {"file": spec}
        if not isinstance(spec, Mapping) or not spec.get("file"):
            raise CatalogError(source, f"{key}.file", "required: the table's file name")
        _refuse_unknown(spec, TABLE_KEYS, source, key)
        cols = spec.get("columns") or {}
        if not isinstance(cols, Mapping):
            raise CatalogError(source, f"{key}.columns", "must map field names to headers")
        out[str(name)] = TableSpec(str(name), (Path(root) / str(spec["file"])).resolve(), dict(cols),
                                   spec.get("sheet"), spec.get("encoding"))
    return out


def _read_raw(spec: TableSpec, *, nrows: int | None = None) -> pd.DataFrame:
    """The table as text cells (CSV in UTF-8/GB18030, or Excel), headers stripped."""
    if not spec.path.exists():
        raise CatalogError(spec.path, f"target_tables.{spec.name}.file", "file not found")
    if spec.path.suffix.lower() in (".xlsx", ".xls"):
        df = pd.read_excel(spec.path, sheet_name=spec.sheet or 0, dtype=str, nrows=nrows)
    else:
        df = None
        for enc in ([spec.encoding] if spec.encoding else list(CSV_ENCODINGS)):
            try:
                df = pd.read_csv(spec.path, dtype=str, encoding=enc, nrows=nrows, keep_default_na=False)
                break
            except UnicodeDecodeError:
                continue
        if df is None:
            raise CatalogError(spec.path, f"target_tables.{spec.name}.encoding", f"not readable as {', '.join(CSV_ENCODINGS)}")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _header_of(spec: TableSpec, fieldname: str) -> str:
    return str(spec.columns.get(fieldname, fieldname))


def _row_fields(row: Mapping[str, Any], key: str, source: str | Path, look: Mapping[str, str]) -> tuple[str, list[str]]:
    """(metric, category ids) of one target row, or CatalogError naming the key."""
    metric = row.get("metric")
    if metric not in METRICS:
        raise CatalogError(source, f"{key}.metric", f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    cats = row.get("category", row.get("categories"))
    cats = [] if cats is None else ([cats] if isinstance(cats, str) else list(cats))
    ids = []
    for c in cats:
        cid = look.get(str(c).strip())
        if cid is None:
            raise CatalogError(source, f"{key}.category", f"unknown category {c!r} (layers/categories.yaml or the project's categories:)")
        ids.append(cid)
    tiers = row.get("tiers")
    tiers = [] if tiers is None else ([tiers] if isinstance(tiers, str) else list(tiers))
    bad = [t for t in tiers if t not in _TIERS]
    if bad:
        raise CatalogError(source, f"{key}.tiers", f"unknown tier {bad[0]!r}; one of {', '.join(_TIERS)}")
    return str(metric), ids


def validate_targets(
    targets: Any,
    *,
    categories: Mapping[str, Category],
    tables: Mapping[str, TableSpec],
    source: str | Path = "project.yaml",
) -> list[dict[str, Any]]:
    """Check a target table before any analysis; return it normalised.

    Each row gets ``metric``, ``categories`` (ids), ``tiers``, a float ``target`` and
    the ``row_defaults`` of ``layers/targets.yaml`` it does not set itself.
    Tables named by a ratio row or a category's ``source`` must be declared, exist and
    hold the named columns (only their header is read).

    Raises
    ------
    CatalogError
        One line naming ``targets[i].<key>`` (or the table) at fault.
    """
    if targets is None:
        return []
    if not isinstance(targets, list):
        raise CatalogError(source, "targets", "must be a list of {name, metric, category|tiers, target}")
    from gis.catalog import load_yaml  # the one YAML reader

    row_defaults = dict(load_yaml(LAYERS_DIR / "targets.yaml").get("row_defaults") or {})
    look = _category_lookup(categories)
    out = []
    for i, row in enumerate(targets):
        key = f"targets[{i}]"
        if not isinstance(row, Mapping):
            raise CatalogError(source, key, "each target must be a mapping {name, metric, category|tiers, target}")
        metric, ids = _row_fields(row, key, source, look)
        try:
            target = float(row.get("target"))
        except (TypeError, ValueError):
            raise CatalogError(source, f"{key}.target", "must be a number") from None
        if metric == "ratio":
            _check_table(row.get("table"), [row.get("numerator"), row.get("denominator")], tables, f"{key}.table", source)
        elif not ids and not row.get("tiers"):
            raise CatalogError(source, f"{key}.category", "say what the target counts: a category (or tiers)")
        for cid in ids:
            cat = categories[cid]
            if cat.source != "ledger":
                _check_table(cat.source, [], tables, f"{key}.category ({cat.label_zh})", source)
        tiers = row.get("tiers")
        norm = {**row_defaults, **dict(row)}
        norm.update(metric=metric, categories=ids, target=target,
                    tiers=[tiers] if isinstance(tiers, str) else list(tiers or []))
        norm.setdefault("name", f"{metric} {'/'.join(ids) or norm['tiers']}")
        out.append(norm)
    return out


def _check_table(name: Any, fields: Sequence[Any], tables: Mapping[str, TableSpec], key: str, source: str | Path) -> None:
    if not name:
        raise CatalogError(source, key, "a ratio target names its table (target_tables:) with numerator and denominator")
    if str(name) not in tables:
        raise CatalogError(source, key, f"table {name!r} is not declared under target_tables:")
    if any(not f for f in fields):
        raise CatalogError(source, key.rsplit(".", 1)[0] + ".numerator", "a ratio target needs numerator and denominator fields")
    spec = tables[str(name)]
    header = set(_read_raw(spec, nrows=0).columns)
    for f in fields:
        h = _header_of(spec, str(f))
        if h not in header:
            raise CatalogError(spec.path, f"target_tables.{spec.name}.columns.{f}", f"column '{h}' not in the table (has: {', '.join(sorted(header))})")


def _number(v: Any) -> float | None:
    try:
        x = float(str(v).replace(",", "").strip())
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_table(
    spec: TableSpec,
    *,
    numeric: Sequence[str] = (),
    townships: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a target table; every row ends in the table or in its rejects.

    Fields come from the headers of ``spec.columns`` (``{field: header}``, identity
    otherwise). A row is rejected when a ``numeric`` field is blank, not a number or
    negative, when its ``township`` is not one of ``townships``, or when it repeats a
    township already read.

    Returns
    -------
    (clean, rejects)
        ``clean`` with the fields plus ``row`` (spreadsheet row, header = 1);
        ``rejects`` with ``file, row, field, reason, value``.
    """
    raw = _read_raw(spec)
    fields = {f: _header_of(spec, f) for f in {*spec.columns, *numeric}}
    df = pd.DataFrame({f: raw[h] if h in raw else pd.Series(None, index=raw.index, dtype=object) for f, h in fields.items()})
    df["row"] = np.arange(len(df)) + 2
    bad = pd.Series(False, index=df.index)
    rejects: list[dict[str, Any]] = []

    def reject(mask: pd.Series, fieldname: str, reason: str) -> None:
        new = mask & ~bad
        for i in np.flatnonzero(new.to_numpy()):
            rejects.append({"file": str(spec.path), "row": int(df["row"].iloc[i]), "field": fields.get(fieldname, fieldname),
                            "reason": reason, "value": df[fieldname].iloc[i] if fieldname in df else None})
        bad.loc[new] = True

    for f in numeric:
        vals = df[f].map(_number)
        reject(vals.isna(), f, "not a number")
        reject(vals.fillna(0) < 0, f, "negative")
        df[f] = vals
    if "township" in df and townships is not None:
        t = df["township"].astype("string").str.strip().replace("", pd.NA)
        reject((t.notna() & ~t.isin(list(townships))).fillna(False), "township", "not a township of the district")
        if numeric:  # a per-township tonnage table: one row per township
            reject((t.notna() & t.duplicated(keep="first")).fillna(False), "township", "township repeated")
        df["township"] = t.astype(object).where(t.notna(), None)
    cols = ["file", "row", "field", "reason", "value"]
    return df.loc[~bad].reset_index(drop=True), pd.DataFrame(rejects, columns=cols)


# ----------------------------------------------------------------------------- items
def _status_class(status: pd.Series) -> pd.Series:
    """``built`` / ``planned`` / ``other`` from a status column (any alias of aliases.yaml)."""
    from gis.catalog import normalise_label, value_lookup

    look = value_lookup("site_status")
    codes, uniq = pd.factorize(status.to_numpy(dtype=object))  # each distinct text normalised once; missing: -1
    canon = pd.Series(np.array([look.get(normalise_label(v)) for v in uniq] + [None], dtype=object)[codes],
                      index=status.index, dtype=object)
    if status.isna().all() or (status.astype("string").fillna("") == "").all():
        return pd.Series("built", index=status.index, dtype=object)  # a list without status: all built
    return canon.map({_BUILT: "built", _PLANNED: "planned"}).fillna("other").astype(object)


def _enterprise_key(df: pd.DataFrame) -> pd.Series:
    """统一社会信用代码 when given, else the normalised operator, else the row itself."""
    key = np.full(len(df), None, dtype=object)
    for col in ("credit_code", "统一社会信用代码", "operator"):
        if col in df:  # each distinct text normalised once (a million-site ledger has far fewer operators)
            codes, uniq = pd.factorize(df[col].astype("string"), use_na_sentinel=True)
            norm = pd.Series(uniq, dtype="string").str.replace(r"\s+", "", regex=True).str.upper()
            prefix = "cc:" if col != "operator" else "op:"
            text = np.array([prefix + v if isinstance(v, str) and v else None for v in norm.astype(object)] + [None],
                            dtype=object)[codes]  # code -1 (missing) takes the last: None
            key = np.where(pd.isna(key), text, key)
    rowid = np.array([f"row:{i}" for i in range(len(df))], dtype=object)
    return pd.Series(np.where(pd.isna(key), rowid, key), index=df.index, dtype=object)


def ledger_items(sites: gpd.GeoDataFrame, category: Category, townships: gpd.GeoDataFrame | None,
                 eligible: pd.Series | None = None, *, site_townships: np.ndarray | None = None) -> pd.DataFrame:
    """The ledger sites of a category: ``state`` (built/planned/other), ``township``, ``key``.

    ``eligible`` (aligned with ``sites``) marks the sites allowed to count as built (active
    and not prohibited by a compliance rule); None: every active site. ``site_townships``:
    :func:`gis.district.assign_township` of every site (row by row with ``sites``) when the
    caller has it — a target table reads it once, not once per row and category.
    """
    if len(sites) == 0:
        return pd.DataFrame(columns=["state", "township", "key"])
    by_tier = sites["tier"].astype(str).isin(category.tiers).to_numpy() if category.tiers else None
    by_kw = None
    if category.scope_keywords and "business_scope" in sites:
        scope = sites["business_scope"].astype("string").fillna("")
        by_kw = scope.str.contains("|".join(map(_escape, category.scope_keywords)), regex=True).to_numpy()
    parts = [m for m in (by_tier, by_kw) if m is not None]
    if not parts:
        mask = np.zeros(len(sites), bool)
    else:
        mask = np.logical_or.reduce(parts) if category.match == "any" else np.logical_and.reduce(parts)
    used = [c for c in ("status", "township", "credit_code", "统一社会信用代码", "operator") if c in sites]
    s = sites.loc[mask, [*used, sites.geometry.name]]  # not every column of every matching site copied
    state = _status_class(s["status"] if "status" in s else pd.Series(None, index=s.index, dtype=object))
    if eligible is not None:
        ok = eligible.reindex(s.index).fillna(False).to_numpy(bool)
        state = state.where(~((state == "built").to_numpy() & ~ok), "other")
    if townships is not None and len(townships) and len(s) and site_townships is not None:
        town = pd.Series(site_townships[mask], index=s.index, dtype=object)
    elif townships is not None and len(townships) and len(s):
        from gis.district import assign_township

        town = pd.Series(assign_township(s.geometry, townships), index=s.index, dtype=object)
    else:
        town = s["township"] if "township" in s else pd.Series(None, index=s.index, dtype=object)
    return pd.DataFrame({"state": state, "township": town, "key": _enterprise_key(s)}, index=s.index)


def _escape(s: str) -> str:
    return re.escape(s)


def table_items(spec: TableSpec, townships: Sequence[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of an item table (``status``, ``township``, ``credit_code``/``operator``) and its rejects."""
    clean, rejects = read_table(spec, townships=townships)
    state = _status_class(clean["status"] if "status" in clean else pd.Series(None, index=clean.index, dtype=object))
    town = clean["township"] if "township" in clean else pd.Series(None, index=clean.index, dtype=object)
    return pd.DataFrame({"state": state, "township": town, "key": _enterprise_key(clean)}), rejects


def _count(items: pd.DataFrame, unit: str, states: Sequence[str]) -> int:
    sel = items.loc[items["state"].isin(list(states))]
    return int(sel["key"].nunique()) if unit == "enterprise" else int(len(sel))


# --------------------------------------------------------------------------- metrics
def _result(built: float | None, with_planned: float | None, planned: int | None, gap: float | None,
            gap_unit: str, direction: str, target: float) -> dict[str, Any]:
    def ok(v: float | None) -> bool | None:
        if v is None or not math.isfinite(v):
            return None if v is None else False
        return bool(v >= target - 1e-12) if direction == ">=" else bool(v <= target + 1e-12)

    met = ok(built)
    closes = None if with_planned is None else (True if met else ok(with_planned))
    return {"built": _round(built), "planned": planned, "with_planned": _round(with_planned), "gap": _round(gap),
            "gap_unit": gap_unit, "met": bool(met), "planned_closes_gap": closes}


def _round(x: float | None) -> float | None:
    if x is None or not math.isfinite(float(x)):
        return None
    return float(round(float(x), 6))


def _is_street(tw: pd.DataFrame) -> np.ndarray:
    """街道 (street) vs 镇/乡 (town) from ``kind`` or the name."""
    text = tw.get("kind", pd.Series("", index=tw.index)).astype("string").fillna("") + tw["township"].astype(str)
    return text.str.contains("街道|street", regex=True).to_numpy()


def _per_township(row: Mapping[str, Any], items: pd.DataFrame, townships: gpd.GeoDataFrame) -> dict[str, Any]:
    """Share of townships with ≥ their minimum (街道 ``min_per_street``, 镇/乡 ``min_per_town``)."""
    from gis.coverage import _is_urban

    tw = townships.reset_index(drop=True)
    base = int(row["min_per_township"])  # filled from targets.yaml row_defaults by validate_targets
    street = _is_street(tw)
    need = np.where(street, int(row.get("min_per_street", base)), int(row.get("min_per_town", base)))
    only = row.get("only")
    keep = np.ones(len(tw), bool)
    if only in ("urban", "rural"):
        urban = _is_urban(tw)
        keep = urban if only == "urban" else ~urban
    names = tw["township"].astype(str)

    def counts(states: Sequence[str]) -> np.ndarray:
        sel = items.loc[items["state"].isin(list(states))]
        return names.map(sel["township"].value_counts()).fillna(0).to_numpy(int)

    nb, npl = counts(["built"]), counts(["built", "planned"])
    n = max(int(keep.sum()), 1)
    share_b = float(((nb >= need) & keep).sum() / n)
    share_p = float(((npl >= need) & keep).sum() / n)
    gap = float(np.maximum(need - nb, 0)[keep].sum())
    return _result(share_b, share_p, int((items["state"] == "planned").sum()), gap, "sites", ">=", float(row["target"]))


def _households_per_point(row: Mapping[str, Any], items: pd.DataFrame, townships: gpd.GeoDataFrame) -> dict[str, Any]:
    """H / n with ``H`` the district's households; gap = ⌈H / target⌉ − n points."""
    hh = pd.to_numeric(townships.get("households", pd.Series(dtype=float)), errors="coerce").sum(min_count=1)
    n, p = int((items["state"] == "built").sum()), int((items["state"] == "planned").sum())
    if pd.isna(hh):
        return _result(None, None, p, None, "sites", "<=", float(row["target"]))
    need = math.ceil(float(hh) / float(row["target"]))
    val = (lambda k: float(hh) / k if k else math.inf)
    return _result(val(n), val(n + p), p, float(max(need - n, 0)), "sites", "<=", float(row["target"]))


@dataclass
class TargetReport:
    """Outcome of :func:`evaluate_targets`.

    Attributes
    ----------
    rows
        One dict per target: ``name, metric, categories, target, direction, built,
        planned, with_planned, gap, gap_unit, met, planned_closes_gap``.
    rejects
        Rejected rows of the target tables (``file, row, field, reason, value``).
    """

    rows: list[dict[str, Any]]
    rejects: pd.DataFrame

    def frame(self) -> pd.DataFrame:
        """The rows as a table (categories joined with ``、``)."""
        df = pd.DataFrame(self.rows)
        if len(df):
            df["categories"] = df["categories"].map(lambda c: "、".join(c))
        return df


CoverageShare = Callable[[gpd.GeoDataFrame, Mapping[str, Any]], tuple[float, float]]


def _site_townships(ctx: dict[str, Any]) -> np.ndarray | None:
    """The township polygon of every ledger site (:func:`gis.district.assign_township`), found once per table."""
    sites, townships = ctx["sites"], ctx["townships"]
    if townships is None or not len(townships) or not len(sites):
        return None
    if ctx.get("site_townships") is None:
        from gis.district import assign_township

        ctx["site_townships"] = assign_township(sites.geometry, townships)
    return ctx["site_townships"]


def _items_for(row: Mapping[str, Any], ctx: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """The items a row counts (all its categories, or its tiers) and their unit."""
    cats: Mapping[str, Category] = ctx["categories"]
    ids = list(row["categories"])
    if not ids:
        cat = Category("_tiers", "/".join(row["tiers"]), tiers=tuple(row["tiers"]))
        return ledger_items(ctx["sites"], cat, ctx["townships"], ctx["eligible"],
                            site_townships=_site_townships(ctx)), "site"
    parts, units = [], set()
    for cid in ids:
        cat = cats[cid]
        units.add(cat.unit)
        if cat.source == "ledger":
            parts.append(ledger_items(ctx["sites"], cat, ctx["townships"], ctx["eligible"],
                                      site_townships=_site_townships(ctx)))
        else:
            items, rej = table_items(ctx["tables"][cat.source], ctx["township_names"])
            ctx["rejects"].append(rej)
            parts.append(items)
    items = pd.concat(parts) if parts else pd.DataFrame(columns=["state", "township", "key"])
    unit = "enterprise" if units == {"enterprise"} else "site"
    if not all(cats[c].source == "ledger" for c in ids):
        return items, unit
    if row["tiers"]:  # category AND tiers: the category's sites of those tiers
        items = items.loc[items.index.isin(ctx["sites"].index[ctx["sites"]["tier"].astype(str).isin(row["tiers"])])]
    return items[~items.index.duplicated()], unit  # a site in two of the row's categories counts once


def _ratio(row: Mapping[str, Any], ctx: Mapping[str, Any]) -> dict[str, Any]:
    num, den = str(row["numerator"]), str(row["denominator"])
    clean, rej = read_table(ctx["tables"][str(row["table"])], numeric=[num, den], townships=ctx["township_names"])
    ctx["rejects"].append(rej)
    d = float(clean[den].sum())
    val = float(clean[num].sum()) / d if d > 0 else None
    gap = None if val is None else max(float(row["target"]) - val, 0.0)
    return _result(val, None, None, gap, "share", ">=", float(row["target"]))


def _evaluate_row(row: Mapping[str, Any], ctx: Mapping[str, Any]) -> dict[str, Any]:
    metric, target = row["metric"], float(row["target"])
    if metric == "ratio":
        return _ratio(row, ctx)
    items, unit = _items_for(row, ctx)
    if metric == "count":
        b, p = _count(items, unit, ["built"]), _count(items, unit, ["built", "planned"])
        return _result(b, p, p - b, max(target - b, 0.0), f"{unit}s", ">=", target)
    if metric in ("per_township", "township_presence"):
        return _per_township(row, items, ctx["townships"])
    if metric == "households_per_point":
        return _households_per_point(row, items, ctx["townships"])
    sites = ctx["sites"]  # the columns the norm and coverage counts read: not every column of a million sites
    sites = sites[[c for c in ("site_id", "tier", "township") if c in sites] + [sites.geometry.name]]
    built = sites.loc[items.index[items["state"] == "built"]]
    both = sites.loc[items.index[items["state"].isin(["built", "planned"])]]
    planned = int((items["state"] == "planned").sum())
    if metric == "townships_meeting_norm":
        from gis.coverage import households_per_point

        cfg = {"households_per_point": {**dict(ctx["norms"]), "tiers": _TIERS}}
        vb = households_per_point(ctx["townships"], built, cfg)["met"].mean()
        vp = households_per_point(ctx["townships"], both, cfg)["met"].mean()
        return _result(float(vb), float(vp), planned, max(target - float(vb), 0.0), "share", ">=", target)
    if ctx["coverage_share"] is None:
        raise CatalogError(ctx["source"], f"targets ({row['name']})", f"{metric} needs a population layer")
    k = 0 if metric == "population_coverage" else 1
    vb, vp = ctx["coverage_share"](built, row)[k], ctx["coverage_share"](both, row)[k]
    gap = None if vb is None or not math.isfinite(vb) else max(target - vb, 0.0)
    return _result(vb, vp, planned, gap, "share", ">=", target)


def evaluate_targets(
    targets: Sequence[Mapping[str, Any]],
    *,
    categories: Mapping[str, Category],
    tables: Mapping[str, TableSpec],
    sites: gpd.GeoDataFrame,
    townships: gpd.GeoDataFrame,
    eligible: pd.Series | None = None,
    coverage_share: CoverageShare | None = None,
    norms: Mapping[str, Any] | None = None,
    source: str | Path = "project.yaml",
) -> TargetReport:
    """Evaluate a (validated) target table: built, planned, gap per row.

    Parameters
    ----------
    targets
        Rows of :func:`validate_targets` (run it first).
    sites
        The whole site ledger (all statuses, metric CRS, canonical fields).
    townships
        Township polygons (``township``, ``kind``, ``urban``, ``households``).
    eligible
        Boolean per site: may count as built (active and not prohibited). None: active.
    coverage_share
        ``(sites, row) -> (population share, household share)`` for the coverage metrics.
    norms
        ``households_per_point`` norms of ``layers/coverage.yaml`` (urban / rural).
    """
    ctx: dict[str, Any] = {
        "categories": categories, "tables": tables, "sites": sites, "townships": townships,
        "eligible": eligible, "coverage_share": coverage_share, "norms": norms or {}, "source": source,
        "township_names": list(townships["township"].astype(str)) if townships is not None else None,
        "rejects": [],
    }
    rows = []
    for row in targets:
        res = _evaluate_row(row, ctx)
        rows.append({"name": str(row["name"]), "metric": row["metric"], "categories": list(row["categories"]),
                     "tiers": list(row["tiers"]), "target": float(row["target"]),
                     "direction": METRICS[row["metric"]], **res})
        rows[-1]["actual"] = rows[-1]["built"]  # the former check_targets key (app, rollup)
    rej = [r for r in ctx["rejects"] if len(r)]
    rejects = pd.concat(rej, ignore_index=True).drop_duplicates() if rej else pd.DataFrame(columns=["file", "row", "field", "reason", "value"])
    return TargetReport(rows, rejects)


# --------------------------------------------------------------------------- project
def validate_project(project: Any) -> list[dict[str, Any]]:
    """Validate a project's targets, categories and target tables (no layer is read).

    ``project`` is a :class:`gis.catalog.Project` or a path. This is what ``gis
    validate`` and ``gis run`` call before any analysis (a bad target stops the run
    before anything is written to ``--out``).

    Examples
    --------
    >>> from gis import settings
    >>> rows = validate_project(settings.SAMPLE_PROJECT_DIR)
    >>> rows[0]["metric"], type(rows[0]["target"]).__name__, rows[0]["min_per_township"]  # row_defaults filled
    ('count', 'float', 1)
    """
    from gis.catalog import load_project, load_yaml

    if not hasattr(project, "raw"):
        project = load_project(project)
    src = project.path
    cats = load_categories(project.raw.get("categories"), source=src)
    tables = table_specs(project.raw, project.root, source=src)
    targets = project.raw.get("targets")
    if targets is None:
        targets = load_yaml(LAYERS_DIR / "targets.yaml").get("default") or []
    return validate_targets(targets, categories=cats, tables=tables, source=src)


def _coverage_share(district: District) -> CoverageShare | None:
    """``(sites, row) -> (population share, household share)`` with the district's standards."""
    from gis import coverage as gcov

    try:
        pop = district.population_points()
    except Exception:  # no population layer: coverage targets are reported as missing data
        return None
    cfg = district.project.section("coverage")
    nets: dict[str, Any] = {}

    def share(sites: gpd.GeoDataFrame, row: Mapping[str, Any]) -> tuple[float, float]:
        tiers = list(row.get("tiers") or []) or list(sites["tier"].astype(str).unique()) or ["collection_point"]
        std = gcov.Standard.from_config(tiers[0], cfg)
        if row.get("distance_m") is not None or row.get("mode") is not None:
            std = gcov.Standard(std.tier, str(row.get("mode", std.mode)), float(row.get("distance_m", std.distance_m)))
        if std.mode in ("walk", "drive") and district.roads_path is not None and std.mode not in nets:
            from gis import network as gnet

            nets[std.mode] = gcov.NetworkCSR.from_graph(gnet.graph_for_district(district, mode=std.mode))
        net = nets.get(std.mode)
        res = gcov.compute_coverage(pop, sites, std, network=net, max_snap_m=float(cfg["max_snap_m"]),
                                    townships=district.townships)
        return res.population_covered_share, res.household_covered_share

    return share


def evaluate_district(
    district: District,
    compliance: ComplianceResult | None = None,
    *,
    eligible: gpd.GeoDataFrame | None = None,
    coverage_share: CoverageShare | None = None,
) -> TargetReport:
    """Validate and evaluate the targets of a loaded :class:`gis.district.District`.

    Parameters
    ----------
    compliance
        A :class:`gis.compliance.ComplianceResult` already computed (else computed).
    eligible
        The active, compliant sites (:func:`gis.coverage.eligible_sites`) when the
        caller has them; they count as built.
    coverage_share
        ``(sites, row) -> (population share, household share)``; default: the district's
        service standards with a road network built once per mode.
    """
    from gis.coverage import eligible_sites

    targets = validate_project(district.project)
    src = district.project.path
    cats = load_categories(district.project.raw.get("categories"), source=src)
    tables = table_specs(district.project.raw, district.project.root, source=src)
    sites = district.sites
    ok = eligible if eligible is not None else eligible_sites(district, compliance)
    flags = pd.Series(sites.index.isin(ok.index), index=sites.index)
    norms = district.project.section("coverage").get("households_per_point") or {}
    share = coverage_share if coverage_share is not None else _coverage_share(district)
    return evaluate_targets(targets, categories=cats, tables=tables, sites=sites, townships=district.townships,
                            eligible=flags, coverage_share=share, norms=norms, source=src)


def district_evaluator(
    district: District, compliance: ComplianceResult | None = None
) -> Callable[[gpd.GeoDataFrame, CoverageShare | None], list[dict[str, Any]]]:
    """The evaluator :func:`gis.coverage.analyse_district` calls with its eligible sites.

    Examples
    --------
    >>> from gis import coverage, targets                                  # doctest: +SKIP
    >>> cov = coverage.analyse_district(d, target_evaluator=targets.district_evaluator(d))  # doctest: +SKIP
    """

    def evaluate(eligible: gpd.GeoDataFrame, coverage_share: CoverageShare | None) -> list[dict[str, Any]]:
        return evaluate_district(district, compliance, eligible=eligible, coverage_share=coverage_share).rows

    return evaluate


def write_report(report: TargetReport, out: str | Path) -> dict[str, Path]:
    """``targets.csv`` (UTF-8 with BOM, for Excel), ``targets.json`` and ``targets_rejects.csv``."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "targets.csv", "json": out / "targets.json", "rejects": out / "targets_rejects.csv"}
    report.frame().to_csv(paths["csv"], index=False, encoding="utf-8-sig")
    paths["json"].write_text(json.dumps(report.rows, ensure_ascii=False, indent=1), encoding="utf-8")
    report.rejects.to_csv(paths["rejects"], index=False, encoding="utf-8-sig")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gis.targets PROJECT [--out DIR]``: validate, evaluate, print and write the targets."""
    import argparse
    import sys

    from gis._errors import GisError

    ap = argparse.ArgumentParser(prog="python -m gis.targets", description="district targets: built / planned / gap")
    ap.add_argument("project")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    try:
        validate_project(args.project)
        from gis.district import load_district

        report = evaluate_district(load_district(args.project))
    except GisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in report.rows:
        closes = {True: "规划可补齐", False: "规划不足", None: "—"}[r["planned_closes_gap"]]
        print(f"{r['name']}: 目标 {r['direction']} {r['target']:g}; 已建 {r['built']}; 规划 {r['planned']}; "
              f"差距 {r['gap']} {r['gap_unit']}; {'达标' if r['met'] else '未达标'}; {closes}")
    if len(report.rejects):
        print(f"{len(report.rejects)} table rows rejected (targets_rejects.csv)")
    if args.out:
        write_report(report, args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
