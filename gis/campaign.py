"""The campaign (专项整治行动): calendar, stable 问题编号, the store sync, progress.

A campaign is declared in the project's ``campaign:`` block (defaults in
``layers/campaign.yaml``): name, legal basis, lead office (牵头办公室, e.g. 区商务委),
start and end, phases (摸排 → 集中整治 → 巩固提升) with dates and what each requires,
and the reporting dates of the 汇总表.

Every ``gis run`` syncs its 问题台账 into the campaign store
(:mod:`gis.campaign_store`, ``campaign.gpkg`` in the project folder):

* a problem keeps its 问题编号 across runs — site problems by (site, rule), incident
  clusters by the share of incidents they have in common (else by centre distance);
* new problems get the next number, an issue date (下发日期) and a deadline inside the
  rectification phase (:func:`deadline_for`);
* problems no longer found are marked (``found = 0``), never deleted;
* a closed (已销号) problem whose place gets new incidents after its 完成时间 is
  reopened as 反弹 naming the incidents; closed sites of the site ledger likewise;
* each problem gets a proposed 三个一批 disposition (:mod:`gis.campaign_disposition`).

Progress, overdue lists and status edits for the app are the functions at the end
(:func:`progress`, :func:`overdue`, :func:`apply_edit`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np
import pandas as pd

from gis import settings
from gis._errors import CatalogError, InputError
from gis.campaign_store import BufferedWrites, CampaignStore, open_store
from gis.catalog import Project, deep_merge, load_project, load_yaml
from gis.params import Section, _build

if TYPE_CHECKING:
    from gis.district import District

log = logging.getLogger(__name__)

__all__ = [
    "CampaignParams",
    "Phase",
    "apply_edit",
    "campaign_params",
    "deadline_for",
    "ledger_frame",
    "overdue",
    "progress",
    "state_at",
    "store_path",
    "sync_run",
]


@dataclass(frozen=True)
class Phase(Section):
    """One phase of the campaign (阶段): name, dates (YYYY-MM-DD), what it requires."""

    name: str
    start: str
    end: str
    requires: str = ""

    @property
    def start_date(self) -> dt.date:
        """First day."""
        return dt.date.fromisoformat(self.start)

    @property
    def end_date(self) -> dt.date:
        """Last day."""
        return dt.date.fromisoformat(self.end)


@dataclass(frozen=True)
class CampaignParams(Section):
    """``layers/campaign.yaml`` deep-merged with the project's ``campaign:`` block."""

    name: str
    legal_basis: str
    lead_office: str
    start: str | None
    end: str | None
    phases: tuple[Phase, ...]
    rectify_phase: str
    reporting_dates: tuple[str, ...]
    as_of: str | None
    store: str
    number_format: str
    contacts: str | None
    statuses: tuple[str, ...]
    status_rebound: str
    status_closed: str
    status_rectified: str
    status_in_progress: str
    status_open: str
    run_status_map: dict[str, str]
    close_requires: tuple[str, ...]
    default_deadline_days: int
    rebound_radius_m: float
    rebound_lead: str
    rebound_problem_type: str
    cluster_match_min_share: float
    cluster_match_m: float
    survey_merge_m: float
    survey_site_match_m: float
    progress_step_days: int

    def phase(self, name: str) -> Phase | None:
        """The phase called ``name`` (None when absent)."""
        return next((p for p in self.phases if p.name == name), None)

    def phase_at(self, day: dt.date) -> Phase | None:
        """The phase holding ``day`` (None outside every phase)."""
        return next((p for p in self.phases if p.start_date <= day <= p.end_date), None)

    def today(self) -> dt.date:
        """``as_of`` when pinned, else the calendar date."""
        return dt.date.fromisoformat(self.as_of) if self.as_of else dt.date.today()

    @property
    def closed_like(self) -> tuple[str, str]:
        """Statuses that count as done (已整改, 已销号)."""
        return (self.status_rectified, self.status_closed)


def _iso_dates(value: Any) -> Any:
    """YAML dates (``2025-01-06`` unquoted) as ISO text, recursively."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _iso_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso_dates(v) for v in value]
    return value


def campaign_params(project: Project | str | Path | None = None) -> CampaignParams:
    """The typed campaign parameters of a project (``layers/campaign.yaml`` alone when None).

    Raises
    ------
    CatalogError
        A key is unknown or mistyped, a date is not ``YYYY-MM-DD``, phases are out of
        order or outside the campaign, or ``rectify_phase`` names no phase.
    """
    if project is not None and not isinstance(project, Project):
        project = load_project(project)
    default_file = settings.LAYERS_DIR / "campaign.yaml"
    defaults = _iso_dates(load_yaml(default_file))
    override = _iso_dates((project.raw.get("campaign") if project is not None else None) or {})
    path = project.path if project is not None and override else default_file
    p = _build(CampaignParams, deep_merge(defaults, override), path, "campaign", False)
    _check_calendar(p, path)
    return p


def _date(value: str | None, path: Path, key: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CatalogError(path, key, f"'{value}' is not a date (YYYY-MM-DD)") from None


def _check_calendar(p: CampaignParams, path: Path) -> None:
    """Dates parse, phases are ordered and inside [start, end], the rectify phase exists."""
    start, end = _date(p.start, path, "campaign.start"), _date(p.end, path, "campaign.end")
    if start and end and end < start:
        raise CatalogError(path, "campaign.end", f"ends ({end}) before it starts ({start})")
    prev = None
    for i, ph in enumerate(p.phases):
        a = _date(ph.start, path, f"campaign.phases[{i}].start")
        b = _date(ph.end, path, f"campaign.phases[{i}].end")
        assert a is not None and b is not None
        if b < a:
            raise CatalogError(path, f"campaign.phases[{i}].end", f"phase '{ph.name}' ends before it starts")
        if prev and a <= prev:
            raise CatalogError(path, f"campaign.phases[{i}].start", f"phase '{ph.name}' overlaps the one before")
        if (start and a < start) or (end and b > end):
            raise CatalogError(path, f"campaign.phases[{i}]", f"phase '{ph.name}' lies outside {start}…{end}")
        prev = b
    for i, d in enumerate(p.reporting_dates):
        _date(d, path, f"campaign.reporting_dates[{i}]")
    _date(p.as_of, path, "campaign.as_of")
    if p.phases and p.phase(p.rectify_phase) is None:
        names = ", ".join(ph.name for ph in p.phases)
        raise CatalogError(path, "campaign.rectify_phase", f"'{p.rectify_phase}' is not a phase ({names})")


def deadline_for(issued: dt.date, days: int, p: CampaignParams) -> dt.date:
    """整改时限 of a problem issued on ``issued`` with ``days`` to rectify.

    With the rectification phase :math:`[P_s, P_e]` and issue date :math:`t_i`:

    .. math:: d = \\min\\bigl(\\max(t_i + n,\\; \\max(t_i, P_s)),\\; P_e\\bigr)

    so the deadline lies inside the phase and never before the issue date. A
    problem issued after :math:`P_e` takes the end of the phase holding
    :math:`t_i` (else the campaign end) as :math:`P_e`; with no phase or no end
    left, :math:`d = t_i + n`.
    """
    want = issued + dt.timedelta(days=int(days))
    ph = p.phase(p.rectify_phase)
    if ph is None:
        return want
    if issued <= ph.end_date:
        return min(max(want, issued, ph.start_date), ph.end_date)
    later = p.phase_at(issued)
    end = later.end_date if later else (dt.date.fromisoformat(p.end) if p.end else None)
    if end is None or end < issued:
        return want
    return min(want, end)


def store_path(project: Project, p: CampaignParams) -> Path:
    """The store file, resolved inside the project folder (refused when outside).

    Raises
    ------
    CatalogError
        An absolute path, a ``..`` component or a link leading out of the folder.
    """
    from gis.confine import confined_path, is_inside

    if (Path(project.root) / p.store).is_file():
        return confined_path(project.root, p.store, yaml_path=project.path, key="campaign.store")
    parts = Path(p.store.replace("\\", "/")).parts
    target = Path(project.root).resolve() / p.store
    if Path(p.store).is_absolute() or ".." in parts or not is_inside(target.parent.resolve(), Path(project.root).resolve()):
        raise CatalogError(project.path.name, "campaign.store", f"'{p.store}' must be a file inside the project folder")
    return target


# ---------------------------------------------------------------------------------
# Identity and sync
# ---------------------------------------------------------------------------------


def _days_of(text: Any, default: int) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*日内\s*", str(text or ""))
    return int(m.group(1)) if m else default


def _problem_key(row: Mapping[str, Any]) -> str:
    """Identity of a non-cluster problem: site + rule (else source + name + type)."""
    site, rule = row.get("site_id"), row.get("rule_id")
    if _present(site) and _present(rule):
        return f"site:{site}|rule:{rule}"
    return f"{row.get('source', '')}:{row.get('网点名称', '')}|{row.get('问题类型', '')}"


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v)) and v is not pd.NA and str(v) != ""


def match_clusters(
    new: pd.DataFrame, old: pd.DataFrame, *, min_share: float, max_m: float
) -> dict[int, str]:
    """Match this run's clusters to stored cluster problems: ``{new row position: number}``.

    The overlap of two clusters with incident sets :math:`A`, :math:`B` is
    :math:`|A \\cap B| / \\min(|A|, |B|)`; pairs are taken greedily, largest overlap
    first, while it is at least ``min_share``. Clusters left over match a stored
    cluster of the same 问题类型 whose centre lies within ``max_m`` (nearest first).
    Each stored problem is matched at most once.
    """
    pairs = []
    old_sets = [set(json.loads(m or "[]")) for m in old["members"]]
    for i, mem in enumerate(new["members"]):
        a = set(mem)
        for j, b in enumerate(old_sets):
            if a and b:
                share = len(a & b) / min(len(a), len(b))
                if share >= min_share:
                    pairs.append((share, i, j))
    out: dict[int, str] = {}
    used: set[int] = set()
    for _share, i, j in sorted(pairs, key=lambda t: -t[0]):
        if i not in out and j not in used:
            out[i], _ = str(old["number"].iloc[j]), used.add(j)
    for i in range(len(new)):
        if i in out:
            continue
        d = np.hypot(old["x"].to_numpy(float) - new["x"].iloc[i], old["y"].to_numpy(float) - new["y"].iloc[i])
        same = (old["problem_type"].to_numpy() == new["问题类型"].iloc[i]) & (d <= max_m)
        for j in np.argsort(d):
            if same[j] and j not in used:
                out[i], _ = str(old["number"].iloc[j]), used.add(j)
                break
    return out


@dataclass
class RunInput:
    """What one run hands to :func:`sync_run`.

    Attributes
    ----------
    ledger
        The run's 问题台账 (:func:`gis.ledgers.problem_ledger`), with ``site_id``,
        ``rule_id``, ``cluster_id``, ``source`` and point geometry.
    members
        ``incident_id`` → ``cluster_id`` of the run's clusters (may be empty).
    incidents
        The district's incidents (``incident_id``, ``date``, point geometry).
    sites
        The site ledger (``site_id``, ``status``, ``name``, …, point geometry).
    code
        District code (for the 问题编号 format).
    run_id
        Identifier of the run (history ``source``).
    """

    ledger: pd.DataFrame
    members: pd.DataFrame
    incidents: pd.DataFrame
    sites: pd.DataFrame
    code: str
    run_id: str
    disposition: pd.DataFrame | None = None


def _analysis_values(r: Mapping[str, Any], x: float, y: float) -> dict[str, Any]:
    """Fields a run refreshes on every sync (the departments' fields are kept)."""
    return {
        "site_id": r.get("site_id") if _present(r.get("site_id")) else None,
        "rule_id": r.get("rule_id") if _present(r.get("rule_id")) else None,
        "source": r.get("source"), "verdict": r.get("verdict") if _present(r.get("verdict")) else None,
        "township": r.get("镇街"), "name": r.get("网点名称"), "address": r.get("经营地址"),
        "problem_type": r.get("问题类型"), "description": r.get("问题描述"), "basis": r.get("依据"),
        "lead": r.get("牵头单位"), "co": r.get("配合单位"), "x": x, "y": y,
    }


def _members_by_cluster(members: pd.DataFrame) -> pd.Series:
    """``cluster_id`` → its sorted incident ids (as text)."""
    if not len(members):
        return pd.Series(dtype=object)
    return members.groupby("cluster_id")["incident_id"].agg(lambda s: sorted(map(str, s)))


def _members_json(ids: list[str]) -> str:
    """A cluster's members as stored in the ``members`` field (the key a run's cluster is found by)."""
    return json.dumps(list(ids), ensure_ascii=False)


#: Columns of the run's ledger that :func:`sync_run` reads per row (others are not turned into records).
_SYNC_FIELDS = ("site_id", "rule_id", "source", "verdict", "镇街", "网点名称", "经营地址", "问题类型", "问题描述", "依据",
                "牵头单位", "配合单位", "整改时限", "整改状态", "整改措施", "x", "y", "members", "is_cluster", "key",
                "disposition_proposed", "disposition_note", "licensed")


def _records(df: pd.DataFrame, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Rows of ``df`` as dicts of the ``fields`` it has (what ``to_dict("records")`` gives, column by column)."""
    cols = [f for f in fields if f in df.columns]
    arrays = [df[f].to_numpy(dtype=object) for f in cols]
    return (dict(zip(cols, vals)) for vals in zip(*arrays))


def _problem_keys(led: pd.DataFrame) -> list[Any]:
    """:func:`_problem_key` of every non-cluster row (``None`` for clusters), site + rule rows vectorised."""
    n = len(led)
    site = led["site_id"] if "site_id" in led else pd.Series(None, index=led.index, dtype=object)
    rule = led["rule_id"] if "rule_id" in led else pd.Series(None, index=led.index, dtype=object)
    both = _present_mask(site) & _present_mask(rule)
    keys = np.full(n, None, dtype=object)
    if both.any():
        keys[both] = ("site:" + site[both].astype(str) + "|rule:" + rule[both].astype(str)).to_numpy(dtype=object)
    rest = np.flatnonzero(~both)
    for i, r in zip(rest, _records(led.iloc[rest], ("site_id", "rule_id", "source", "网点名称", "问题类型"))):
        keys[i] = _problem_key(r)
    keys[led["is_cluster"].to_numpy(dtype=bool)] = None
    return keys.tolist()


def _present_mask(s: pd.Series) -> np.ndarray:
    """Vectorised :func:`_present` (not missing, not empty text)."""
    return (s.notna() & (s.astype(str) != "")).to_numpy(dtype=bool)


def _run_frame(inp: RunInput) -> pd.DataFrame:
    """The run's ledger with x, y, identity key and cluster members."""
    led = pd.DataFrame(inp.ledger).copy()
    geom = getattr(inp.ledger, "geometry", None)
    if geom is not None:
        import shapely

        g = np.asarray(geom, dtype=object)
        led["x"], led["y"] = shapely.get_x(g), shapely.get_y(g)  # NaN for missing or empty points
    else:
        led["x"] = led["y"] = np.nan
    cid = led["cluster_id"] if "cluster_id" in led else pd.Series(None, index=led.index, dtype=object)
    by_cluster = _members_by_cluster(inp.members)
    cid = cid.to_numpy(dtype=object)  # iterating an Arrow-backed Series is ~20× slower than an object array
    present = _present_mask(pd.Series(cid, dtype=object))
    led["members"] = [list(by_cluster.get(c, [])) if ok else [] for c, ok in zip(cid.tolist(), present.tolist())]
    led["is_cluster"] = present
    led["key"] = _problem_keys(led)
    if inp.disposition is not None:
        led = led.join(inp.disposition[["disposition_proposed", "disposition_note", "licensed"]])
    return led


#: New problems turned into the store's rows and sent at a time by :func:`sync_run` (bounds the Python values alive).
SYNC_BATCH_ROWS = 50_000


def sync_run(store: CampaignStore, inp: RunInput, p: CampaignParams) -> dict[str, int]:
    """Bring one run's problems into the store, in one transaction.

    Returns counts: ``found``, ``new``, ``gone`` (no longer found), ``reopened`` (反弹).
    """
    led = _run_frame(inp)
    old = store.problems()
    today = p.today()
    src = f"run:{inp.run_id}"
    with store.transaction() as c:
        numbers = _match_all(led, old, p)
        was_found = dict(zip(old["number"], old["found"])) if len(old) else {}
        counts = {"found": len(led), "new": 0, "gone": 0, "reopened": 0}
        buffered = BufferedWrites(c)  # the loop's writes, sent with executemany before anything reads them
        found_again = np.array(sorted(numbers), dtype=np.int64)
        for i, r in zip(found_again, _records(led.iloc[found_again], _SYNC_FIELDS)):
            _refresh(buffered, c, numbers[int(i)], _run_values(r, inp.run_id), was_found, src)
        new_rows = np.setdiff1d(np.arange(len(led)), found_again)
        for start in range(0, len(new_rows), SYNC_BATCH_ROWS):  # sent batch by batch: a 400,000-problem first
            part = new_rows[start:start + SYNC_BATCH_ROWS]      # run's rows as Python values were gigabytes
            counts["new"] += _insert_all_new(buffered, led.iloc[part], inp, p, today, src)
            buffered.flush(c)
        buffered.flush(c)
        counts["gone"] = _mark_gone(store, c, old, set(numbers.values()), inp.run_id, src)
        counts["reopened"] = _rebounds(store, c, inp, p, today, src)
        c.execute("INSERT INTO runs (run_id, at, as_of, found, new, gone, reopened) VALUES (?,?,?,?,?,?,?)",
                  (inp.run_id, dt.datetime.now().isoformat(timespec="seconds"), today.isoformat(),
                   counts["found"], counts["new"], counts["gone"], counts["reopened"]))
    return counts


def _match_all(led: pd.DataFrame, old: pd.DataFrame, p: CampaignParams) -> dict[int, str]:
    """Row position → stored number, for site problems (by key) and clusters (by overlap)."""
    out: dict[int, str] = {}
    by_key = dict(zip(old["key"], old["number"])) if len(old) else {}
    for i, (k, is_c) in enumerate(zip(led["key"].to_numpy(dtype=object).tolist(), led["is_cluster"].tolist())):
        if not is_c and k in by_key:
            out[i] = by_key[k]
    pos = np.flatnonzero(led["is_cluster"].to_numpy(bool))
    stored = old[old["kind"] == "cluster"].reset_index(drop=True) if len(old) else old
    if len(pos) and len(stored):
        m = match_clusters(led.iloc[pos].reset_index(drop=True), stored,
                           min_share=p.cluster_match_min_share, max_m=p.cluster_match_m)
        out.update({int(pos[i]): n for i, n in m.items()})
    return out


def _run_values(r: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """What a run writes of one found problem: :func:`_analysis_values`, members, found, disposition."""
    vals = _analysis_values(r, r["x"], r["y"])
    vals.update(members=_members_json(r["members"]) if r["is_cluster"] else None, found=1, last_run=run_id)
    for k in ("disposition_proposed", "disposition_note", "licensed"):
        if k in r and _present(r[k]):
            vals[k] = str(r[k])
    return vals


#: Ledger column → problem field of the values a new problem takes from its row (:func:`_analysis_values`).
_NEW_TEXT = {"source": "source", "镇街": "township", "网点名称": "name", "经营地址": "address",
             "问题类型": "problem_type", "问题描述": "description", "依据": "basis", "牵头单位": "lead",
             "配合单位": "co", "整改措施": "measure"}


def _insert_all_new(buffered: BufferedWrites, led: pd.DataFrame, inp: RunInput, p: CampaignParams,
                    today: dt.date, src: str) -> int:
    """:func:`_insert_new` for every row of ``led`` at once, column by column.

    The same problems and history entries as calling :func:`_insert_new` row by row
    (numbers in row order, ``整改时限`` and ``整改状态`` mapped once per distinct text,
    the deadline computed once per distinct number of days), without a Python dict
    per problem — the sync of a 400,000-problem first run.
    """
    n = len(led)
    if not n:
        return 0
    seq0 = buffered.next_seq(None)
    buffered.seq = seq0 + n
    numbers = [p.number_format.format(code=inp.code, seq=k, year=today.year) for k in range(seq0, seq0 + n)]
    is_cluster = led["is_cluster"].to_numpy(dtype=bool)
    cols: dict[str, list[Any]] = {
        "site_id": _sql_column(led.get("site_id"), n, present=True),
        "rule_id": _sql_column(led.get("rule_id"), n, present=True),
        "verdict": _sql_column(led.get("verdict"), n, present=True),
        **{field: _sql_column(led.get(col), n) for col, field in _NEW_TEXT.items()},
        "x": _sql_column(led["x"], n), "y": _sql_column(led["y"], n),
        "members": [_members_json(m) if c else None for m, c in zip(led["members"], is_cluster)],
        "found": [1] * n, "last_run": [inp.run_id] * n,
    }
    for k in ("disposition_proposed", "disposition_note", "licensed"):
        if k in led:
            cols[k] = _sql_column(led[k].astype("string").where(_present_mask(led[k])), n)
    key = _sql_column(led["key"], n, present=True)
    cols["key"] = [k if k is not None else f"cluster:{no}" for k, no in zip(key, numbers)]
    cols["kind"] = np.where(is_cluster, "cluster", "site").tolist()
    cols.update(_new_schedule(led, p, today, n), first_run=[inp.run_id] * n)
    buffered.insert_many(list(cols), zip(numbers, *cols.values()))
    buffered.log_many(numbers, cols["status"], who="gis run", source=src, field="整改状态", evidence="首次发现",
                      effective=today.isoformat())
    return n


def _new_schedule(led: pd.DataFrame, p: CampaignParams, today: dt.date, n: int) -> dict[str, list[Any]]:
    """``issued``, ``deadline`` and ``status`` of new problems (per distinct 整改时限 / 整改状态 text)."""
    limit = led["整改时限"] if "整改时限" in led else pd.Series(None, index=led.index, dtype=object)
    state = led["整改状态"] if "整改状态" in led else pd.Series(None, index=led.index, dtype=object)
    days = limit.astype(object).map({v: _days_of(v, p.default_deadline_days) for v in pd.unique(limit.astype(object))})
    due = {d: deadline_for(today, int(d), p).isoformat() for d in pd.unique(days)}
    texts = state.astype(object).map(str)
    status = texts.map({t: p.run_status_map.get(t, p.status_open) for t in pd.unique(texts)})
    return {"issued": [today.isoformat()] * n, "deadline": days.map(due).tolist(), "status": status.tolist()}


def _sql_column(s: pd.Series | None, n: int, *, present: bool = False) -> list[Any]:
    """A column as the store's values (:func:`gis.campaign_store._sql` of each cell; None where missing).

    ``present``: empty text counts as missing too (:func:`_present`).
    """
    if s is None:
        return [None] * n
    if pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(dtype=float)
        return np.where(np.isnan(v), None, v.astype(object)).tolist()
    kind = pd.api.types.infer_dtype(s, skipna=True)
    if kind not in ("string", "empty"):
        from gis.campaign_store import _sql

        vals = [_sql(v) for v in s.to_numpy(dtype=object)]
        return [None if present and v is not None and str(v) == "" else v for v in vals]
    keep = _present_mask(s) if present else s.notna().to_numpy(dtype=bool)
    return np.where(keep, s.to_numpy(dtype=object), None).tolist()


def _refresh(store: CampaignStore | BufferedWrites, c: Any, number: str, vals: dict[str, Any],
             was_found: Mapping[str, Any], src: str) -> None:
    """Update a stored problem found again (logged when the previous run had not found it)."""
    if not int(was_found.get(number) or 0):
        store.log(c, number, who="gis run", source=src, field="found", old=0, new=1, evidence="再次发现")
    store.update_problem(c, number, vals)


def _insert_new(
    store: CampaignStore | BufferedWrites, c: Any, r: Mapping[str, Any], vals: dict[str, Any], inp: RunInput,
    p: CampaignParams, today: dt.date, src: str,
) -> str:
    seq = store.next_seq(c)
    number = p.number_format.format(code=inp.code, seq=seq, year=today.year)
    days = _days_of(r.get("整改时限"), p.default_deadline_days)
    status = p.run_status_map.get(str(r.get("整改状态")), p.status_open)
    kind = vals.get("kind") or ("cluster" if r["is_cluster"] else "site")
    vals = dict(vals, key=r["key"] if _present(r["key"]) else f"cluster:{number}", kind=kind,
                measure=r.get("整改措施"), issued=today.isoformat(),
                deadline=deadline_for(today, days, p).isoformat(), status=status, first_run=inp.run_id)
    store.insert_problem(c, number, vals)
    store.log(c, number, who="gis run", source=src, field="整改状态", old=None, new=status,
              evidence="首次发现", effective=today.isoformat())
    return number


def _mark_gone(store: CampaignStore, c: Any, old: pd.DataFrame, seen: set[str], run_id: str, src: str) -> int:
    n = 0
    for number, found, kind in zip(old.get("number", []), old.get("found", []), old.get("kind", [])):
        if number in seen or not int(found or 0) or kind == "rebound_site":
            continue
        store.update_problem(c, number, {"found": 0})
        store.log(c, number, who="gis run", source=src, field="found", old=1, new=0, evidence="本次运行未再发现")
        n += 1
    return n


def _incidents_xy(inc: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not len(inc):
        return np.empty((0, 2)), np.array([], dtype="datetime64[ns]"), np.array([], dtype=object)
    xy = np.column_stack([inc.geometry.x.to_numpy(), inc.geometry.y.to_numpy()])
    return xy, pd.to_datetime(inc["date"]).to_numpy(), inc["incident_id"].astype(str).to_numpy()


def _closed_site_rows(s: pd.DataFrame, today: dt.date) -> list[tuple[Any, ...]]:
    """``watch`` rows of the closed sites of a site ledger (site_id, since, x, y, name, township, address)."""
    if not len(s) or "status" not in s:
        return []
    closed = s[s["status"].astype(str) == "closed"]
    n = len(closed)

    def text(col: str) -> list[str]:
        return closed[col].astype("object").where(closed[col].notna(), "").astype(str).tolist() if col in closed else [""] * n

    return list(zip(text("site_id"), [today.isoformat()] * n, closed.geometry.x.astype(float).tolist(),
                    closed.geometry.y.astype(float).tolist(), text("name"), text("township"), text("address")))


def _with_incident_near(watched: list[tuple[Any, ...]], xy: np.ndarray, radius: float) -> list[tuple[Any, ...]]:
    """The watched sites (rows with x, y at positions 2, 3) with any incident within ``radius``
    (a k-d tree count, a hair wider than the exact test of :func:`_near_after` that follows)."""
    if not watched or not len(xy):
        return []
    from scipy.spatial import cKDTree

    pts = np.array([(np.nan if r[2] is None else r[2], np.nan if r[3] is None else r[3]) for r in watched], dtype=float)
    ok = np.isfinite(pts).all(axis=1)
    near = np.zeros(len(watched), dtype=bool)
    near[ok] = cKDTree(xy).query_ball_point(pts[ok], radius * (1 + 1e-9) + 1e-6, return_length=True) > 0
    return [r for r, hit in zip(watched, near) if hit]


def _near_after(xy: np.ndarray, dates: np.ndarray, ids: np.ndarray, x: float, y: float,
                after: dt.date, radius: float) -> tuple[list[str], str | None]:
    """Incidents within ``radius`` of (x, y) dated after ``after``, and the first one's date."""
    if not len(xy) or not np.isfinite(x):
        return [], None
    d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
    hit = (d <= radius) & (dates > np.datetime64(after.isoformat()))
    if not hit.any():
        return [], None
    return sorted(ids[hit].tolist()), str(pd.Timestamp(dates[hit].min()).date())


def _rebounds(store: CampaignStore, c: Any, inp: RunInput, p: CampaignParams, today: dt.date, src: str) -> int:
    """Reopen closed problems with new incidents after their 完成时间; watch closed sites."""
    xy, dates, ids = _incidents_xy(inp.incidents)
    rows = c.execute("SELECT number, x, y, done_date, status FROM problems WHERE status = ?",
                     (p.status_closed,)).fetchall()
    n = 0
    for number, x, y, done, status in rows:
        if not done:
            continue
        hits, first = _near_after(xy, dates, ids, float(x) if x is not None else np.nan,
                                  float(y) if y is not None else np.nan, dt.date.fromisoformat(done),
                                  p.rebound_radius_m)
        if hits:
            store.update_problem(c, number, {"status": p.status_rebound, "rebound_incidents": "、".join(hits)})
            store.log(c, number, who="gis run", source=src, field="整改状态", old=status, new=p.status_rebound,
                      evidence=f"销号后新发现线索：{'、'.join(hits)}", effective=first)
            n += 1
    return n + _watch_sites(store, c, inp, p, today, src, (xy, dates, ids))


def _watch_sites(store: CampaignStore, c: Any, inp: RunInput, p: CampaignParams, today: dt.date, src: str,
                 inc: tuple[np.ndarray, np.ndarray, np.ndarray]) -> int:
    """Closed sites of the site ledger: watched from the first run that saw them closed."""
    c.executemany("INSERT OR IGNORE INTO watch VALUES (?,?,?,?,?,?,?)", _closed_site_rows(inp.sites, today))
    watched = c.execute("SELECT * FROM watch").fetchall()
    n = 0
    for site_id, since, x, y, name, town, addr in _with_incident_near(watched, inc[0], p.rebound_radius_m):
        hits, first = _near_after(*inc, x, y, dt.date.fromisoformat(since), p.rebound_radius_m)
        key = f"site:{site_id}|rule:rebound"
        row = c.execute("SELECT number, status, rebound_incidents FROM problems WHERE key = ?", (key,)).fetchone()
        if not hits or (row and row[1] not in p.closed_like and row[2] == "、".join(hits)):
            continue
        r = {"key": key, "is_cluster": False, "整改时限": None, "整改状态": "反弹"}
        vals = {"site_id": site_id, "rule_id": "rebound", "source": "campaign", "township": town, "name": name,
                "address": addr, "problem_type": p.rebound_problem_type, "lead": p.rebound_lead,
                "co": f"{town}（属地）", "x": x, "y": y, "found": 1, "rebound_incidents": "、".join(hits),
                "description": f"已关停网点（{since}起关停）附近{p.rebound_radius_m:.0f}米内新发现线索：{'、'.join(hits)}",
                "disposition_proposed": "关停取缔", "kind": "rebound_site"}
        if row is None:
            _insert_new(store, c, r, vals, inp, p, today, src)
        else:
            store.update_problem(c, row[0], {"status": p.status_rebound, "rebound_incidents": vals["rebound_incidents"]})
            store.log(c, row[0], who="gis run", source=src, field="整改状态", old=row[1], new=p.status_rebound,
                      evidence=vals["description"], effective=first)
        n += 1
    return n


# ---------------------------------------------------------------------------------
# Views: the ledger, state at a date, progress, overdue (the app and the reports)
# ---------------------------------------------------------------------------------

#: The store's fields as the 问题台账's headers.
LEDGER_HEADERS: dict[str, str] = {
    "number": "问题编号", "township": "镇街", "name": "网点名称", "address": "经营地址",
    "problem_type": "问题类型", "description": "问题描述", "basis": "依据", "lead": "牵头单位",
    "co": "配合单位", "measure": "整改措施", "deadline": "整改时限", "status": "整改状态",
    "progress": "整改情况", "done_date": "完成时间", "responsible": "责任人", "disposition": "处置方式",
    "disposition_proposed": "建议处置", "disposition_note": "处置说明", "issued": "下发日期",
}


def ledger_frame(problems: pd.DataFrame) -> pd.DataFrame:
    """The store's problems as a 问题台账 (Chinese headers, 序号 first, 备注 for gone ones).

    处置方式 is the department's choice when set, else the proposal (建议处置).
    """
    df = problems.copy()
    df["disposition"] = df["disposition"].where(df["disposition"].notna(), df["disposition_proposed"])
    out = df[list(LEDGER_HEADERS)].rename(columns=LEDGER_HEADERS)
    out.insert(0, "序号", np.arange(1, len(out) + 1))
    out["备注"] = np.where(df["found"].fillna(1).astype(int) == 0, "本次运行未再发现", "")
    rb = df["rebound_incidents"].fillna("")
    out["备注"] = np.where(rb != "", out["备注"] + "反弹线索：" + rb, out["备注"])
    return out


def state_at(problems: pd.DataFrame, history: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Problems issued by ``day`` with their 整改状态 as of ``day`` (from the history).

    The status at :math:`t` is the ``new`` value of the last status entry whose
    ``effective`` date is :math:`\\le t` (entries ordered by effective date, then log order).
    """
    d = day.isoformat()
    h = history[(history["field"] == "整改状态") & (history["effective"] <= d)]
    h = h.sort_values(["effective", "fid"], kind="stable")
    last = h.groupby("number")["new"].last()
    out = problems[problems["issued"].fillna("9999") <= d].copy()
    out["status"] = out["number"].map(last).fillna(out["status"])
    return out


def _leads(s: pd.Series) -> pd.Series:
    return s.fillna("").astype(str).str.split("、")


def progress(
    problems: pd.DataFrame, history: pd.DataFrame, p: CampaignParams, *, by: str,
    start: dt.date | None = None, end: dt.date | None = None,
) -> pd.DataFrame:
    """Counts per 镇街 (``by="township"``) or 牵头单位 (``by="department"``) as of ``end``.

    Columns: 问题总数, 本期新增 (issued in [start, end]), 未整改, 整改中, 已整改, 已销号,
    逾期 (not done and 整改时限 < end), 反弹, then one column per disposition
    (关停取缔 / 整治规范 / 入园发展), and a 合计 row counting each problem once (a
    problem with two lead departments is in both departments' rows).
    """
    end = end or p.today()
    st = state_at(problems, history, end)
    disp = st["disposition"].where(st["disposition"].notna(), st["disposition_proposed"])
    flags = pd.DataFrame({
        "问题总数": 1,
        "本期新增": (st["issued"] >= (start or dt.date.min).isoformat()).astype(int),
        **{s: (st["status"] == s).astype(int) for s in (p.status_open, p.status_in_progress, p.status_rectified,
                                                          p.status_closed)},
        "逾期": (~st["status"].isin(p.closed_like) & (st["deadline"] < end.isoformat())).astype(int),
        p.status_rebound: (st["status"] == p.status_rebound).astype(int),
        **{k: (disp == k).astype(int) for k in ("关停取缔", "整治规范", "入园发展")},
    }, index=st.index)
    label = "镇街" if by == "township" else "单位"
    keys = st["township"].fillna("").astype(str) if by == "township" else _leads(st["lead"])
    flags[label] = keys.to_numpy()
    table = flags.explode(label) if by != "township" else flags
    out = table.groupby(label, sort=True).sum().reset_index()
    total = flags.drop(columns=[label]).sum()
    out = pd.concat([out, pd.DataFrame([{label: "合计", **total.to_dict()}])], ignore_index=True)
    out.insert(0, "序号", list(range(1, len(out))) + [None])
    out["序号"] = out["序号"].astype("Int64")
    return out


def overdue(problems: pd.DataFrame, p: CampaignParams, *, day: dt.date | None = None) -> pd.DataFrame:
    """Problems not rectified whose 整改时限 has passed on ``day``, most overdue first (逾期天数)."""
    day = day or p.today()
    late = problems[~problems["status"].isin(p.closed_like) & (problems["deadline"] < day.isoformat())].copy()
    late["days"] = (pd.Timestamp(day) - pd.to_datetime(late["deadline"])).dt.days
    out = ledger_frame(late.drop(columns=["days"]))
    out["逾期天数"] = late["days"].to_numpy()
    cols = ["问题编号", "镇街", "网点名称", "问题类型", "牵头单位", "整改时限", "整改状态", "逾期天数"]
    return out[cols].sort_values("逾期天数", ascending=False, kind="stable").reset_index(drop=True)


def apply_edit(
    project_dir: str | Path, number: str, *, status: str, evidence: str, who: str,
    done_date: str | None = None,
) -> dict[str, Any]:
    """Change one problem's 整改状态 from the app, with evidence, written to the history.

    Raises
    ------
    InputError
        Unknown 问题编号, a status outside ``statuses``, no evidence, or 销号 without
        完成时间 (整改情况 is the evidence).
    """
    project = load_project(project_dir)
    p = campaign_params(project)
    where = "app"
    if status not in p.statuses:
        raise InputError(where, f"整改状态 '{status}' is not one of {'/'.join(p.statuses)}", field="整改状态")
    if not str(evidence or "").strip():
        raise InputError(where, "a status change needs evidence text (整改情况)", field="整改情况")
    if status == p.status_closed and not done_date:
        raise InputError(where, "销号 needs 完成时间", field="完成时间")
    with open_store(store_path(project, p)) as store, store.transaction() as c:
        row = c.execute("SELECT status FROM problems WHERE number = ?", (number,)).fetchone()
        if row is None:
            raise InputError(where, f"unknown 问题编号 '{number}'", field="问题编号")
        vals: dict[str, Any] = {"status": status, "progress": evidence}
        if done_date:
            vals["done_date"] = dt.date.fromisoformat(done_date).isoformat()
        store.update_problem(c, number, vals)
        store.log(c, number, who=who, source="app", field="整改状态", old=row[0], new=status, evidence=evidence,
                  effective=vals.get("done_date") or p.today().isoformat())
    return {"number": number, "old": row[0], "new": status}


def load_state(project_dir: str | Path) -> tuple[CampaignParams, pd.DataFrame, pd.DataFrame]:
    """(params, problems, history) of a project's store (the app's read)."""
    project = load_project(project_dir)
    p = campaign_params(project)
    with open_store(store_path(project, p)) as store:
        return p, store.problems(), store.history()


def replace_params(p: CampaignParams, **changes: Any) -> CampaignParams:
    """A copy of ``p`` with fields changed (e.g. ``as_of`` in tests)."""
    return dataclasses.replace(p, **changes)


def dates_between(start: dt.date, end: dt.date, step_days: int) -> Sequence[dt.date]:
    """``start``, ``start + step``, … up to and including ``end``."""
    out, d = [], start
    while d < end:
        out.append(d)
        d += dt.timedelta(days=step_days)
    return [*out, end]


# ---------------------------------------------------------------------------------
# The run's forms, rebuilt from the store
# ---------------------------------------------------------------------------------


def read_contacts(project: Project, p: CampaignParams) -> pd.DataFrame:
    """The 联络员信息表 file (姓名, 单位, 职务, 联系电话, 电子邮箱); empty when none is declared.

    Raises
    ------
    InputError
        The file lacks one of the five columns.
    """
    from gis.confine import confined_path

    cols = ["姓名", "单位", "职务", "联系电话", "电子邮箱"]
    if not p.contacts:
        return pd.DataFrame(columns=cols)
    path = confined_path(project.root, p.contacts, yaml_path=project.path, key="campaign.contacts")
    df = pd.read_excel(path, dtype=str) if path.suffix.lower() in (".xlsx", ".xls") else \
        pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(path, f"contacts file lacks column {missing[0]}", field=missing[0])
    return df[cols].fillna("")


def filing_of(contacts: pd.DataFrame, unit: str) -> dict[str, str]:
    """填报单位 / 填报人 / 联系电话 of ``unit`` (its first 联络员)."""
    row = contacts[contacts["单位"] == unit].head(1)
    if not len(row):
        return {"填报单位": unit}
    return {"填报单位": unit, "填报人": str(row["姓名"].iloc[0]), "联系电话": str(row["联系电话"].iloc[0])}


def members_of(problems: pd.DataFrame) -> dict[str, set[str]]:
    """``{问题编号: incident ids}`` of the cluster problems."""
    m = problems.dropna(subset=["members"])
    return {str(n): set(json.loads(v)) for n, v in zip(m["number"], m["members"])}


#: Analysis fields carried beside the 问题台账 columns (in ``ledgers.gpkg``, not in the workbook):
#: the run's ``cluster_id`` links a cluster problem to the map and the app's filters.
ANALYSIS_COLUMNS: tuple[str, ...] = ("site_id", "rule_id", "source", "kind", "verdict", "cluster_id")


def _run_cluster_ids(problems: pd.DataFrame, inp: RunInput) -> pd.Series:
    """The run's ``cluster_id`` of each stored cluster problem found by this run (else None).

    A cluster problem stores its members as JSON (:func:`sync_run`); the run's cluster
    with exactly those members is the same cluster.
    """
    if not len(problems) or not len(inp.members):
        return pd.Series(None, index=problems.index, dtype=object)
    cid_of = {_members_json(m): c for c, m in _members_by_cluster(inp.members).items()}
    this_run = problems["last_run"].astype("string") == inp.run_id
    cids = problems["members"].astype(object).map(cid_of).astype(object)  # dict lookup; no match or no members: NaN
    keep = this_run.fillna(False).astype(bool) & cids.notna()
    return cids.where(keep, None).astype(object)


def ledger_geo(problems: pd.DataFrame, crs: Any) -> Any:
    """:func:`ledger_frame` as a GeoDataFrame of points, with the :data:`ANALYSIS_COLUMNS`."""
    import geopandas as gpd

    led = ledger_frame(problems)
    for c in ANALYSIS_COLUMNS:
        led[c] = problems[c].to_numpy() if c in problems else None
    return gpd.GeoDataFrame(led, geometry=gpd.points_from_xy(problems["x"], problems["y"]), crs=crs)


def run_summary(problems: pd.DataFrame, history: pd.DataFrame, p: CampaignParams, district: District) -> pd.DataFrame:
    """The run's 汇总表 per 镇街: 检查网点数, one column per 问题类型, then :func:`progress`.

    Every township is listed (zeros where nothing was found); the 问题类型 columns
    count the problems issued by today, so they sum to 问题总数.
    """
    day = p.today()
    table = progress(problems, history, p, by="township", start=day.replace(day=1), end=day)
    body, total = table.iloc[:-1].set_index("镇街"), table.iloc[-1]
    sites = district.sites
    town = sites["township"].astype("object").where(sites["township"].notna(), sites.get("township_ledger"))
    checked = town.fillna("").astype(str).value_counts()
    names = list(district.townships["township"].astype(str)) if district.townships is not None else []
    names += [n for n in [*body.index, *checked.index] if n not in names]
    body = body.drop(columns=["序号"]).reindex(names, fill_value=0)
    issued = problems[problems["issued"].fillna("9999") <= day.isoformat()]
    by_type = pd.crosstab(issued["township"].fillna("").astype(str), issued["problem_type"].fillna("").astype(str))
    by_type = by_type.reindex(names, fill_value=0).astype(int)
    body = pd.concat([checked.reindex(names, fill_value=0).astype(int).rename("检查网点数"), by_type, body], axis=1)
    out = body.reset_index(names="镇街")
    tot = {"镇街": "合计", "检查网点数": int(out["检查网点数"].sum()),
           **{k: int(by_type[k].sum()) for k in by_type.columns},
           **{k: int(v) for k, v in total.drop(["序号", "镇街"]).items()}}
    out = pd.concat([out, pd.DataFrame([tot])], ignore_index=True)
    out.insert(0, "序号", pd.array(list(range(1, len(out))) + [None], dtype="Int64"))
    return out


@contextlib.contextmanager
def _writable_store(path: Path) -> Iterator[CampaignStore]:
    """The store at ``path``; a temporary copy (with a warning) when its folder is read-only.

    A read-only project (e.g. the sample inside an installed wheel) still gets its
    forms numbered and tracked for this run, but nothing is kept.
    """
    if os.access(path.parent, os.W_OK):
        with open_store(path) as store:
            yield store
        return
    log.warning("campaign store: %s is read-only; statuses of this run are not kept", path.parent.name)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        if path.is_file():
            shutil.copyfile(path, copy)
        with open_store(copy) as store:
            yield store


def sync_from_run(district: District, ledger_set: Any, hotspots_result: Any = None,
                  settings_: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, int]]:
    """Sync a run's 问题台账 into the store and rebuild the three forms from the store.

    Returns the campaign :class:`gis.ledgers.LedgerSet` (问题编号, the store's 整改状态,
    处置方式, …) and the sync counts (:func:`sync_run`).
    """
    import uuid

    from gis import ledgers
    from gis.campaign_disposition import propose

    project = district.project
    p = campaign_params(project)
    disp = propose(ledger_set.ledger, district.sites, district=district)
    members = getattr(getattr(hotspots_result, "clusters", None), "members", None)
    inp = RunInput(
        ledger=ledger_set.ledger, members=members if members is not None else pd.DataFrame(columns=["incident_id", "cluster_id"]),
        incidents=district.incidents if district.incidents is not None else pd.DataFrame(),
        sites=district.sites, code=str(project.raw.get("code") or ""),
        run_id=f"{p.today().isoformat()}-{uuid.uuid4().hex[:8]}", disposition=disp,
    )
    name, towns = ledger_set.district_name, ledger_set.townships
    with _writable_store(store_path(project, p)) as store:
        counts = sync_run(store, inp, p)
        # the run's ledger and proposals are in the store now: dropped before the store is read back
        # (the caller hands the run's ledger set over, see gis.steps.run_ledgers: these were its last holders)
        inp = dataclasses.replace(inp, ledger=inp.ledger.iloc[:0], disposition=None)
        del ledger_set, disp
        problems, history = store.problems(), store.history()
    problems["cluster_id"] = _run_cluster_ids(problems, inp)
    led = ledger_geo(problems, district.crs)
    summary, members = run_summary(problems, history, p, district), members_of(problems)
    del problems, history
    survey = ledgers.survey_form(
        district.sites, district.incidents, ledger=led, settings=settings_, merge_m=p.survey_merge_m,
        site_match_m=p.survey_site_match_m, members=members,
    )
    contacts = read_contacts(project, p)
    out = ledgers.LedgerSet(
        led, summary, survey, name, towns,
        filing=filing_of(contacts, p.lead_office), filed=p.today().isoformat(),
        columns=tuple(c for c in led.columns if c not in ANALYSIS_COLUMNS + ("geometry",)),
    )
    return out, counts


# ---------------------------------------------------------------------------------
# The app's Inspector panel (app.py `_campaign_panel` shows these)
# ---------------------------------------------------------------------------------


def inspector_tables(project_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Progress by 镇街 and by department, the overdue list and the ledger, as of the campaign's today.

    Empty tables when the project has no store yet (no ``gis run`` so far).
    """
    project = load_project(project_dir)
    p = campaign_params(project)
    path = store_path(project, p)
    if not path.is_file():
        empty = pd.DataFrame()
        return {"by_township": empty, "by_department": empty, "overdue": empty, "ledger": empty}
    with open_store(path) as store:
        problems, history = store.problems(), store.history()
    return {
        "by_township": progress(problems, history, p, by="township"),
        "by_department": progress(problems, history, p, by="department"),
        "overdue": overdue(problems, p),
        "ledger": ledger_frame(problems),
    }


def authorised_edit(
    project_dir: str | Path, number: str, *, status: str, evidence: str, name: str, unit: str,
    done_date: str | None = None,
) -> dict[str, Any]:
    """:func:`apply_edit` for a named 联络员 of the problem's lead department (or the lead office).

    Authorised = (姓名, 单位) is a row of the contacts file, and 单位 is one of the
    problem's 牵头单位 or the campaign's lead office.

    Raises
    ------
    InputError
        Not authorised, or any reason :func:`apply_edit` refuses the edit.
    """
    project = load_project(project_dir)
    p = campaign_params(project)
    contacts = read_contacts(project, p)
    listed = ((contacts["姓名"] == name) & (contacts["单位"] == unit)).any()
    _p, problems, _h = load_state(project_dir)
    lead = problems.loc[problems["number"] == number, "lead"]
    leads = str(lead.iloc[0]).split("、") if len(lead) else []
    if not listed or (unit not in leads and unit != p.lead_office):
        raise InputError("app", f"{name}（{unit}）is not a listed 联络员 of the problem's lead department",
                         field="联络员")
    return apply_edit(project_dir, number, status=status, evidence=evidence, who=f"{unit} {name}",
                      done_date=done_date)


def is_campaign_file(relative: str | Path) -> bool:
    """Whether a path (relative to the project folder) is the campaign's own state, not an input.

    The store (``campaign*.gpkg`` and SQLite's ``-journal`` / ``-wal`` / ``-shm`` files)
    and ``campaign_rejects/``: caches keyed on the project's input files skip them.
    """
    parts = Path(relative).parts
    if not parts:
        return False
    if parts[0] == "campaign_rejects":
        return True
    name = parts[-1]
    return len(parts) == 1 and name.startswith("campaign") and re.fullmatch(r"campaign[^/]*\.gpkg(-journal|-wal|-shm)?",
                                                                             name) is not None
