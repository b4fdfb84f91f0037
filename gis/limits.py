"""The security and resource limits of ``layers/limits.yaml`` (安全与资源限制).

Every bound the toolkit enforces on user input — plausible-date window, YAML
alias expansion, upload quotas, time bins, raster / grid / network sizes — is
read from that file; none has a default in code. Errors raised on a limit name
the ``limits.yaml`` key to change (:func:`check_size`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gis import settings
from gis._errors import CatalogError, GisError
from gis.safeyaml import YamlLimits, read_mapping


def limits_path() -> Path:
    """The limits file: ``limits.yaml`` of the active layers folder, else the bundled one.

    A custom :data:`gis.settings.LAYERS_DIR` without its own ``limits.yaml`` keeps
    the toolkit's limits (a layers folder can never switch the limits off).
    """
    own = settings.LAYERS_DIR / "limits.yaml"
    return own if own.exists() else settings.PACKAGE_ROOT / "layers" / "limits.yaml"


def load_limits(path: Path | None = None) -> dict[str, Any]:
    """The limits table (a plain mapping of sections ``dates``, ``yaml``, ``upload``, ``analysis``).

    Read with the one YAML reader (:func:`gis.safeyaml.read_mapping`) in its
    bootstrap mode: the limits cannot bound their own file, so aliases are refused.
    """
    return read_mapping(path or limits_path(), None)


def limit(section: str, key: str, table: dict[str, Any] | None = None) -> Any:
    """One limit, ``section.key`` of ``layers/limits.yaml``.

    Raises
    ------
    CatalogError
        When the key is missing (there is no fallback in code).

    Examples
    --------
    >>> limit("dates", "min")
    '2000-01-01'
    """
    table = table if table is not None else load_limits()
    try:
        return table[section][key]
    except (KeyError, TypeError):
        raise CatalogError(limits_path(), f"{section}.{key}", "required limit is missing") from None


def yaml_limits(table: dict[str, Any] | None = None) -> YamlLimits:
    """The YAML bounds (``yaml.*``)."""
    table = table if table is not None else load_limits()
    return YamlLimits(
        max_aliases=int(limit("yaml", "max_aliases", table)),
        max_expanded_nodes=int(limit("yaml", "max_expanded_nodes", table)),
        max_bytes=int(limit("yaml", "max_bytes", table)),
    )


@dataclass(frozen=True)
class UploadLimits:
    """The upload quotas (``upload.*``) in bytes / counts, as the app enforces them.

    Attributes
    ----------
    max_zip_bytes
        One uploaded zip, as uploaded (``upload.max_zip_mib``).
    max_unpacked_bytes
        Total uncompressed size of its entries (``upload.max_unpacked_mib``).
    max_entries
        File entries (``upload.max_entries``).
    max_ratio
        Uncompressed / compressed ratio of an entry and of the zip (``upload.max_ratio``).
    max_total_bytes
        Disk used by all extracted uploads together (``upload.max_total_mib``).

    Examples
    --------
    >>> lim = upload_limits()
    >>> lim.max_zip_bytes == int(limit("upload", "max_zip_mib") * MIB)
    True
    """

    max_zip_bytes: int
    max_unpacked_bytes: int
    max_entries: int
    max_ratio: float
    max_total_bytes: int


#: Bytes in one MiB (the unit of ``upload.*_mib``).
MIB = 2**20


def upload_limits(table: dict[str, Any] | None = None) -> UploadLimits:
    """The upload quotas of ``layers/limits.yaml`` (:class:`UploadLimits`)."""
    table = table if table is not None else load_limits()
    return UploadLimits(
        max_zip_bytes=int(float(limit("upload", "max_zip_mib", table)) * MIB),
        max_unpacked_bytes=int(float(limit("upload", "max_unpacked_mib", table)) * MIB),
        max_entries=int(limit("upload", "max_entries", table)),
        max_ratio=float(limit("upload", "max_ratio", table)),
        max_total_bytes=int(float(limit("upload", "max_total_mib", table)) * MIB),
    )


def date_window(
    table: dict[str, Any] | None = None, today: _dt.date | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The plausible-date window ``[dates.min, today + dates.max_days_after_today]``.

    The window is a toolkit-wide limit: a project cannot widen it (``limits:`` is
    not a ``project.yaml`` key), an operator changes ``layers/limits.yaml``.

    Examples
    --------
    >>> import datetime
    >>> date_window(today=datetime.date(2026, 12, 3))
    (Timestamp('2000-01-01 00:00:00'), Timestamp('2026-12-04 00:00:00'))
    """
    table = table if table is not None else load_limits()
    lo = pd.Timestamp(str(limit("dates", "min", table)))
    today = today or _dt.date.today()
    hi = pd.Timestamp(today) + pd.Timedelta(days=int(limit("dates", "max_days_after_today", table)))
    return lo, hi


def check_size(value: int, section: str, key: str, what: str, table: dict[str, Any] | None = None) -> None:
    """Refuse an allocation before it happens when ``value`` exceeds ``section.key``.

    Parameters
    ----------
    value
        The size about to be allocated (cells, bins, nodes, bytes).
    section, key
        Limit in ``layers/limits.yaml``.
    what
        Plain words for the thing measured, and the analysis parameter that drives it.

    Raises
    ------
    GisError
        ``"<what> would be <value>; the limit is <n> (<section>.<key> in layers/limits.yaml)"``.
    """
    cap = int(limit(section, key, table))
    if int(value) > cap:
        raise GisError(f"{what} would be {int(value):,}; the limit is {cap:,} ({section}.{key} in layers/limits.yaml)")


