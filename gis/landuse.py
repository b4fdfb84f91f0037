"""Land-use classification schemes (地类分类体系): the one home of land-use classes.

A district's land-use layer is coded in one of three schemes, each a table in
``layers/``:

* ``gbt21010_2017`` — GB/T 21010-2017《土地利用现状分类》(``landuse_gbt21010_2017.yaml``);
* ``sandiao`` — the 第三次全国国土调查工作分类 of 三调 current-use data, with its working
  codes 05H1, 08H1, 08H2, 08H2A, 0810A … (``landuse_sandiao.yaml``);
* ``yongdi_yonghai_2023`` — 国土空间调查、规划、用途管制用地用海分类 of planning data
  (``landuse_yongdi_yonghai_2023.yaml``).

Each scheme maps its codes (crosswalk, 对照) to the canonical classes of
``layers/landuse_canonical.yaml``; the siting and compliance rules read only the
canonical class (``allowed_tiers``, ``receptor``). The same code can mean different
things in two schemes (0804: 科研 in GB/T 21010, 教育 in 用地用海), so the scheme is
declared per layer (``scheme:`` in ``project.yaml``) and detected from the codes only
when the detection is unambiguous (:func:`detect_scheme`).

:class:`LandUseScheme` offers the methods of the former ``compliance.LandUseClasses``
(``resolve``, ``table``, ``allowed_pairs``, ``receptor_codes``) so that it replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from gis._errors import CatalogError
from gis.settings import LAYERS_DIR

__all__ = [
    "SCHEMES",
    "LandUseScheme",
    "SchemeDetection",
    "canonical_classes",
    "code_report",
    "detect_scheme",
    "load_scheme",
    "scheme_for_layer",
    "normalise_codes",
]

#: The schemes a land-use layer may declare (``scheme:`` in ``project.yaml``).
SCHEMES: tuple[str, ...] = ("gbt21010_2017", "sandiao", "yongdi_yonghai_2023")


def _scheme_path(scheme: str, layers_dir: Path) -> Path:
    return layers_dir / f"landuse_{scheme}.yaml"


def _read_yaml(path: Path) -> dict[str, Any]:
    """A class table read with the one YAML reader, bounded like :func:`gis.catalog.load_yaml`.

    (``gis.catalog`` imports this module, so the reader is called directly here.)
    """
    from gis.limits import yaml_limits
    from gis.safeyaml import read_mapping

    if not path.exists():
        raise CatalogError(path, "classes", "class table not found")
    data = read_mapping(path, yaml_limits())
    if not isinstance(data.get("classes"), dict):
        raise CatalogError(path, "classes", "missing or not a mapping of code -> class")
    return data


def canonical_classes(layers_dir: str | Path = LAYERS_DIR) -> dict[str, dict[str, Any]]:
    """The canonical classes (规范地类) the rules read: ``{name: {name_zh, allowed_tiers, receptor}}``."""
    path = Path(layers_dir) / "landuse_canonical.yaml"
    data = _read_yaml(path)
    return {str(k): dict(v or {}) for k, v in data["classes"].items()}


def normalise_codes(codes: Iterable[Any]) -> pd.Series:
    """Codes as stripped strings (null stays null; ``801.0`` from a numeric column → ``0801``).

    A numeric land-use column loses its leading zero (``0801`` read as 801); the code is
    restored by zero-padding to 2 or 4 digits: ``len(str(int(v)))`` odd → one ``0`` more.
    """
    s = pd.Series(list(codes), dtype="object")
    out = []
    for v in s:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
            continue
        if isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer()):
            t = str(int(v))
            out.append(t.zfill(len(t) + len(t) % 2))
            continue
        t = str(v).strip().upper()
        out.append(t or None)
    return pd.Series(out, index=s.index, dtype="object")


@dataclass(frozen=True)
class LandUseScheme:
    """One classification scheme with its crosswalk to the canonical classes.

    Attributes
    ----------
    name
        Scheme id (one of :data:`SCHEMES`).
    source
        The published standard or notice the code list comes from.
    classes
        ``{code: {"name_zh", "canonical", "allowed_tiers", "receptor"}}``: every code of
        the scheme with its canonical class resolved (a code without ``canonical``
        inherits its parent's: ``08H2A`` → ``08H2`` → ``08``).
    path
        The YAML file read.
    """

    name: str
    source: str
    classes: Mapping[str, Mapping[str, Any]]
    path: str = ""
    canonical: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, scheme: str = "gbt21010_2017", layers_dir: str | Path = LAYERS_DIR) -> "LandUseScheme":
        """Read ``layers/landuse_<scheme>.yaml`` and resolve its crosswalk.

        Raises
        ------
        CatalogError
            Unknown scheme, a code whose canonical class is not defined, or a code
            with no canonical class on itself or any parent.
        """
        layers_dir = Path(layers_dir)
        if scheme not in SCHEMES:
            raise CatalogError(layers_dir, "scheme", f"unknown land-use scheme {scheme!r}; one of {', '.join(SCHEMES)}")
        path = _scheme_path(scheme, layers_dir)
        data = _read_yaml(path)
        canon = canonical_classes(layers_dir)
        raw = {str(k): dict(v or {}) for k, v in data["classes"].items()}
        classes: dict[str, dict[str, Any]] = {}
        for code, spec in raw.items():
            cname = spec.get("canonical")
            parent = code
            while cname is None and len(parent) > 2:
                parent = parent[:-1]
                cname = (raw.get(parent) or {}).get("canonical")
            if cname is None:
                raise CatalogError(path, f"classes.{code}.canonical", "no canonical class on the code or its parent")
            if cname not in canon:
                raise CatalogError(path, f"classes.{code}.canonical", f"unknown canonical class {cname!r} (layers/landuse_canonical.yaml)")
            rec = canon[cname].get("receptor")
            receptors = tuple(rec) if isinstance(rec, list) else ((rec,) if rec else ())
            classes[code] = {
                "name_zh": spec.get("name_zh"),
                "canonical": cname,
                "canonical_zh": canon[cname].get("name_zh"),
                "allowed_tiers": list(canon[cname].get("allowed_tiers") or []),
                "receptor": receptors[0] if receptors else None,
                "receptors": receptors,
            }
        return cls(scheme, str(data.get("source") or ""), classes, str(path), canon)

    # -- the LandUseClasses interface ------------------------------------------------
    def resolve(self, code: Any) -> str | None:
        """The scheme entry for ``code``: its own entry, else its nearest listed parent.

        ``080403`` → ``0804``, ``08H2A`` → ``08H2`` (when not listed) → ``08``; None when
        the code is null or neither it nor a parent is in the scheme.
        """
        if code is None or (isinstance(code, float) and np.isnan(code)):
            return None
        c = str(code).strip().upper()
        while len(c) >= 2:
            if c in self.classes:
                return c
            c = c[:-1]
        return None

    def in_scheme(self, code: Any) -> bool:
        """Whether ``code`` is listed (or is a six-digit third-level code of a listed code)."""
        if code is None:
            return False
        c = str(code).strip().upper()
        return c in self.classes or (len(c) == 6 and c.isdigit() and self.name == "yongdi_yonghai_2023" and c[:4] in self.classes)

    def table(self, codes: pd.Series) -> pd.DataFrame:
        """Resolve codes (one lookup per distinct code) to the scheme and canonical class.

        Returns
        -------
        DataFrame aligned with ``codes``: ``landuse_code`` (null when null or not
        resolvable), ``class_entry``, ``landuse_name``, ``receptor`` (the first),
        ``canonical``, ``receptors`` (``;``-joined, all of them: 三调 08H2 is both a
        school and a hospital).
        """
        codes = codes.astype("object").where(codes.notna(), None)
        rows: dict[str, tuple[Any, ...]] = {}
        for c in (str(x) for x in pd.unique(codes.dropna())):
            e = self.resolve(c)
            own = self.classes.get(c.strip().upper()) or {}
            base = self.classes.get(e) or {} if e else {}
            rows[c] = (
                c if e else None,
                e,
                (own.get("name_zh") or base.get("name_zh")) if e else None,
                base.get("receptor") if e else None,
                base.get("canonical") if e else None,
                ";".join(base.get("receptors") or ()) if e else None,
            )
        cols = ["landuse_code", "class_entry", "landuse_name", "receptor", "canonical", "receptors"]
        lookup = pd.DataFrame.from_dict(rows, orient="index", columns=cols) if rows else pd.DataFrame(columns=cols)
        key = codes.astype("string").to_numpy(dtype=object, na_value=None)
        out = lookup.reindex(key).set_axis(codes.index)
        for col in out.columns:
            out[col] = out[col].astype("object").where(out[col].notna(), None)
        return out

    def allowed_pairs(self) -> set[str]:
        """``{"<code>|<tier>"}`` for every (scheme entry, tier) its canonical class allows."""
        return {f"{code}|{tier}" for code, spec in self.classes.items() for tier in spec["allowed_tiers"]}

    def receptor_codes(self, receptor: str, codes: Sequence[str]) -> list[str]:
        """Those of ``codes`` whose resolved class is a ``receptor`` class (one of its receptors)."""
        return [c for c in codes if receptor in ((self.classes.get(self.resolve(c) or "") or {}).get("receptors") or ())]

    def canonical_of(self, code: Any) -> str | None:
        """The canonical class of ``code`` (None when not resolvable)."""
        e = self.resolve(code)
        return self.classes[e]["canonical"] if e else None


def load_scheme(scheme: str, layers_dir: str | Path = LAYERS_DIR) -> LandUseScheme:
    """:meth:`LandUseScheme.load` as a function.

    Examples
    --------
    >>> load_scheme("gbt21010_2017").classes["0803"]["name_zh"]
    '教育用地'
    """
    return LandUseScheme.load(scheme, layers_dir)


def code_report(codes: Iterable[Any], scheme: LandUseScheme) -> pd.DataFrame:
    """Count each distinct code of a layer and say how the scheme reads it.

    Returns
    -------
    DataFrame, one row per distinct non-null code, most frequent first: ``code``,
    ``count``, ``in_scheme`` (listed, or a third-level code of a listed one),
    ``resolved_as`` (the entry used, possibly a parent), ``name_zh``, ``canonical``.
    Codes with ``in_scheme`` False are the ones to report — never silently "unknown".
    """
    s = normalise_codes(codes).dropna()
    counts = s.value_counts()
    rows = []
    for code, n in counts.items():
        e = scheme.resolve(code)
        spec = scheme.classes.get(e) or {}
        rows.append(
            {
                "code": code, "count": int(n), "in_scheme": scheme.in_scheme(code), "resolved_as": e,
                "name_zh": spec.get("name_zh"), "canonical": spec.get("canonical"),
            }
        )
    cols = ["code", "count", "in_scheme", "resolved_as", "name_zh", "canonical"]
    return pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True)
class SchemeDetection:
    """Outcome of :func:`detect_scheme`.

    Attributes
    ----------
    scheme
        The scheme used.
    declared
        True when ``project.yaml`` declared it, False when detected.
    candidates
        Schemes that know every code (or, when none does, those knowing the most).
    report
        :func:`code_report` of the layer's codes under ``scheme``.
    """

    scheme: LandUseScheme
    declared: bool
    candidates: tuple[str, ...]
    report: pd.DataFrame

    @property
    def unknown(self) -> pd.DataFrame:
        """Codes not in the scheme, with their counts."""
        return self.report.loc[~self.report["in_scheme"]].reset_index(drop=True)

    def message(self) -> str:
        """One line for ``gis validate``: the scheme and each code not in it with its count."""
        how = "declared" if self.declared else "detected"
        line = f"land-use scheme {self.scheme.name} ({how})"
        unk = self.unknown
        if len(unk):
            parts = [f"{r.code}×{r.count}" for r in unk.itertuples()]
            line += f"; codes not in the scheme: {', '.join(parts)}"
        return line


def _conflicts(codes: Sequence[str], schemes: Sequence[LandUseScheme]) -> list[str]:
    """``code (scheme: name→canonical / …)`` for each code the schemes read differently."""
    out = []
    for c in codes:
        readings = {s.name: s.canonical_of(c) for s in schemes}
        if len(set(readings.values())) > 1:
            detail = " / ".join(f"{n}: {(s.classes.get(s.resolve(c)) or {}).get('name_zh')}" for n, s in zip(readings, schemes))
            out.append(f"{c} ({detail})")
    return out


def detect_scheme(
    codes: Iterable[Any],
    *,
    source: str | Path = "project.yaml",
    key: str = "layers.landuse.scheme",
    layers_dir: str | Path = LAYERS_DIR,
) -> SchemeDetection:
    """Detect a layer's scheme from its codes, only when that is unambiguous.

    The candidates are the schemes listing every distinct code (else those listing
    the most). One candidate → it. Several → accepted only when all of them read every
    code of the layer as the same canonical class (the choice changes nothing; the
    first in :data:`SCHEMES` order is used); otherwise a one-line
    :class:`~gis._errors.CatalogError` names the codes read differently.

    Raises
    ------
    CatalogError
        Ambiguous codes (named, with each scheme's reading), or an empty layer.

    Examples
    --------
    >>> detect_scheme(["05H1", "08H1", "0701"]).scheme.name    # 三调 working codes
    'sandiao'
    >>> detect_scheme(["0803", "1201"])                        # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gis._errors.CatalogError: project.yaml: key 'layers.landuse.scheme': land-use scheme ambiguous between ...
    """
    s = normalise_codes(codes).dropna()
    distinct = sorted(set(s))
    if not distinct:
        raise CatalogError(source, key, "the land-use layer has no codes; declare scheme: one of " + ", ".join(SCHEMES))
    schemes = [LandUseScheme.load(n, layers_dir) for n in SCHEMES]
    known = [sum(sc.in_scheme(c) for c in distinct) for sc in schemes]
    best = max(known)
    cands = [sc for sc, k in zip(schemes, known) if k == best]
    if len(cands) > 1:
        bad = _conflicts(distinct, cands)
        if bad:
            names = ", ".join(sc.name for sc in cands)
            raise CatalogError(
                source, key,
                f"land-use scheme ambiguous between {names}: codes read differently: {'; '.join(bad[:8])}"
                f"{' …' if len(bad) > 8 else ''}; declare scheme: in project.yaml",
            )
    chosen = cands[0]
    return SchemeDetection(chosen, False, tuple(sc.name for sc in cands), code_report(s, chosen))


def scheme_for_layer(
    spec: Mapping[str, Any] | None,
    codes: Iterable[Any],
    *,
    source: str | Path = "project.yaml",
    key: str = "layers.landuse",
    layers_dir: str | Path = LAYERS_DIR,
) -> SchemeDetection:
    """The scheme of one land-use layer: declared (``scheme:`` in its spec) or detected.

    Parameters
    ----------
    spec
        The layer's mapping in ``project.yaml`` (or an object with a ``scheme``
        attribute, e.g. a :class:`gis.catalog.LayerSpec`), or None.
    codes
        The layer's land-use codes (``landuse_code`` column, or raster codes).
    """
    declared = (spec.get("scheme") if isinstance(spec, Mapping) else getattr(spec, "scheme", None)) if spec is not None else None
    if declared is None:
        return detect_scheme(codes, source=source, key=f"{key}.scheme", layers_dir=layers_dir)
    if declared not in SCHEMES:
        raise CatalogError(source, f"{key}.scheme", f"unknown land-use scheme {declared!r}; one of {', '.join(SCHEMES)}")
    sc = LandUseScheme.load(str(declared), layers_dir)
    return SchemeDetection(sc, True, (sc.name,), code_report(codes, sc))


class LandUseHolder(Protocol):
    """What :func:`layer_codes` / :func:`check_district` read of a :class:`gis.district.District`
    (a protocol: ``gis.district`` imports this module)."""

    @property
    def project(self) -> Any: ...

    @property
    def landuse(self) -> pd.DataFrame | None: ...

    @property
    def landuse_raster(self) -> Any: ...


def layer_codes(district: LandUseHolder) -> pd.Series:
    """The land-use codes of a loaded district: the vector ``landuse_code`` column, else
    the distinct values of the raster (through its ``classes`` map when it has one)."""
    if getattr(district, "landuse", None) is not None and len(district.landuse):
        return normalise_codes(district.landuse["landuse_code"])
    raster = getattr(district, "landuse_raster", None)
    if raster is None:
        return pd.Series([], dtype=object)
    import rasterio

    with rasterio.open(raster.path) as ds:
        band = ds.read(1)
        nodata = raster.nodata if getattr(raster, "nodata", None) is not None else ds.nodata
    vals, counts = np.unique(band, return_counts=True)
    keep = vals != nodata if nodata is not None else np.ones(len(vals), bool)
    v2c = getattr(raster, "classes", None)
    v2c = v2c if isinstance(v2c, Mapping) else {}
    codes = [v2c.get(int(v), int(v)) for v in vals[keep]]
    return normalise_codes(np.repeat(np.array(codes, dtype=object), counts[keep]) if codes else [])


def check_district(district: LandUseHolder) -> SchemeDetection | None:
    """The scheme of a loaded district's land-use layer, declared or detected (``gis validate``).

    None when the district has no land-use layer. Raises the one-line
    :class:`~gis._errors.CatalogError` of :func:`detect_scheme` when undeclared and ambiguous.
    """
    spec = district.project.spec("landuse") if hasattr(district.project, "spec") else None
    codes = layer_codes(district)
    if spec is None and not len(codes):
        return None
    key = getattr(spec, "key", "layers.landuse")
    return scheme_for_layer(spec, codes, source=district.project.path, key=key)


def classes_for_project(project: Any) -> LandUseScheme | None:
    """The declared scheme of a project's land-use layer, for the rule table; None when undeclared.

    An undeclared layer is read as GB/T 21010-2017 (the rule table's default); ``gis
    validate`` detects the scheme from its codes and stops when they are ambiguous.
    """
    spec = project.spec("landuse") if project is not None and hasattr(project, "spec") else None
    scheme = getattr(spec, "scheme", None)
    return LandUseScheme.load(str(scheme)) if scheme else None
