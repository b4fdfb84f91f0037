"""Architecture rules read from the source: no import cycle in ``gis/``, no function over 80 lines.

Both read the code with :mod:`ast` (nothing is imported), so they also see the
imports inside functions. The step table of ``docs/ARCHITECTURE.md`` is checked
against the registry :data:`gis.steps.STEPS`.
"""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "gis"
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(mod: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: {gis modules it imports}}`` (module-level and function-level imports)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, node, is_pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod and t != "gis":
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:function (n lines)`` for every function longer than ``limit`` lines."""
    found = []
    for path in [*sorted(PKG.rglob("*.py")), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{path.relative_to(ROOT)}:{node.name} ({n} lines)")
    return found


def test_no_import_cycle_in_gis():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_analyses_never_import_writers_and_writers_never_import_analyses():
    g = import_graph()
    analyses = {"gis.compliance", "gis.coverage", "gis.hotspots", "gis.siting"}
    writers = {"gis.export", "gis.ledgers"}
    assert {m for m in analyses if g.get(m, set()) & {"gis.export"}} == set()
    assert {m for m in writers if g.get(m, set()) & analyses} == set()
    assert "gis.steps" not in set().union(*(g[m] for m in analyses | writers if m in g))


def test_long_function_finder_counts_lines(tmp_path):
    assert all(" lines)" in f for f in long_functions())


def test_no_function_over_80_lines():
    assert long_functions() == []


def test_architecture_doc_shows_the_step_registry():
    from gis import steps

    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert steps.markdown_table() in doc, "regenerate the table with `python -m gis.steps` (docs/ARCHITECTURE.md)"


def yaml_parsers() -> list[str]:
    """``file:line`` of every YAML parse (``yaml.safe_load``, ``yaml.load`` …) outside ``gis/safeyaml.py``."""
    parse_names = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all", "compose"}
    found = []
    for path in [*sorted(PKG.rglob("*.py")), ROOT / "app.py"]:
        if path == PKG / "safeyaml.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in parse_names
                and isinstance(node.value, ast.Name)
                and node.value.id == "yaml"
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_yaml_file_is_read_by_the_one_bounded_reader():
    """Issue 10 item 2 / issue 11 item 3: one YAML reader (gis.safeyaml.read_mapping via catalog.load_yaml)."""
    assert yaml_parsers() == []


def relative_imports() -> list[str]:
    """``file:line`` of every relative import (``from .x import``) in ``gis/``: one style, absolute."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                found.append(f"{rel}:{node.lineno}")
    return found


def test_one_import_style_absolute_gis_imports():
    assert relative_imports() == []


#: Main entry points whose docstrings carry a runnable ``Examples`` section (as osmnx and esda do).
DOCTESTED = {
    "gis.catalog": ("load_project", "load_yaml"),
    "gis.params": ("load_params", "default_params"),
    "gis.safeyaml": (),
    "gis.limits": ("limit", "date_window", "UploadLimits"),
    "gis.confine": ("confined_path", "open_local_folder"),
    "gis.landuse": ("load_scheme", "detect_scheme"),
    "gis.targets": ("validate_project",),
}


def test_entry_point_examples_run():
    """The ``Examples`` of the main entry points run as written (doctest)."""
    import doctest
    import importlib

    for name, funcs in DOCTESTED.items():
        mod = importlib.import_module(name)
        for f in funcs:
            assert "Examples" in (getattr(mod, f).__doc__ or ""), f"{name}.{f} has no Examples section"
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, verbose=False)
        assert res.failed == 0, f"{name}: {res.failed} failing example(s)"


#: Numeric keyword defaults that are not district parameters: the definition of a
#: method (Gi*'s self weight, the LSCP's full coverage, "no halo", "no simplification"),
#: memory / batch sizes of a kernel, and private drawing styles. Every other number an
#: analysis reads has its value in ``layers/*.yaml`` (a keyword left None reads it there).
NUMERIC_DEFAULTS_ALLOWED = {
    "gis/gistar.py": {"choose_cell_size(min_size)", "with_self_weight(self_weight)", "gi_star(self_weight)",
                      "gi_star(permutations)", "gi_star(max_chunk)", "hot(level)"},
    "gis/emerging.py": {"space_time_gi_star(time_steps)"},
    "gis/siting.py": {"coverage_matrix(batch)", "greedy_mclp(max_swap_passes)", "lscp(share)"},
    "gis/routing.py": {"pairs_within(batch)"},
    "gis/parallel.py": {"local_client(n_workers)", "local_client(threads_per_worker)", "tree_reduce(fan_in)"},
    "gis/partitioned.py": {"read(halo)"},
    "gis/map_render.py": {"save_map_png(timeout_s)"},
    "gis/maps.py": {"_display_frame(simplify_m)", "_polygon_image(alpha)", "_raster_image(max_px)",
                    "_generic_points(size)", "_generic_polygons(fill_opacity)", "_generic_polygons(weight)"},
}


def numeric_defaults() -> list[str]:
    """``file: function(arg)`` of every numeric keyword default in ``gis/`` not in the allowed list."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("gis/sample/"):
            continue  # the generator's own constants (gis.sample.constants)
        allowed = NUMERIC_DEFAULTS_ALLOWED.get(rel, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            pairs = list(zip(a.args[len(a.args) - len(a.defaults):], a.defaults))
            pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            for arg, d in pairs:
                number = isinstance(d, ast.Constant) and type(d.value) in (int, float)
                if number and f"{node.name}({arg.arg})" not in allowed:
                    found.append(f"{rel}: {node.name}({arg.arg}={d.value})")
    return found


def test_no_numeric_parameter_default_in_code():
    """Issue 10 item 2: "no numeric default appears in code" (values live in layers/*.yaml)."""
    assert numeric_defaults() == []


def test_district_parameters_are_typed():
    """Issue 10 item 6: a ``district`` parameter is a :class:`gis.district.District`, never ``Any``."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.arg) and node.arg in ("district", "_district") and node.annotation is not None:
                if ast.unparse(node.annotation) == "Any":
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
