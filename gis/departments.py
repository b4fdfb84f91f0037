"""Departments (部门) as data: canonical names, aliases, the district prefix and legal bases.

``layers/departments.yaml`` holds one table of departments (canonical short name,
aliases, a name per prefix where it differs) and the seed notices' violation kinds with
their lead departments. This module

* resolves any spelling (``城管局``, ``综合执法局``, ``城市管理局``) to one department id;
* writes a department's full name with the prefix of the project's district
  (``区商务委`` in 沙坪坝区, ``县商务委`` in 石柱县; ``区公安分局`` vs ``县公安局``);
* splits joint leads (``生态环境局、商务委`` or a list) into separate departments;
* builds a rule's legal basis (依据) from the rule table's national/municipal source plus
  the project's own campaign plan (``compliance.campaign.plan_title``), never another
  district's plan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gis._errors import CatalogError
from gis.settings import LAYERS_DIR

__all__ = ["DepartmentTable", "district_prefix", "legal_basis", "split_departments", "foreign_campaign_citations"]

_SPLIT = re.compile(r"[、,，;；/]+")


def split_departments(value: Any) -> list[str]:
    """Joint leads as separate names: ``"生态环境局、商务委"`` or ``[…]`` → ``["生态环境局", "商务委"]``."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        out.extend(p.strip() for p in _SPLIT.split(str(item)) if p.strip())
    return out


def district_prefix(name: str, prefix_by_suffix: Mapping[str, str]) -> str | None:
    """The department prefix of a district name: ``石柱土家族自治县`` → ``县``, ``沙坪坝区（样例）`` → ``区``.

    A parenthetical (``（样例）``) is ignored; the longest matching suffix wins.
    """
    base = re.sub(r"[（(].*?[)）]", "", str(name or "")).strip()
    for suffix in sorted(prefix_by_suffix, key=len, reverse=True):
        if base.endswith(suffix):
            return prefix_by_suffix[suffix]
    return None


@dataclass(frozen=True)
class DepartmentTable:
    """The department table of ``layers/departments.yaml``.

    Attributes
    ----------
    departments
        ``{id: {"name", "by_prefix", "aliases", "prefixed"}}``.
    violation_kinds
        ``{kind: {"label_zh", "aliases", "lead", "co", "basis"}}``.
    prefix_by_suffix
        District-name suffix → department prefix.
    path
        The YAML read.
    """

    departments: Mapping[str, Mapping[str, Any]]
    violation_kinds: Mapping[str, Mapping[str, Any]]
    prefix_by_suffix: Mapping[str, str]
    path: str

    @classmethod
    def load(cls, path: str | Path = LAYERS_DIR / "departments.yaml") -> "DepartmentTable":
        """Read and check the table (every alias names one department; kinds name known departments)."""
        from gis.catalog import load_yaml  # the one YAML reader

        path = Path(path)
        data = load_yaml(path)
        deps = data.get("departments")
        if not isinstance(deps, dict) or not deps:
            raise CatalogError(path, "departments", "missing or not a mapping of id -> department")
        table = cls(
            {str(k): dict(v or {}) for k, v in deps.items()},
            {str(k): dict(v or {}) for k, v in (data.get("violation_kinds") or {}).items()},
            dict(data.get("prefix_by_suffix") or {}),
            str(path),
        )
        seen: dict[str, str] = {}
        for did, spec in table.departments.items():
            if not spec.get("name"):
                raise CatalogError(path, f"departments.{did}.name", "required")
            for n in table._spellings(did):
                if seen.setdefault(n, did) != did:
                    raise CatalogError(path, f"departments.{did}.aliases", f"'{n}' also names department '{seen[n]}'")
        for kind, spec in table.violation_kinds.items():
            for role in ("lead", "co"):
                table.check(spec.get(role) or [], source=path, key=f"violation_kinds.{kind}.{role}")
        return table

    def _spellings(self, did: str) -> list[str]:
        spec = self.departments[did]
        names = [spec["name"], *(spec.get("by_prefix") or {}).values(), *(spec.get("aliases") or [])]
        return list(dict.fromkeys(str(n) for n in names))

    def _lookup(self) -> dict[str, str]:
        return {n: did for did in self.departments for n in self._spellings(did)}

    def resolve(self, name: str) -> str | None:
        """Department id of any spelling, with or without a 区/县 prefix (None when unknown)."""
        lookup = self._lookup()
        n = str(name).strip()
        if n in lookup:
            return lookup[n]
        for p in set(self.prefix_by_suffix.values()):
            if n.startswith(p) and n[len(p):] in lookup:
                return lookup[n[len(p):]]
        return None

    def check(self, names: Any, *, source: str | Path, key: str) -> list[str]:
        """Department ids of ``names`` (joint leads split); CatalogError naming the first unknown one."""
        ids = []
        for n in split_departments(names):
            did = self.resolve(n)
            if did is None:
                raise CatalogError(source, key, f"unknown department '{n}' (layers/departments.yaml)")
            ids.append(did)
        return ids

    def full_name(self, name_or_id: str, prefix: str | None) -> str:
        """The department as the district writes it: prefix + its name under that prefix."""
        did = name_or_id if name_or_id in self.departments else self.resolve(name_or_id)
        if did is None:
            raise KeyError(name_or_id)
        spec = self.departments[did]
        base = (spec.get("by_prefix") or {}).get(prefix, spec["name"]) if prefix else spec["name"]
        if spec.get("prefixed", True) is False or not prefix:
            return str(base)
        return f"{prefix}{base}"

    def full_names(self, names: Any, prefix: str | None) -> list[str]:
        """:meth:`full_name` of each department of ``names`` (joint leads separately, duplicates dropped)."""
        return list(dict.fromkeys(self.full_name(n, prefix) for n in split_departments(names)))

    def kind_for(self, text: str) -> str | None:
        """The violation kind whose label or alias ``text`` is (or contains), else None."""
        t = str(text).strip()
        for kind, spec in self.violation_kinds.items():
            names = [kind, spec.get("label_zh", ""), *(spec.get("aliases") or [])]
            if t in names:
                return kind
        for kind, spec in self.violation_kinds.items():
            if any(a and a in t for a in spec.get("aliases") or []):
                return kind
        return None


def legal_basis(rule: Mapping[str, Any], campaign: Mapping[str, Any] | None) -> str:
    """A rule's 依据: its own national/municipal source, plus the project's campaign plan.

    ``rule["legal_source"]`` is the standard or regulation; when the rule sets
    ``cite_campaign: true`` and the project names its campaign plan
    (``compliance.campaign.plan_title``), the plan is appended (``；`` separated).
    Nothing else is ever appended, so a 县 never cites a 区's plan.
    """
    base = str(rule.get("legal_source") or "").strip()
    plan = str((campaign or {}).get("plan_title") or "").strip()
    if rule.get("cite_campaign") and plan and plan not in base:
        return f"{base}；{plan}" if base else plan
    return base


def foreign_campaign_citations(
    rules: Iterable[Mapping[str, Any]], district_name: str, *, known_districts: Sequence[str]
) -> list[str]:
    """Ids of rules whose 依据 cites another district's plan (``known_districts`` names found in it).

    Used by ``gis validate``: a 石柱县 project must not cite 沙坪坝区's 实施方案.
    """
    own = re.sub(r"[（(].*?[)）]", "", str(district_name)).strip()
    bad = []
    for r in rules:
        text = str(r.get("legal_source") or "")
        for d in known_districts:
            if d and d not in own and own not in d and d in text:
                bad.append(str(r.get("id")))
                break
    return bad


def prefix_columns(
    table: Any, district_name: str, columns: Sequence[str] = ("牵头单位", "配合单位"), *, departments: DepartmentTable | None = None
) -> Any:
    """Write the departments of ledger ``columns`` as the district does (区商务委 / 县商务委).

    Each cell is split at ``、``; a known department becomes its full name with the
    district's prefix (:func:`district_prefix`), anything else (``井口街道（属地）``) is
    kept. One lookup per distinct cell. Returns a copy; a district name without a 区/县
    suffix leaves the names as they are.
    """
    deps = departments or DepartmentTable.load()
    prefix = district_prefix(district_name, deps.prefix_by_suffix)
    out = table.copy()
    if prefix is None:
        return out

    def one(cell: Any) -> Any:
        if not isinstance(cell, str) or not cell:
            return cell
        parts = [deps.full_name(p, prefix) if deps.resolve(p) else p for p in split_departments(cell)]
        return "、".join(dict.fromkeys(parts))

    for col in columns:
        if col in out:
            uniq = {v: one(v) for v in out[col].dropna().unique()}
            out[col] = out[col].map(lambda v: uniq.get(v, v))
    return out
