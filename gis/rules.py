"""The compliance rule table (合规规则表): rules, the land-use class table, validation.

:class:`RuleTable` is built from the merged ``compliance`` section of
``layers/compliance.yaml`` and ``project.yaml`` (:meth:`RuleTable.from_section`);
every rule is validated on load (:func:`_parse_rule`), and a problem is reported as a
:class:`gis._errors.CatalogError` naming the key path, e.g.
``compliance.rules[3].condition.type``. :class:`LandUseClasses` is the land-use
scheme (:class:`gis.landuse.LandUseScheme`; GB/T 21010-2017 unless the land-use layer
declares another ``scheme:``) the ``landuse_not_allowed`` and
``near_receptor`` rules read. Evaluation of the rules is in :mod:`gis.compliance`.

Examples
--------
>>> from gis.rules import RuleTable
>>> table = RuleTable.default()
>>> table.get("four_mountains_no_build").verdict
'prohibited'
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from gis._errors import CatalogError
from gis.landuse import LandUseScheme as LandUseClasses  # the one home of land-use classes
from gis.schema import Tier, ZoneLevel
from gis.settings import LAYERS_DIR

__all__ = [
    "ATTRIBUTE_FIELDS",
    "CONDITION_TYPES",
    "DEFAULT_RULES_PATH",
    "NORM_FIELDS",
    "RECEPTORS",
    "RECEPTOR_LABEL_ZH",
    "VERDICT_RANK",
    "ZONE_TYPE_LABEL_ZH",
    "LandUseClasses",
    "Rule",
    "RuleTable",
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
    deadline_days: int | None = None  # filled from rule_defaults of layers/compliance.yaml
    enabled: bool = True

    @property
    def condition_type(self) -> str:
        return str(self.condition["type"])




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
    receptor_search_m: float | None = None  # ``receptor_search_m`` of layers/compliance.yaml

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
        from gis.catalog import load_yaml  # the one YAML reader

        data = load_yaml(DEFAULT_RULES_PATH)
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
        from gis.departments import legal_basis  # 依据 = national source + the project's own campaign plan

        campaign = section.get("campaign") or {}
        for rid in order:
            keyed[rid][1]["legal_source"] = legal_basis(keyed[rid][1], campaign) or keyed[rid][1].get("legal_source")
        defaults = dict(section.get("rule_defaults") or _bundled("rule_defaults") or {})
        rules = [_parse_rule({**defaults, **keyed[rid][1]}, keyed[rid][0], source) for rid in order]
        linkage = dict(section.get("linkage") or {})
        _validate_linkage(linkage, source)
        ledger = dict(section.get("ledger") or {})
        search = section.get("receptor_search_m")
        if search is None:
            search = _bundled("receptor_search_m")
        return cls(rules, linkage, ledger, classes or LandUseClasses.load(), str(source), float(search))


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
    days = raw.get("deadline_days")
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


def _bundled(key: str) -> Any:
    """Top-level ``key`` of the bundled ``layers/compliance.yaml`` (for a section that leaves it out)."""
    from gis.catalog import load_yaml  # the one YAML reader

    return load_yaml(DEFAULT_RULES_PATH).get(key)


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
