"""Typed exceptions of the toolkit.

Every error that comes from bad user input names *where* the problem is — the file,
and where it applies the row (1-based, counting the header as row 1 like a
spreadsheet does), the field, or the YAML key — so that a district clerk can find
and fix it without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class GisError(Exception):
    """Base class of every error raised on purpose by :mod:`gis`."""


class InputError(GisError):
    """A user-supplied file cannot be used.

    Parameters
    ----------
    path
        The file at fault.
    message
        What is wrong, in plain words.
    row
        Spreadsheet-style row number (header = row 1), when one row is at fault.
    field
        Column or attribute at fault.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.row = row
        self.field = field
        self.reason = message
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class CatalogError(GisError):
    """A layer catalogue or ``project.yaml`` is malformed.

    Parameters
    ----------
    path
        The YAML file at fault.
    key
        Dotted path of the offending key, e.g. ``layers.sites.coords``.
    message
        What is wrong.
    """

    def __init__(self, path: str | Path, key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.reason = message
        super().__init__(f"{self.path}: key '{key}': {message}")


class CoordinateError(GisError):
    """A coordinate convention or CRS is unknown or cannot be applied."""


class AnalysisError(GisError):
    """An analysis cannot run on the data it was given (e.g. a missing layer)."""


class LayerMissingError(AnalysisError):
    """An analysis needs a layer the project does not provide."""

    def __init__(self, layer: str, needed_by: str) -> None:
        self.layer = layer
        self.needed_by = needed_by
        super().__init__(
            f"the '{layer}' layer is needed by {needed_by} but the project does not declare it"
        )
