"""Bounded YAML loading (安全读取 YAML): no alias bombs, no huge files.

``yaml.safe_load`` builds no Python objects from tags, but it still expands a
"billion laughs" document — a 2 KB ``project.yaml`` with nested aliases — into a
structure whose traversal exhausts memory. :func:`safe_load_bounded` composes the
node graph first (aliases are shared references there, so composing is cheap),
counts the nodes the document would hold with every alias expanded,

.. math:: N(n) = 1 + \\sum_{c \\in \\mathrm{children}(n)} N(c),

computed once per distinct node (memoised), and refuses the document when the
number of alias uses or :math:`N(\\mathrm{root})` exceeds the limits of
``layers/limits.yaml`` (``yaml.max_aliases``, ``yaml.max_expanded_nodes``), or
when an alias refers to a node that contains it (recursive structure).

:func:`read_mapping` is the toolkit's one YAML file reader: every ``layers/*.yaml``
table and every ``project.yaml`` goes through it (via :func:`gis.catalog.load_yaml`,
which passes the limits of ``layers/limits.yaml``); only ``limits.yaml`` itself is
read with ``limits=None`` (aliases refused, nothing else to bound by).

Examples
--------
>>> from gis.safeyaml import YamlLimits, safe_load_bounded
>>> safe_load_bounded("{a: &x [1, 2], b: *x}", YamlLimits(max_aliases=4, max_expanded_nodes=50, max_bytes=1024))
{'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gis._errors import CatalogError


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on one YAML document.

    Attributes
    ----------
    max_aliases
        Alias uses (``*name``) allowed.
    max_expanded_nodes
        Nodes the document may hold with every alias expanded.
    max_bytes
        Size of the text in bytes.
    """

    max_aliases: int
    max_expanded_nodes: int
    max_bytes: int


class YamlBombError(ValueError):
    """A YAML document exceeds the alias / expansion / size bounds."""


#: libyaml's parser and composer where PyYAML was built with it (about 10× faster), else PyYAML's own.
_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def alias_uses(root: yaml.Node) -> int:
    """How many alias references (``*name``) the composed document ``root`` holds.

    Composing resolves an alias to its anchored node object, so a document without
    aliases is a tree and every further edge to a node already reached is one alias use.
    """
    seen, uses, todo = {id(root)}, 0, [root]
    while todo:
        node = todo.pop()
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [c for pair in node.value for c in pair]
        else:
            continue
        for child in children:
            if id(child) in seen:
                uses += 1
            else:
                seen.add(id(child))
                todo.append(child)
    return uses


def expanded_size(root: yaml.Node, cap: int) -> int:
    """Number of nodes under ``root`` with aliases expanded (stops once above ``cap``).

    Raises
    ------
    YamlBombError
        If a node contains itself through an alias (a recursive document).
    """
    memo: dict[int, int] = {}
    stack: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in stack:
            raise YamlBombError("an alias refers to a node that contains it (recursive YAML)")
        stack.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > cap:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > cap:
                    break
        stack.discard(key)
        memo[key] = total
        return total

    return size(root)


def safe_load_bounded(text: str, limits: YamlLimits | None) -> Any:
    """Parse YAML text like ``yaml.safe_load``, within ``limits``.

    Raises
    ------
    YamlBombError
        Text too large, too many aliases, expansion above the bound, or recursion;
        the message names the ``layers/limits.yaml`` key to change.
    yaml.YAMLError
        Ordinary syntax errors (unchanged).

    ``limits=None`` is the bootstrap mode for ``layers/limits.yaml`` itself: any
    alias is refused, so the document holds at most as many nodes as it has tokens.
    """
    size = len(text.encode("utf-8"))
    if limits is not None and size > limits.max_bytes:
        raise YamlBombError(f"{size} bytes; the limit is {limits.max_bytes} (yaml.max_bytes in layers/limits.yaml)")
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        uses = alias_uses(node)
        if limits is None:
            if uses:
                raise YamlBombError("aliases (*name) are not allowed in the limits table")
            return loader.construct_document(node)
        if uses > limits.max_aliases:
            raise YamlBombError(
                f"{uses} alias uses (*name); the limit is {limits.max_aliases} "
                "(yaml.max_aliases in layers/limits.yaml)"
            )
        n = expanded_size(node, limits.max_expanded_nodes)
        if n > limits.max_expanded_nodes:
            raise YamlBombError(
                f"expands to more than {limits.max_expanded_nodes} nodes through aliases "
                "(yaml.max_expanded_nodes in layers/limits.yaml)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


@functools.lru_cache(maxsize=128)
def _parsed_once(text: str, limits: YamlLimits | None) -> Any:
    return safe_load_bounded(text, limits)


def _parsed(text: str, limits: YamlLimits | None) -> Any:
    """:func:`safe_load_bounded`, memoised on the text itself (a run reads ``layers/*.yaml``
    a hundred times; parsing is pure, so equal text gives an equal document). Callers get
    their own deep copy; errors are raised again each time (never cached)."""
    return copy.deepcopy(_parsed_once(text, limits))


def read_yaml_text(path: Path, limits: YamlLimits | None) -> str:
    """Read a YAML file's text, refusing it before reading when it is too large."""
    size = path.stat().st_size
    if limits is not None and size > limits.max_bytes:
        raise YamlBombError(f"{size} bytes; the limit is {limits.max_bytes} (yaml.max_bytes in layers/limits.yaml)")
    return path.read_text(encoding="utf-8")


def read_mapping(path: str | Path, limits: YamlLimits | None) -> dict[str, Any]:
    """The one YAML file reader: a mapping, or a one-line :class:`CatalogError`.

    Parameters
    ----------
    path
        The YAML file.
    limits
        Alias / expansion / size bounds (:func:`gis.limits.yaml_limits`); ``None``
        only for ``layers/limits.yaml`` itself (aliases refused).

    Returns
    -------
    dict
        The document (an empty file gives ``{}``).

    Raises
    ------
    CatalogError
        Naming the file and ``(file)`` (missing, unreadable, not UTF-8),
        ``(aliases)`` (bounds exceeded), ``(syntax)`` (with line and column) or
        ``(root)`` (not a mapping).
    """
    path = Path(path)
    try:
        text = read_yaml_text(path, limits)
    except FileNotFoundError:
        raise CatalogError(path, "(file)", "file not found") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(path, "(file)", f"not UTF-8 text ({exc.reason})") from None
    except YamlBombError as exc:
        raise CatalogError(path, "(aliases)", str(exc)) from None
    except OSError as exc:
        raise CatalogError(path, "(file)", f"cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        data = _parsed(text, limits)
    except YamlBombError as exc:
        raise CatalogError(path, "(aliases)", str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError(path, "(syntax)", f"{where}{problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogError(path, "(root)", "must be a mapping of keys to values")
    return data
