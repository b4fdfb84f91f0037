"""The campaign store (整治台账库): ``campaign.gpkg`` in the project folder.

A GeoPackage is an SQLite database; the store writes it with :mod:`sqlite3` as a
GeoPackage of *attribute* tables (``gpkg_contents.data_type = 'attributes'``), so
QGIS / ``pyogrio`` open it as layers, while the toolkit reads and writes it in
SQL transactions:

* ``problems`` — one row per problem (问题编号 ``number``), the current state;
* ``history`` — append-only log of every change (who, when, source, field, old,
  new, evidence); triggers refuse ``UPDATE`` and ``DELETE`` on it;
* ``exports`` — the locked columns of every exported workbook row (a returned
  workbook is checked against what was sent out);
* ``runs`` / ``watch`` / ``meta`` — runs synced, closed sites watched for
  rebounds, counters.

Every change goes through :meth:`CampaignStore.transaction`: either all of it is
committed or, on any exception (or a killed process), none of it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["PROBLEM_FIELDS", "CampaignStore", "open_store"]

#: Columns of ``problems`` (besides ``number``), in order; all text except x, y, found.
PROBLEM_FIELDS: tuple[str, ...] = (
    "key", "kind", "members", "site_id", "rule_id", "source", "verdict", "licensed",
    "township", "name", "address", "problem_type", "description", "basis", "lead", "co",
    "measure", "deadline", "issued", "status", "progress", "done_date", "responsible",
    "disposition", "disposition_proposed", "disposition_note", "rebound_incidents",
    "found", "first_run", "last_run", "x", "y",
)

_REAL = {"x", "y"}
_INT = {"found"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE IF NOT EXISTS gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER);
CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name));
CREATE TABLE IF NOT EXISTS problems (number TEXT PRIMARY KEY, {fields});
CREATE INDEX IF NOT EXISTS problems_by_key ON problems (key);
CREATE TABLE IF NOT EXISTS history (
  fid INTEGER PRIMARY KEY AUTOINCREMENT, number TEXT NOT NULL, at TEXT NOT NULL,
  effective TEXT NOT NULL, who TEXT NOT NULL, source TEXT NOT NULL, field TEXT NOT NULL,
  old TEXT, new TEXT, evidence TEXT);
CREATE TRIGGER IF NOT EXISTS history_no_update BEFORE UPDATE ON history
  BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS history_no_delete BEFORE DELETE ON history
  BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
CREATE TABLE IF NOT EXISTS exports (
  fid INTEGER PRIMARY KEY AUTOINCREMENT, export_id TEXT NOT NULL, number TEXT NOT NULL, locked TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  fid INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, at TEXT, as_of TEXT,
  found INTEGER, new INTEGER, gone INTEGER, reopened INTEGER);
CREATE TABLE IF NOT EXISTS watch (site_id TEXT PRIMARY KEY, closed_since TEXT NOT NULL, x REAL, y REAL, name TEXT,
  township TEXT, address TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

_SRS_ROWS = (
    ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian coordinate reference system"),
    ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
)

_ATTRIBUTE_TABLES = ("problems", "history", "exports", "runs", "watch")


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


class CampaignStore:
    """An open campaign store (use :func:`open_store`).

    Parameters
    ----------
    path
        The ``campaign.gpkg`` file (created with its tables when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # explicit BEGIN/COMMIT below; wait for a concurrent writer rather than fail at once
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self._init()

    def _init(self) -> None:
        cols = ", ".join(
            f"{f} {'REAL' if f in _REAL else 'INTEGER' if f in _INT else 'TEXT'}" for f in PROBLEM_FIELDS
        )
        c = self.conn
        c.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
        c.execute("PRAGMA user_version = 10300")
        c.executescript(_SCHEMA.format(fields=cols))  # idempotent (IF NOT EXISTS), outside a transaction
        with self.transaction() as c:
            c.executemany("INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)", _SRS_ROWS)
            c.executemany(
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier) VALUES (?, 'attributes', ?)",
                [(t, t) for t in _ATTRIBUTE_TABLES],
            )

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` on any exception (re-raised)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    # ------------------------------------------------------------------ reading

    def problems(self) -> pd.DataFrame:
        """All problems (``number`` first), ordered by number."""
        df = pd.read_sql_query("SELECT * FROM problems ORDER BY number", self.conn)
        return df

    def history(self) -> pd.DataFrame:
        """The whole history, oldest first."""
        return pd.read_sql_query("SELECT * FROM history ORDER BY fid", self.conn)

    def meta(self, key: str, default: str | None = None) -> str | None:
        """A value of the ``meta`` table."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def export_snapshot(self, export_id: str) -> dict[str, dict[str, Any]]:
        """``{number: locked values}`` of one exported workbook (empty when unknown)."""
        rows = self.conn.execute("SELECT number, locked FROM exports WHERE export_id = ?", (export_id,)).fetchall()
        return {n: json.loads(v) for n, v in rows}

    def watched(self) -> pd.DataFrame:
        """Closed sites of the site ledger watched for rebounds."""
        return pd.read_sql_query("SELECT * FROM watch", self.conn)

    def dump(self) -> tuple[list[tuple[Any, ...]], ...]:
        """Every row of the store's own tables (a test compares two dumps)."""
        return tuple(
            self.conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()  # noqa: S608 - fixed names
            for t in (*_ATTRIBUTE_TABLES, "meta")
        )

    # ------------------------------------------------------------------ writing (inside a transaction)

    @staticmethod
    def next_seq(c: sqlite3.Connection) -> int:
        """The next problem sequence number (counter kept in ``meta``)."""
        row = c.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        seq = int(row[0]) if row else 1
        c.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (str(seq + 1),))
        return seq

    @staticmethod
    def insert_problem(c: sqlite3.Connection, number: str, values: Mapping[str, Any]) -> None:
        """Insert one problem (unknown keys of ``values`` are an error)."""
        cols = ["number", *values.keys()]
        c.execute(
            f"INSERT INTO problems ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",  # noqa: S608
            _checked_row(number, values),
        )

    @staticmethod
    def update_problem(c: sqlite3.Connection, number: str, values: Mapping[str, Any]) -> None:
        """Set fields of one problem."""
        if not values:
            return
        bad = [k for k in values if k not in PROBLEM_FIELDS]
        if bad:
            raise KeyError(f"unknown problem field(s) {bad}")
        sets = ", ".join(f"{k} = ?" for k in values)
        c.execute(f"UPDATE problems SET {sets} WHERE number = ?", [*(_sql(v) for v in values.values()), number])  # noqa: S608

    @staticmethod
    def log(
        c: sqlite3.Connection, number: str, *, who: str, source: str, field: str, old: Any, new: Any,
        evidence: str = "", effective: str | None = None,
    ) -> None:
        """Append one history entry (``at`` = now; ``effective`` = the date the change counts from)."""
        c.execute(_HISTORY_INSERT, _history_row(number, who=who, source=source, field=field, old=old, new=new,
                                                evidence=evidence, effective=effective))

    @staticmethod
    def record_export(c: sqlite3.Connection, export_id: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Keep the locked values of an exported workbook's rows."""
        c.executemany(
            "INSERT INTO exports (export_id, number, locked) VALUES (?,?,?)",
            [(export_id, n, json.dumps(dict(v), ensure_ascii=False, default=str)) for n, v in rows],
        )


_HISTORY_INSERT = ("INSERT INTO history (number, at, effective, who, source, field, old, new, evidence) "
                   "VALUES (?,?,?,?,?,?,?,?,?)")


def _history_row(number: str, *, who: str, source: str, field: str, old: Any, new: Any, evidence: str,
                 effective: str | None) -> tuple[Any, ...]:
    at = _now()
    return (number, at, effective or at[:10], who, source, field, _text(old), _text(new), evidence or "")


def _checked_row(number: str, values: Mapping[str, Any]) -> list[Any]:
    bad = [k for k in values if k not in PROBLEM_FIELDS]
    if bad:
        raise KeyError(f"unknown problem field(s) {bad}")
    return [number, *(_sql(v) for v in values.values())]


class BufferedWrites:
    """Stands in for :class:`CampaignStore`'s writers while a run's problems are synced.

    ``next_seq``, ``insert_problem``, ``update_problem`` and ``log`` take the same
    arguments; the rows are collected and :meth:`flush` sends them with one
    ``executemany`` per statement shape (per-row ``execute`` was most of the sync of a
    400,000-problem run). History rows keep their order; the sequence counter is read
    once and written once. Nothing is read back between the calls, so the store ends
    the same as with the row-by-row writers.
    """

    def __init__(self, c: sqlite3.Connection) -> None:
        row = c.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        self.first_seq = self.seq = int(row[0]) if row else 1
        self.inserts: dict[tuple[str, ...], list[list[Any]]] = {}
        self.updates: dict[tuple[str, ...], list[list[Any]]] = {}
        self.history: list[tuple[Any, ...]] = []

    def next_seq(self, c: sqlite3.Connection) -> int:
        """The next problem sequence number (counted here; stored by :meth:`flush`)."""
        self.seq += 1
        return self.seq - 1

    def insert_problem(self, c: sqlite3.Connection, number: str, values: Mapping[str, Any]) -> None:
        """Collect one new problem."""
        self.inserts.setdefault(tuple(values), []).append(_checked_row(number, values))

    def update_problem(self, c: sqlite3.Connection, number: str, values: Mapping[str, Any]) -> None:
        """Collect one problem's changed fields."""
        if values:
            row = _checked_row(number, values)
            self.updates.setdefault(tuple(values), []).append([*row[1:], number])

    def log(self, c: sqlite3.Connection, number: str, **entry: Any) -> None:
        """Collect one history entry (:meth:`CampaignStore.log`'s keywords)."""
        self.history.append(_history_row(number, **{"evidence": "", "effective": None, **entry}))

    def insert_many(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Collect new problems given as rows ``(number, *values)`` of ``columns`` (values already SQL-ready)."""
        bad = [k for k in columns if k not in PROBLEM_FIELDS]
        if bad:
            raise KeyError(f"unknown problem field(s) {bad}")
        self.inserts.setdefault(tuple(columns), []).extend(list(r) for r in rows)

    def log_many(self, numbers: Sequence[str], new: Sequence[Any], *, who: str, source: str, field: str,
                 evidence: str, effective: str | None) -> None:
        """Collect one history entry per number (``old`` None; ``new`` per number), stamped with one ``at``."""
        at = _now()
        eff = effective or at[:10]
        self.history.extend((no, at, eff, who, source, field, None, _text(v), evidence or "") for no, v in zip(numbers, new))

    def flush(self, c: sqlite3.Connection) -> None:
        """Write everything collected (inside the caller's transaction)."""
        for cols, rows in self.inserts.items():
            names = ["number", *cols]
            c.executemany(f"INSERT INTO problems ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",  # noqa: S608
                          rows)
        for cols, rows in self.updates.items():
            c.executemany(f"UPDATE problems SET {', '.join(f'{k} = ?' for k in cols)} WHERE number = ?", rows)  # noqa: S608
        c.executemany(_HISTORY_INSERT, self.history)
        if self.seq != self.first_seq:
            c.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (str(self.seq),))
        self.inserts, self.updates, self.history, self.first_seq = {}, {}, [], self.seq


def _sql(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and pd.isna(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, dt.date)):
        return v.strftime("%Y-%m-%d")
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def _text(v: Any) -> str | None:
    v = _sql(v)
    return None if v is None else str(v)


@contextlib.contextmanager
def open_store(path: str | Path) -> Iterator[CampaignStore]:
    """Open (create) the store at ``path`` and close it afterwards."""
    store = CampaignStore(path)
    try:
        yield store
    finally:
        store.close()
