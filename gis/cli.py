"""Command line: ``python -m gis`` (also installed as ``gis``).

Subcommands
-----------
``sample``    generate a sample district (seeded; small / district / city scale)
``validate``  check a project's catalogue and layers, print a readable report
``run``       the main job: load, validate and run every analysis, writing ``OUT/``
plus one subcommand per analysis step that declares one in the registry
(:data:`gis.steps.STEPS`, e.g. ``check``), which runs only that step and the steps it needs.

Errors in user files print one line naming the file, row, field or YAML key, and
exit with status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from gis import __version__, settings
from gis._errors import GisError

def step_commands() -> dict[str, tuple[list[str], str]]:
    """Subcommands that run a subset of the pipeline: ``{command: (steps, help)}`` from the registry."""
    from gis.steps import closure, commands

    return {cmd: (closure([step.name]), step.help) for cmd, step in commands().items()}


def _add_project_args(p: argparse.ArgumentParser, *, out: bool = True) -> None:
    p.add_argument(
        "--project",
        default=None,
        help="project folder (holding project.yaml) or the yaml file; default: the bundled sample district",
    )
    p.add_argument("--confined", action="store_true", help="read only files inside the project folder (as for uploads)")
    if out:
        p.add_argument("--out", default="out", help="output folder (default: ./out)")
        p.add_argument("--quiet", action="store_true", help="no progress display")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gis",
        description="Recycling-network planning and illegal-dismantling hotspots for a district "
        "(再生资源回收体系规划与非法拆解热点排查).",
    )
    parser.add_argument("--version", action="version", version=f"gis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="generate a sample district (样例数据)")
    p.add_argument("--out", required=True, help="folder to write the sample project into")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--scale", choices=["small", "district", "city", "municipality"], default="small")
    p.add_argument("--districts", type=int, default=None, help="municipality: number of districts (default 38)")
    p.add_argument("--district-scale", default="municipal", help="municipality: scale of each district (default municipal)")

    p = sub.add_parser("validate", help="check a project's layers and print a report")
    _add_project_args(p, out=False)
    p.add_argument("--rejects", default=None, help="also write the rejected rows to this CSV")
    p.add_argument("--strict", action="store_true", help="exit 1 when any row is rejected")

    p = sub.add_parser("run", help="the main job: all analyses, outputs to --out")
    _add_project_args(p)
    p.add_argument("--steps", default=None, help="comma-separated subset of steps to run (see docs/ARCHITECTURE.md)")
    p.add_argument("--engine", choices=["single", "dask"], default="single", help="municipality: single process or Dask")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: LocalCluster on 127.0.0.1)")

    p = sub.add_parser("rollup", help="municipal summary (市级汇总) from per-district results")
    p.add_argument("--runs", required=True, help="folder of district results (RUNS/districts/<code>/summary.json)")
    p.add_argument("--out", default=None, help="output folder (default: --runs)")

    for name, (_steps, help_text) in step_commands().items():
        p = sub.add_parser(name, help=help_text)
        _add_project_args(p)
    _add_ledger_parser(sub)
    return parser


def _add_ledger_parser(sub: Any) -> None:
    """``gis ledger export|merge|report`` (the campaign round trip, :mod:`gis.campaign_forms`)."""
    p = sub.add_parser("ledger", help="campaign ledgers: export to departments, merge returns, report (问题台账)")
    lsub = p.add_subparsers(dest="ledger_command", required=True)
    e = lsub.add_parser("export", help="write each department's / 镇街's own 问题台账 workbook")
    _add_project_args(e, out=False)
    e.add_argument("--out", required=True, help="folder for the workbooks")
    e.add_argument("--department", default=None, help="only this lead department (牵头单位)")
    e.add_argument("--township", default=None, help="only this 镇街")
    m = lsub.add_parser("merge", help="validate a returned workbook and apply it to the campaign store")
    _add_project_args(m, out=False)
    m.add_argument("--returned", required=True, help="the returned .xlsx workbook")
    m.add_argument("--who", default=None, help="who is merging (default: the workbook's 填报人)")
    r = lsub.add_parser("report", help="汇总表 per 镇街 and department, overdue list, chart, 联络员信息表")
    _add_project_args(r, out=False)
    r.add_argument("--out", required=True, help="folder for the report")
    r.add_argument("--period", default=None, help="reporting month YYYY-MM (default: the campaign so far)")


def cmd_ledger(args: argparse.Namespace) -> int:
    """Run one ``gis ledger`` subcommand; merge exits 1 when rows were rejected."""
    from gis import campaign_forms as cf

    project = _project(args.project)
    if args.ledger_command == "export":
        for path in cf.export_workbooks(project, Path(args.out), department=args.department, township=args.township):
            print(path)
        return 0
    if args.ledger_command == "merge":
        res = cf.merge_workbook(project, Path(args.returned), who=args.who)
        for r in res.changes.itertuples(index=False):
            print(f"{r[0]} {r[1]}: {r[2] or '（空）'} → {r[3]}")
        for r in res.rejects.itertuples(index=False):
            print(f"rejected: {r.file}, row {r.row}, {r.field}: {r.reason}", file=sys.stderr)
        print(f"{res.rows_applied} of {res.rows_read} rows applied, {len(res.changes)} changes, "
              f"{res.rejects['row'].nunique() if len(res.rejects) else 0} rows rejected"
              + (f" (see {res.rejects_path})" if res.rejects_path else ""))
        return 1 if len(res.rejects) else 0
    rep = cf.write_report(project, Path(args.out), period=args.period)
    print(json.dumps({"period": rep["period"], "total": rep["total"], "overdue": rep["overdue"]}, ensure_ascii=False))
    for path in rep["paths"].values():
        print(path)
    return 0


def _project(arg: str | None) -> Path:
    return Path(arg) if arg else settings.SAMPLE_PROJECT_DIR


def cmd_sample(args: argparse.Namespace) -> int:
    from gis.sample import generate

    if args.scale == "municipality":
        from gis.municipal import CHONGQING_DISTRICTS
        from gis.sample.mosaic import generate_municipality

        m = generate_municipality(
            Path(args.out), seed=args.seed, districts=args.districts or len(CHONGQING_DISTRICTS),
            district_scale=args.district_scale,
        )
        print(f"sample municipality ({len(m.districts)} districts, seed {args.seed}) written to {m.out}")
        for layer, n in m.counts.items():
            print(f"  {layer:<24} {n:>12,}")
        return 0
    result = generate(Path(args.out), seed=args.seed, scale=args.scale)
    print(f"sample district ({args.scale}, seed {args.seed}) written to {result.out}")
    for layer, n in result.counts.items():
        print(f"  {layer:<24} {n:>10,}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from gis.catalog import load_project
    from gis.district import load_district
    from gis.export import write_csv
    from gis.landuse import check_district
    from gis.params import load_params
    from gis.precheck import check_inputs
    from gis.targets import validate_project

    load_params(_project(args.project))  # unknown keys / wrong types: one line, before reading layers
    validate_project(_project(args.project))  # targets, categories, target tables: before any layer is read
    proj = load_project(_project(args.project), confined=args.confined)
    check_inputs(proj)
    d = load_district(proj)
    scheme = check_district(d)  # land-use scheme declared or detected; ambiguous codes stop here
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(f"[bold]{d.name}[/bold]  metric CRS {d.crs.to_string()}" + ("  [yellow](sample data 样例数据)[/yellow]" if d.project.sample else ""))
    table = Table("layer 图层", "file 文件", "coords 坐标", "read 读取", "loaded 载入", "rejected 剔除")
    for role, infos in d.provenance.items():
        files = ", ".join(Path(i["file"]).name + (f":{i['layer']}" if i.get("layer") else "") for i in infos)
        coords = ", ".join(sorted({str(i.get("coords") or i.get("file_crs") or "file CRS") for i in infos}))
        rejected = int((d.rejects["layer"] == role).sum())
        n_read = d.read_counts.get(role)
        table.add_row(role, files, coords, "" if n_read is None else f"{n_read:,}", f"{d.loaded_counts.get(role, 0):,}" if role in d.loaded_counts else "raster/graph", f"{rejected:,}")
    console.print(table)
    if scheme is not None:
        console.print(scheme.message())
    if len(d.rejects):
        rt = Table("file", "row", "field", title="rejected rows 剔除记录")
        rt.add_column("reason", no_wrap=True)
        rt.add_column("value")
        rt.add_column("detail")
        for r in d.rejects.head(50).itertuples():
            rt.add_row(Path(r.file).name, str(r.row), str(r.field or ""), str(r.reason), str(r.value or "")[:40], str(r.detail or "")[:60])
        console.print(rt)
        if len(d.rejects) > 50:
            console.print(f"… and {len(d.rejects) - 50} more")
    if args.rejects:
        write_csv(d.rejects, Path(args.rejects))
    console.print(f"{len(d.rejects)} rejected row(s).")
    return 1 if (args.strict and len(d.rejects)) else 0


def cmd_run(args: argparse.Namespace, steps: list[str] | None = None) -> int:
    from gis.pipeline import run

    if steps is None and getattr(args, "steps", None) is not None:  # --steps "" = loading only
        steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    from gis.municipal import is_municipality

    if is_municipality(args.project):
        from gis.parallel import run_municipality

        res = run_municipality(args.project, args.out, engine=getattr(args, "engine", "single"),
                               scheduler=getattr(args, "scheduler", None), steps=steps)
        print(json.dumps({"engine": res["engine"], "districts": len(res["districts"]), **{k: res["municipal"][k] for k in ("sites", "incidents", "clusters", "cross_border_clusters")}}, ensure_ascii=False))
        print(f"outputs written to {args.out if '://' in args.out else Path(args.out).resolve()}")
        return 0
    if getattr(args, "engine", "single") == "dask":
        raise GisError("--engine dask partitions a municipality by district: give --project a folder with municipality.yaml")
    from gis.targets import validate_project

    validate_project(_project(args.project))  # a bad target stops the run before --out is written
    summary = run(_project(args.project), Path(args.out), steps=steps, progress=not args.quiet, confined=args.confined)
    keys = ["district", "sites_total", "incidents_total", "rejects"]
    print(json.dumps({k: summary.get(k) for k in keys}, ensure_ascii=False))
    print(f"outputs written to {Path(args.out).resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "sample":
            return cmd_sample(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "ledger":
            return cmd_ledger(args)
        if args.command == "rollup":
            from gis.municipal import rollup

            r = rollup(Path(args.runs), Path(args.out or args.runs))
            print(json.dumps({k: r.summary[k] for k in ("districts", "sites_total", "clusters_merged", "cross_border_clusters")}, ensure_ascii=False))
            return 0
        steps, _ = step_commands()[args.command]
        return cmd_run(args, steps=steps)
    except GisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
