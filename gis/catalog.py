"""Project and layer catalogues: ``project.yaml`` and the YAML tables in ``layers/``.

A *project* (one district) is a folder holding a ``project.yaml`` that names the
district's layer files, their formats and coordinate conventions, and the
district's targets and analysis overrides. The toolkit-wide defaults (alias table,
GB/T 21010 land-use classes, rule and parameter tables) live in ``layers/``;
:meth:`Project.section` merges a district's overrides onto them.

Every validation error names the YAML file and the dotted key at fault
(:class:`gis._errors.CatalogError`).
"""

from __future__ import annotations

import copy
import functools
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gis import settings
from gis._errors import CatalogError
from gis.schema import LAYER_FIELDS, LAYER_ROLES, REQUIRED_ROLES, ZoneLevel, ZoneType

#: File formats the loaders read, by suffix.
FORMAT_BY_SUFFIX: dict[str, str] = {
    ".csv": "csv",
    ".txt": "csv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".gpkg": "gpkg",
    ".shp": "shp",
    ".geojson": "geojson",
    ".json": "geojson",
    ".tif": "tif",
    ".tiff": "tif",
    ".osm": "osm",
    ".xml": "osm",
    ".graphml": "graphml",
}
TABLE_FORMATS = frozenset({"csv", "xlsx"})
VECTOR_FORMATS = frozenset({"gpkg", "shp", "geojson"})
RASTER_FORMATS = frozenset({"tif"})
GRAPH_FORMATS = frozenset({"osm", "graphml"})

#: Which formats each role accepts.
ROLE_FORMATS: dict[str, frozenset[str]] = {
    "sites": TABLE_FORMATS | VECTOR_FORMATS,
    "incidents": TABLE_FORMATS | VECTOR_FORMATS,
    "candidates": TABLE_FORMATS | VECTOR_FORMATS,
    "townships": VECTOR_FORMATS,
    "zones": VECTOR_FORMATS,
    "landuse": VECTOR_FORMATS | RASTER_FORMATS,
    "population": VECTOR_FORMATS | RASTER_FORMATS | TABLE_FORMATS,
    "roads": VECTOR_FORMATS | GRAPH_FORMATS,
}

_LAYER_KEYS = frozenset(
    {
        "file",
        "format",
        "layer",
        "sheet",
        "encoding",
        "coords",
        "lon",
        "lat",
        "columns",
        "classes",
        "scheme",
        "zone_type",
        "level",
        "name",
        "description",
    }
)


@dataclass(frozen=True)
class LayerSpec:
    """How to read one input file of a project.

    Attributes
    ----------
    role
        Layer role (``sites``, ``incidents``, ``zones``, …; see :data:`gis.schema.LAYER_ROLES`).
    path
        Absolute path of the file.
    format
        ``csv``, ``xlsx``, ``gpkg``, ``shp``, ``geojson``, ``tif``, ``osm`` or ``graphml``.
    key
        Dotted key of this spec in ``project.yaml`` (for error messages).
    layer, sheet, encoding
        GeoPackage layer, Excel sheet, text encoding (``None`` = detect).
    coords
        Declared coordinate convention (``wgs84``, ``cgcs2000``, ``gcj02``, ``bd09``
        or ``EPSG:n``); ``None`` = the file's own CRS (vector/raster only).
    lon, lat
        Explicit coordinate column headers of a table.
    columns
        Explicit ``{canonical: header}`` mapping, taking precedence over aliases.
    classes
        Class table of a land-use raster (``gbt21010`` or a ``{value: code}`` map).
    scheme
        Land-use classification scheme of a land-use layer (:data:`gis.landuse.SCHEMES`);
        ``None``: detected from the codes (:func:`gis.landuse.detect_scheme`).
    zone_type, level, name
        Values that fill these zone columns when the file lacks them.
    """

    role: str
    path: Path
    format: str
    key: str
    layer: str | None = None
    sheet: str | int | None = None
    encoding: str | None = None
    coords: str | None = None
    lon: str | None = None
    lat: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    classes: Any = None
    scheme: str | None = None
    zone_type: str | None = None
    level: str | None = None
    name: str | None = None

    @property
    def kind(self) -> str:
        """``table``, ``vector``, ``raster`` or ``graph``."""
        if self.format in TABLE_FORMATS:
            return "table"
        if self.format in VECTOR_FORMATS:
            return "vector"
        if self.format in RASTER_FORMATS:
            return "raster"
        return "graph"


@dataclass
class Project:
    """One district's project: its layer specs, targets and analysis settings.

    Attributes
    ----------
    root
        Folder holding ``project.yaml`` (relative paths resolve against it).
    path
        The ``project.yaml`` file.
    name
        District name (e.g. ``沙坪坝区``).
    layers
        ``{role: [LayerSpec, …]}`` — every role holds a list (most hold one).
    metric_crs
        Declared metric CRS (``EPSG:n``) or ``None`` for automatic choice.
    outside_tolerance_m
        How far outside the townships a point may lie before it is rejected.
    sample
        True for generated sample data (shown on every output).
    raw
        The parsed YAML, for sections read by later analyses.
    """

    root: Path
    path: Path
    name: str
    layers: dict[str, list[LayerSpec]]
    outside_tolerance_m: float
    metric_crs: str | None = None
    sample: bool = False
    code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def has(self, role: str) -> bool:
        """Whether the project declares a layer of this role."""
        return bool(self.layers.get(role))

    def spec(self, role: str) -> LayerSpec | None:
        """The (first) spec of a role, or ``None``."""
        specs = self.layers.get(role) or []
        return specs[0] if specs else None

    @property
    def targets(self) -> list[dict[str, Any]]:
        """The district's target table (``targets:`` in ``project.yaml``)."""
        targets = self.raw.get("targets") or []
        if not isinstance(targets, list):
            raise CatalogError(self.path, "targets", "must be a list of {name, metric, tiers, target}")
        return targets

    def section(self, name: str) -> dict[str, Any]:
        """Defaults from ``layers/<name>.yaml`` deep-merged with the project's ``<name>:``.

        Mappings merge key by key; lists of mappings that all carry an ``id`` merge
        item by item on that id (a district's ``{id: R3, enabled: false}`` switches
        a default rule off; a new id adds a rule); any other value replaces the
        default.
        """
        defaults_path = settings.LAYERS_DIR / f"{name}.yaml"
        defaults = load_yaml(defaults_path) if defaults_path.exists() else {}
        override = self.raw.get(name) or {}
        if not isinstance(override, Mapping):
            raise CatalogError(self.path, name, "must be a mapping")
        return deep_merge(defaults, override)


def project_defaults() -> dict[str, Any]:
    """Top-level ``project.yaml`` keys' defaults (``layers/project.yaml``)."""
    return load_yaml(settings.LAYERS_DIR / "project.yaml")


def deep_merge(base: Any, override: Any) -> Any:
    """Merge ``override`` onto ``base`` (see :meth:`Project.section`)."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for k, v in override.items():
            out[k] = deep_merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(override, list)
        and all(isinstance(i, Mapping) and "id" in i for i in base + override)
    ):
        merged = {i["id"]: copy.deepcopy(dict(i)) for i in base}
        for item in override:
            merged[item["id"]] = deep_merge(merged.get(item["id"], {}), item)
        return list(merged.values())
    return copy.deepcopy(override)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file into a mapping: the one catalogue read function.

    Every ``layers/*.yaml`` table and ``project.yaml`` is read here, through the
    bounded loader :func:`gis.safeyaml.read_mapping` with the limits of
    ``layers/limits.yaml``; syntax errors name the file and line.

    Examples
    --------
    >>> from gis import settings
    >>> load_yaml(settings.LAYERS_DIR / "limits.yaml")["dates"]["min"]
    '2000-01-01'
    """
    from gis.limits import yaml_limits
    from gis.safeyaml import read_mapping

    return read_mapping(path, yaml_limits())


def find_project_file(project: str | Path) -> Path:
    """Resolve a project folder or YAML file to the ``project.yaml`` path."""
    p = Path(project)
    if p.is_dir():
        p = p / "project.yaml"
    if not p.exists():
        raise CatalogError(p, "(file)", "no project.yaml here")
    return p.resolve()


def load_project(project: str | Path, *, confined: bool = False) -> Project:
    """Read and validate a ``project.yaml`` (a folder holding one, or the file itself).

    Raises
    ------
    CatalogError
        Naming the file and key of the first problem found: a missing required
        key or layer, an unknown role, format or coordinate convention, a file
        that does not exist.

    Examples
    --------
    >>> from gis import settings
    >>> project = load_project(settings.SAMPLE_PROJECT_DIR)
    >>> project.name
    '沙坪坝区（样例）'
    >>> project.section("coverage")["max_snap_m"] > 0      # layers/coverage.yaml ← project.yaml
    True
    """
    path = find_project_file(project)
    raw = load_yaml(path)
    root = path.parent

    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CatalogError(path, "name", "required: the district's name, e.g. 沙坪坝区")

    layers = _layer_specs(path, raw.get("layers"), confined)
    metric_crs = _metric_crs(path, raw.get("crs") or {})

    tol = raw.get("outside_tolerance_m", project_defaults()["outside_tolerance_m"])
    if not isinstance(tol, (int, float)) or tol < 0:
        raise CatalogError(path, "outside_tolerance_m", "must be a non-negative number of metres")

    for section_name in ("targets",):
        if section_name in raw and not isinstance(raw[section_name], list):
            raise CatalogError(path, section_name, "must be a list")

    return Project(
        root=root,
        path=path,
        name=name.strip(),
        layers=layers,
        metric_crs=metric_crs,
        outside_tolerance_m=float(tol),
        sample=bool(raw.get("sample", False)),
        code=str(raw["code"]) if raw.get("code") is not None else None,
        raw=raw,
    )


def did_you_mean(key: Any, valid: Any) -> str:
    """``did you mean 'x'?`` for the valid key nearest ``key`` (difflib), else the valid keys."""
    import difflib

    valid = [str(v) for v in valid]
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(valid))}"


def _layer_specs(path: Path, layers_raw: Any, confined: bool) -> dict[str, list[LayerSpec]]:
    """``layers:`` of ``project.yaml``: every role's file spec(s), checked."""
    from gis.coords import parse_convention  # local: coords is a leaf module

    if not isinstance(layers_raw, Mapping):
        raise CatalogError(path, "layers", "required: a mapping of layer role to file spec")
    unknown = sorted(set(layers_raw) - set(LAYER_ROLES))
    if unknown:
        raise CatalogError(path, f"layers.{unknown[0]}", f"unknown layer role; {did_you_mean(unknown[0], LAYER_ROLES)}")
    for role in REQUIRED_ROLES:
        if not layers_raw.get(role):
            raise CatalogError(path, f"layers.{role}", "required layer is missing")
    layers: dict[str, list[LayerSpec]] = {}
    for role, entry in layers_raw.items():
        if entry is None:
            continue
        entries = entry if isinstance(entry, list) else [entry]
        layers[role] = [
            _layer_spec(path, path.parent, role, f"layers.{role}" + (f"[{i}]" if isinstance(entry, list) else ""),
                        item, parse_convention, confined)
            for i, item in enumerate(entries)
        ]
    return layers


def _metric_crs(path: Path, crs_block: Any) -> str | None:
    """``crs.metric`` of ``project.yaml``: a projected CRS, or ``None`` for ``auto``."""
    if not isinstance(crs_block, Mapping):
        raise CatalogError(path, "crs", "must be a mapping, e.g. {metric: auto}")
    unknown = sorted(set(crs_block) - {"metric"})
    if unknown:
        raise CatalogError(path, f"crs.{unknown[0]}", f"unknown key; {did_you_mean(unknown[0], ['metric'])}")
    metric = crs_block.get("metric", "auto")
    if metric in (None, "auto"):
        return None
    try:
        import pyproj

        crs = pyproj.CRS.from_user_input(metric)
    except Exception as exc:  # pyproj raises CRSError with a long message
        raise CatalogError(path, "crs.metric", f"not a CRS pyproj knows: {metric!r}") from exc
    if not crs.is_projected:
        raise CatalogError(path, "crs.metric", f"{metric} is not a projected (metric) CRS")
    return str(metric)


def _layer_spec(path: Path, root: Path, role: str, key: str, item: Any, parse_convention, confined: bool = False) -> LayerSpec:
    if isinstance(item, str):
        item = {"file": item}
    if not isinstance(item, Mapping):
        raise CatalogError(path, key, "must be a file name or a mapping with 'file'")
    extra = sorted(set(item) - _LAYER_KEYS)
    if extra:
        raise CatalogError(path, f"{key}.{extra[0]}", f"unknown key; {did_you_mean(extra[0], _LAYER_KEYS)}")
    file = item.get("file")
    if not isinstance(file, str) or not file:
        raise CatalogError(path, f"{key}.file", "required: the layer's file name")
    if confined:  # uploads and --confined: only files inside the project folder (gis.confine)
        from gis.confine import confined_path

        fpath = confined_path(root, file, yaml_path=path, key=f"{key}.file")
    fpath = (root / file).resolve()
    if not fpath.exists():
        raise CatalogError(path, f"{key}.file", f"file not found: {fpath}")
    fmt = item.get("format") or FORMAT_BY_SUFFIX.get(fpath.suffix.lower())
    if fmt not in ROLE_FORMATS[role]:
        raise CatalogError(
            path,
            f"{key}.format",
            f"format {fmt!r} cannot hold a {role} layer; use one of {', '.join(sorted(ROLE_FORMATS[role]))}",
        )
    coords = item.get("coords")
    if coords is not None:
        try:
            parse_convention(str(coords))
        except Exception as exc:
            raise CatalogError(path, f"{key}.coords", str(exc)) from None
        coords = str(coords)
    elif fmt in TABLE_FORMATS:
        raise CatalogError(
            path,
            f"{key}.coords",
            "required for a table: say which coordinates it holds (wgs84, cgcs2000, gcj02, bd09 or EPSG:n); "
            "geocoded ledgers are usually gcj02 (Amap/Tencent) or bd09 (Baidu)",
        )
    columns = item.get("columns") or {}
    if not isinstance(columns, Mapping):
        raise CatalogError(path, f"{key}.columns", "must map canonical field names to headers")
    known = {f.name for f in LAYER_FIELDS[role]} | {"lon", "lat"}
    bad = sorted(set(columns) - known)
    if bad:
        raise CatalogError(path, f"{key}.columns.{bad[0]}", f"not a field of {role}; fields: {', '.join(sorted(known))}")
    zone_type = item.get("zone_type")
    if zone_type is not None and zone_type not in {z.value for z in ZoneType}:
        raise CatalogError(path, f"{key}.zone_type", f"unknown zone type; known: {', '.join(z.value for z in ZoneType)}")
    level = item.get("level")
    if level is not None and level not in {z.value for z in ZoneLevel}:
        raise CatalogError(path, f"{key}.level", f"unknown level; known: {', '.join(z.value for z in ZoneLevel)}")
    scheme = item.get("scheme")
    if scheme is not None:
        from gis.landuse import SCHEMES

        if role != "landuse" or scheme not in SCHEMES:
            raise CatalogError(path, f"{key}.scheme", f"a land-use layer's scheme: one of {', '.join(SCHEMES)}")
    classes = item.get("classes")
    if role == "landuse" and fmt in RASTER_FORMATS and classes is None:
        classes = "gbt21010"
    return LayerSpec(
        role=role,
        path=fpath,
        format=fmt,
        key=key,
        layer=item.get("layer"),
        sheet=item.get("sheet"),
        encoding=item.get("encoding"),
        coords=coords,
        lon=item.get("lon"),
        lat=item.get("lat"),
        columns=dict(columns),
        classes=classes,
        scheme=scheme,
        zone_type=zone_type,
        level=level,
        name=item.get("name"),
    )


# --------------------------------------------------------------------------- tables


def normalise_label(text: Any) -> str:
    """Normalise a header or category value for alias matching.

    Unicode NFKC (full-width → half-width, e.g. ``（吨）`` → ``(吨)``), case-folded,
    with all white space removed.
    """
    s = unicodedata.normalize("NFKC", str(text))
    return "".join(s.split()).casefold()


@functools.cache
def aliases() -> dict[str, Any]:
    """The alias table ``layers/aliases.yaml`` (cached)."""
    return load_yaml(settings.LAYERS_DIR / "aliases.yaml")


def column_aliases(role: str) -> dict[str, list[str]]:
    """``{canonical: [aliases…]}`` for a role (role-specific first, then common)."""
    table = aliases()["columns"]
    out: dict[str, list[str]] = {}
    for src in (table.get(role) or {}, table.get("common") or {}):
        for canon, names in src.items():
            out.setdefault(canon, [])
            out[canon].extend(str(n) for n in names)
    return out


@functools.cache
def value_lookup(vocabulary: str) -> dict[str, str]:
    """``{normalised alias: canonical value}`` for a vocabulary of ``aliases.yaml``."""
    vocab = aliases()["values"].get(vocabulary)
    if vocab is None:
        raise CatalogError(settings.LAYERS_DIR / "aliases.yaml", f"values.{vocabulary}", "vocabulary not defined")
    lookup: dict[str, str] = {}
    for canon, names in vocab.items():
        lookup[normalise_label(canon)] = str(canon)
        for n in names:
            lookup[normalise_label(n)] = str(canon)
    return lookup


@functools.cache
def landuse_classes() -> dict[str, dict[str, Any]]:
    """GB/T 21010-2017 class table ``{code: {name_zh, canonical, allowed_tiers, receptor}}`` (:mod:`gis.landuse`)."""
    from gis.landuse import load_scheme

    return {str(k): dict(v) for k, v in load_scheme("gbt21010_2017").classes.items()}


def landuse_class(code: str | None) -> dict[str, Any] | None:
    """Class entry for a code, falling back from a second-level to its first-level code."""
    if code is None:
        return None
    table = landuse_classes()
    code = str(code)
    if code in table:
        return table[code]
    if len(code) >= 2 and code[:2] in table:
        return table[code[:2]]
    return None
