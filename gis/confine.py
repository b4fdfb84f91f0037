"""Confinement of uploaded projects (上传项目隔离) and upload quotas.

A project opened from an upload — or any project opened with ``--confined``, the
same code path — may read only files inside its own folder:
:func:`confined_path` resolves every path named in ``project.yaml`` (symbolic
links included) and refuses absolute paths, ``..`` and links leading outside.
Errors name the project-relative path only, so they reveal nothing about the
server's file system.

Uploads are checked before anything is written (:func:`check_zip_quota`: entry
count, total uncompressed size and compression ratio, limits in
``layers/limits.yaml`` ``upload.*``), extracted into a per-session folder
(:func:`session_upload_dir`) that is emptied on the next upload and deleted at
the end of the session (:func:`drop_session_dir`), and the disk used by all
uploads together is capped (:func:`enforce_upload_cap`, oldest evicted first).
Text from user files, keys and zip entry names is escaped (:func:`escape_markdown`)
before the app renders it.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from gis._errors import CatalogError, GisError, InputError
from gis.limits import MIB, load_limits, upload_limits

#: The one answer of the app's local-folder mode to a path it will not open: the same
#: text whether the path is missing, unreadable, outside the allowed folders or no project.
LOCAL_FOLDER_REFUSED = (
    "无法打开该文件夹 This folder cannot be opened: "
    "it is not a project folder this app may read (project.yaml / municipality.yaml / per-district results)"
)


def confined_path(root: Path, name: str, *, yaml_path: Path, key: str) -> Path:
    """Resolve ``name`` (as written in ``project.yaml``) inside ``root``, or refuse it.

    Parameters
    ----------
    root
        The project folder.
    name
        The path as written (must be relative).
    yaml_path, key
        For the error message (file and dotted key).

    Returns
    -------
    Path
        The resolved path, guaranteed to lie inside ``root.resolve()``.

    Raises
    ------
    CatalogError
        Absolute path, drive letter, ``..`` component, or a link resolving outside
        the folder; or the file does not exist. The message shows ``name`` only.

    Examples
    --------
    >>> from gis import settings
    >>> root = settings.SAMPLE_PROJECT_DIR
    >>> confined_path(root, "sites_ledger.csv", yaml_path=root / "project.yaml", key="layers.sites.file").name
    'sites_ledger.csv'
    >>> confined_path(root, "../../etc/passwd", yaml_path=root / "project.yaml", key="layers.sites.file")
    Traceback (most recent call last):
    ...
    gis._errors.CatalogError: project.yaml: key 'layers.sites.file': '../../etc/passwd': '..' leaves the project folder
    """
    shown = _printable(name)
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise CatalogError(yaml_path.name, key, f"{shown!r}: an absolute path; name a file inside the project folder")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise CatalogError(yaml_path.name, key, f"{shown!r}: '..' leaves the project folder")
    base = Path(root).resolve()
    target = (base / Path(*parts)).resolve() if parts else base
    if target != base and base not in target.parents:
        raise CatalogError(yaml_path.name, key, f"{shown!r}: a link leading outside the project folder")
    if not target.is_file():
        raise CatalogError(yaml_path.name, key, f"file not found in the project folder: {shown}")
    return target


def _printable(text: str) -> str:
    """Control characters removed, length bounded (names shown back to the user)."""
    return re.sub(r"[\x00-\x1f\x7f]", "?", str(text))[:200]


# ------------------------------------------------------------------------ uploads


def check_zip_quota(
    zf: zipfile.ZipFile, name: str, table: dict[str, Any] | None = None, uploaded_bytes: int | None = None
) -> None:
    """Refuse a zip whose entries exceed the upload quotas, before extracting anything.

    Checks, with :math:`u_i` the declared uncompressed and :math:`c_i` the compressed
    size of entry :math:`i`: the entry count, :math:`\\sum u_i` against
    ``upload.max_unpacked_mib``, and the ratios :math:`u_i / \\max(c_i, 1)` and
    :math:`\\sum u_i / \\max(\\sum c_i, 1)` against ``upload.max_ratio``.

    Raises
    ------
    InputError
        Naming the upload, the entry (escaped) and the ``limits.yaml`` key.
    """
    lim = upload_limits(table)
    max_zip = lim.max_zip_bytes
    if uploaded_bytes is not None and uploaded_bytes > max_zip:
        raise InputError(name, f"upload is {uploaded_bytes / MIB:.0f} MiB; the limit is {max_zip / MIB:.0f} MiB (upload.max_zip_mib)")
    infos = [i for i in zf.infolist() if not i.is_dir()]
    max_entries = lim.max_entries
    if len(infos) > max_entries:
        raise InputError(name, f"{len(infos)} files in the zip; the limit is {max_entries} (upload.max_entries)")
    total_u = sum(i.file_size for i in infos)
    total_c = sum(i.compress_size for i in infos)
    max_unpacked = lim.max_unpacked_bytes
    if total_u > max_unpacked:
        raise InputError(
            name, f"unpacks to {total_u / MIB:.0f} MiB; the limit is {max_unpacked / MIB:.0f} MiB (upload.max_unpacked_mib)"
        )
    max_ratio = lim.max_ratio
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > max_ratio and info.file_size > MIB:
            raise InputError(
                name,
                f"entry {_printable(info.filename)!r} expands {ratio:.0f}×; the limit is {max_ratio:.0f}× (upload.max_ratio)",
            )
    if total_u > MIB and total_u / max(total_c, 1) > max_ratio:
        raise InputError(name, f"the zip expands {total_u / max(total_c, 1):.0f}×; the limit is {max_ratio:.0f}× (upload.max_ratio)")


def session_upload_dir(base: Path, session_id: str) -> Path:
    """An empty folder for this session's upload (a previous upload of the session is deleted).

    ``session_id`` is reduced to ``[A-Za-z0-9_-]`` so it can never name a path.
    """
    safe = re.sub(r"[^A-Za-z0-9_-]", "", str(session_id))[:64] or "anonymous"
    folder = Path(base) / f"session-{safe}"
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def drop_session_dir(base: Path, session_id: str) -> None:
    """Delete a session's upload folder (at the end of the session)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "", str(session_id))[:64] or "anonymous"
    shutil.rmtree(Path(base) / f"session-{safe}", ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    """Bytes used by the files under ``folder`` (links not followed)."""
    return sum(p.lstat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def enforce_upload_cap(base: Path, keep: Path | None = None, table: dict[str, Any] | None = None) -> list[Path]:
    """Delete the oldest session folders under ``base`` until all fit ``upload.max_total_mib``.

    ``keep`` (the current session's folder) is never deleted.

    Returns
    -------
    list of Path
        The folders deleted.
    """
    cap = upload_limits(table).max_total_bytes
    base = Path(base)
    if not base.exists():
        return []
    sessions = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    sizes = {p: folder_bytes(p) for p in sessions}
    used = sum(sizes.values())
    dropped = []
    for p in sessions:
        if used <= cap:
            break
        if keep is not None and p.resolve() == Path(keep).resolve():
            continue
        shutil.rmtree(p, ignore_errors=True)
        used -= sizes[p]
        dropped.append(p)
    return dropped


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


def escape_markdown(text: Any) -> str:
    """Text safe to pass to ``st.markdown`` / ``st.error``: every Markdown / HTML sign escaped.

    Control characters are replaced, so a name cannot start new lines or blocks.
    """
    return _MD_SPECIAL.sub(r"\\\1", re.sub(r"[\x00-\x1f\x7f]", " ", str(text)))


def redact(message: str, root: Path) -> str:
    """An error text with the project folder's absolute path removed (project-relative names only)."""
    text = str(message)
    for form in {str(Path(root)), str(Path(root).resolve())}:
        text = text.replace(form + "/", "").replace(form, ".")
    return text


def prune_sessions(base: Path, active: Iterable[str]) -> list[Path]:
    """Delete the upload folders of sessions no longer active (their session ended).

    Parameters
    ----------
    base
        Folder holding the ``session-<id>`` upload folders.
    active
        Ids of the sessions still open.

    Returns
    -------
    list of Path
        The folders deleted.
    """
    keep = {f"session-{re.sub(r'[^A-Za-z0-9_-]', '', str(s))[:64]}" for s in active}
    base = Path(base)
    if not base.exists():
        return []
    gone = [p for p in base.iterdir() if p.is_dir() and p.name.startswith("session-") and p.name not in keep]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def is_inside(path: Path, base: Path) -> bool:
    """Whether ``path`` lies inside ``base`` (both resolved)."""
    p, b = Path(path).resolve(), Path(base).resolve()
    return p == b or b in p.parents


# ------------------------------------------------------------------- local folders


class LocalFolderError(InputError):
    """A typed folder the local-folder mode will not open (always :data:`LOCAL_FOLDER_REFUSED`)."""

    def __init__(self) -> None:
        super().__init__("(folder)", LOCAL_FOLDER_REFUSED)

    def __str__(self) -> str:
        return LOCAL_FOLDER_REFUSED


def local_roots(table: dict[str, Any] | None = None) -> tuple[Path, ...] | None:
    """``local_folders.roots`` of ``layers/limits.yaml``: folders the app's local mode may open.

    ``None`` (the bundled default) lets the mode open any folder of the machine (one
    user on their own computer); a list confines it to folders inside those roots.
    """
    table = table if table is not None else load_limits()
    roots = (table.get("local_folders") or {}).get("roots")
    return None if roots is None else tuple(Path(str(r)).expanduser().resolve() for r in roots)


def open_local_folder(
    text: str, usable: Callable[[Path], bool], roots: Sequence[Path] | None = None
) -> Path:
    """The folder (or ``project.yaml``) typed in the app's local-folder mode, or one generic refusal.

    Parameters
    ----------
    text
        What the user typed.
    usable
        Whether a resolved, existing path is a project the app can open (a district
        folder or file with ``project.yaml``, a municipality, a folder of results).
    roots
        Allowed folders (:func:`local_roots`); ``None`` = anywhere.

    Returns
    -------
    Path
        The resolved path.

    Raises
    ------
    LocalFolderError
        The path is empty, missing, unreadable, outside ``roots`` or not usable — with
        the same message in every case, so the answer reveals nothing about which
        server paths exist.

    Examples
    --------
    >>> from gis import settings
    >>> open_local_folder(str(settings.SAMPLE_PROJECT_DIR), lambda p: (p / "project.yaml").exists()).name
    'sample_district'
    >>> open_local_folder("/no/such/folder", lambda p: True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gis.confine.LocalFolderError: 无法打开该文件夹 This folder cannot be opened: ...
    """
    raw = _printable(text).strip()
    if not raw or raw != str(text).strip():
        raise LocalFolderError()
    try:
        path = Path(raw).expanduser().resolve(strict=True)
        if roots is not None and not any(is_inside(path, r) for r in roots):
            raise LocalFolderError()
        if not usable(path):
            raise LocalFolderError()
    except LocalFolderError:
        raise
    except (OSError, RuntimeError, ValueError, GisError):  # missing, unreadable, a link loop, a bad name
        raise LocalFolderError() from None
    return path
