"""三个一批 / 四个一批: the disposition (处置方式) proposed for each problem.

The 散乱污 remediation sorts every enterprise into 入园发展 (move into an industrial
park), 整治规范 (rectify in place) or 关停取缔 (shut down); 四个一批 adds 升级改造.
The rules are data (``layers/disposition.yaml``), first match wins; a rule with
``nearest_industrial: true`` names the nearest legal industrial land — a parcel of
an industrial land-use class (``industrial_classes``) whose centroid lies in no
protected zone (四山, 生态红线, …). Departments can override the proposal in their
returned workbook (处置方式).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd

from gis import settings
from gis._errors import CatalogError
from gis.catalog import load_yaml
from gis.params import Section, _build

if TYPE_CHECKING:
    from gis.district import District

__all__ = ["DispositionParams", "disposition_params", "licensed", "nearest_industrial", "propose"]


@dataclass(frozen=True)
class DispositionParams(Section):
    """``layers/disposition.yaml``."""

    categories: tuple[str, ...]
    categories_four: tuple[str, ...]
    scheme: str
    industrial_classes: tuple[str, ...]
    rules: tuple[dict[str, Any], ...]

    @property
    def allowed(self) -> tuple[str, ...]:
        """处置方式 values of the chosen scheme."""
        return self.categories_four if self.scheme == "four" else self.categories


_WHEN_KEYS = ("rule_id", "problem_type", "source", "licensed")


def disposition_params() -> DispositionParams:
    """Read and check ``layers/disposition.yaml``.

    Raises
    ------
    CatalogError
        Unknown condition key, or a rule's disposition outside the categories.
    """
    path = settings.LAYERS_DIR / "disposition.yaml"
    p = _build(DispositionParams, load_yaml(path), path, "", False)
    if p.scheme not in ("three", "four"):
        raise CatalogError(path, "scheme", f"'{p.scheme}' is not three or four")
    for i, rule in enumerate(p.rules):
        bad = [k for k in (rule.get("when") or {}) if k not in _WHEN_KEYS]
        if bad:
            raise CatalogError(path, f"rules[{i}].when.{bad[0]}", f"unknown condition; valid: {', '.join(_WHEN_KEYS)}")
        if rule.get("disposition") not in p.allowed:
            raise CatalogError(path, f"rules[{i}].disposition", f"'{rule.get('disposition')}' not in {list(p.allowed)}")
    return p


def licensed(sites: pd.DataFrame) -> pd.Series:
    """Per site: holds a business licence and, for dismantlers, the dismantling qualification.

    Unknown (missing) values count as not licensed only for the field that applies.
    """
    lic = sites["business_licence"].astype("object").eq(True) if "business_licence" in sites \
        else pd.Series(True, index=sites.index)
    if "dismantling_qualification" in sites and "tier" in sites:
        needs = sites["tier"].astype(str).eq("dismantler")
        lic = lic & (~needs | sites["dismantling_qualification"].astype("object").eq(True))
    return pd.Series(lic.to_numpy(bool), index=sites["site_id"].astype(str).to_numpy())


def _matches(when: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    for k, want in when.items():
        have = row.get(k)
        if k == "licensed":
            if have is None or bool(have) != bool(want):
                return False
        elif str(have) not in [str(w) for w in (want if isinstance(want, list) else [want])]:
            return False
    return True


def industrial_parcels(landuse: gpd.GeoDataFrame | None, zones: gpd.GeoDataFrame | None,
                       scheme: Any, classes: tuple[str, ...]) -> gpd.GeoDataFrame | None:
    """Legal industrial land: parcels of an industrial class with their centroid in no zone."""
    if landuse is None or not len(landuse) or scheme is None or "landuse_code" not in landuse:
        return None
    canon = landuse["landuse_code"].map(scheme.canonical_of)
    parcels = landuse[canon.isin(classes).to_numpy()]
    if zones is not None and len(zones) and len(parcels):
        pts = gpd.GeoDataFrame(geometry=parcels.geometry.representative_point(), crs=parcels.crs)
        inside = gpd.sjoin(pts, zones[[zones.geometry.name]], predicate="within", how="inner").index.unique()
        parcels = parcels.drop(index=inside)
    return parcels if len(parcels) else None


def nearest_industrial(points: gpd.GeoSeries, parcels: gpd.GeoDataFrame | None) -> list[str]:
    """For each point, "地类名称（编码）约 N 米" of the nearest legal industrial parcel ("" when none)."""
    if parcels is None or not len(points):
        return [""] * len(points)
    pts = gpd.GeoDataFrame({"i": np.arange(len(points))}, geometry=list(points.values), crs=parcels.crs)
    ok = ~pts.geometry.is_empty & pts.geometry.notna()
    j = gpd.sjoin_nearest(pts[ok], parcels[["landuse_code", "landuse_name", parcels.geometry.name]],
                          how="left", distance_col="dist").drop_duplicates("i")
    text = {int(r.i): f"{r.landuse_name}（{r.landuse_code}）约{r.dist:.0f}米" for r in j.itertuples()}
    return [text.get(i, "") for i in range(len(points))]


def propose(
    ledger: gpd.GeoDataFrame | pd.DataFrame, sites: pd.DataFrame, *, district: District = None,
    params: DispositionParams | None = None,
) -> pd.DataFrame:
    """Proposed 处置方式 per ledger row (index of ``ledger``).

    Columns: ``disposition_proposed``, ``disposition_note`` (for 入园发展: the nearest
    legal industrial land), ``licensed`` ("1"/"0", blank when the row has no site).
    """
    p = params or disposition_params()
    lic = licensed(sites) if len(sites) and "site_id" in sites else pd.Series(dtype=bool)
    site_ids = ledger["site_id"] if "site_id" in ledger else pd.Series(None, index=ledger.index)
    held = _licensed_of(lic, site_ids)
    hits: dict[tuple[Any, ...], tuple[str, bool]] = {}  # one rule match per distinct (rule, type, source, licence)
    rows = []
    cols = [_objects(c) for c in (ledger.get("rule_id", site_ids), ledger["问题类型"], ledger.get("source", site_ids))]
    for key in zip(*cols, held):
        if key not in hits:
            row = {"rule_id": key[0], "problem_type": key[1], "source": key[2], "licensed": key[3]}
            rule_hit = next((r for r in p.rules if _matches(r.get("when") or {}, row)), {"disposition": p.allowed[1]})
            hits[key] = (rule_hit["disposition"], bool(rule_hit.get("nearest_industrial")))
        rows.append((*hits[key], key[3]))
    out = pd.DataFrame(rows, columns=["disposition_proposed", "_near", "licensed"], index=ledger.index)
    out["disposition_note"] = ""
    want = out["_near"].to_numpy(bool)
    if want.any() and isinstance(ledger, gpd.GeoDataFrame) and district is not None:
        parcels = industrial_parcels(getattr(district, "landuse", None), getattr(district, "zones", None),
                                     _scheme(district), p.industrial_classes)
        notes = nearest_industrial(ledger.geometry[want], parcels)
        out.loc[want, "disposition_note"] = [f"入园发展：最近合法工业用地 {n}" if n else "入园发展：辖区内无合法工业用地，需跨区安置"
                                             for n in notes]
    out["licensed"] = out["licensed"].map({True: "1", False: "0"}).fillna("")
    return out.drop(columns=["_near"])


def _licensed_of(lic: pd.Series, site_ids: pd.Series) -> list[bool | None]:
    """``licensed`` of each row's site (:func:`licensed`, looked up by ``str(site_id)``; None: no such site)."""
    keys = [str(v) for v in _objects(site_ids)]
    if not len(lic):
        return [None] * len(keys)
    lic = lic[~lic.index.duplicated()]
    pos = lic.index.get_indexer(keys)
    vals = lic.to_numpy(dtype=bool)
    return [bool(vals[k]) if k >= 0 else None for k in pos.tolist()]


def _objects(column: pd.Series) -> list[Any]:
    """A column's cells as Python objects (iterating an Arrow-backed Series yields them ~20× slower)."""
    return pd.Series(column).to_numpy(dtype=object).tolist()


def _scheme(district: District) -> Any:
    from gis import landuse

    return landuse.classes_for_project(district.project) or landuse.load_scheme("gbt21010_2017")
