"""再生资源回收网络与非法拆解热点 · the Streamlit map app.

Start with ``streamlit run app.py``. Opens the bundled sample district; the sidebar
picks a district folder on this machine or an uploaded zip (layers + project.yaml).
A thin layer over :mod:`gis`: the same pipeline steps as ``gis run``
(:func:`gis.app_support.run_one_step`) and the same map (:mod:`gis.maps`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import os
import tempfile
import threading
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from gis import app_support as sup
from gis import confine
from gis import maps, settings
from gis.district import District
from gis.limits import MIB, upload_limits

if TYPE_CHECKING:  # imported where used: the first map is drawn before the planner's modules load
    from gis import app_planner as pl
    from gis import coverage as cov

st.set_page_config(page_title="回收网络 GIS · Recycling network GIS", page_icon="♻", layout="wide")

CACHE_ROOT = Path(tempfile.gettempdir()) / "gis-app-cache"
UPLOAD_ROOT = CACHE_ROOT / "uploads"

# ---------------------------------------------------------------------------------
# Cached library calls
# ---------------------------------------------------------------------------------


@st.cache_resource(show_spinner="读取图层 Loading layers …", max_entries=4)
def load_district(project: str, key: str) -> District:
    """The district (cached per project folder state; ``key`` changes with its files)."""
    from gis.catalog import load_project
    from gis.district import load_district as _load

    # an uploaded project may read only files inside its own folder (gis.confine)
    return _load(load_project(project, confined=confine.is_inside(Path(project), UPLOAD_ROOT)))


def step_folder(step: str, pkey: str, skey: str, upstream: tuple[str, ...]) -> Path:
    """The cache folder one step run writes into."""
    tag = hashlib.sha1("|".join(upstream).encode()).hexdigest()[:8]
    return CACHE_ROOT / pkey / f"{step}-{skey}-{tag}"


@st.cache_resource(show_spinner=False, max_entries=64)
def run_step_cached(
    step: str, pkey: str, skey: str, upstream: tuple[str, ...], _district: District, _context: dict[str, Any],
    _background: Any = None,
) -> sup.StepOutput:
    """One pipeline step, cached on (project, its parameters, its inputs' keys).

    A resource cache (shared, never copied): the app only reads step results, and
    copying the coverage step's networks and tables on every rerun (``cache_data``
    pickles) cost about a second per rerun. ``_background``: the step already running
    in a worker process (:func:`start_background`).
    """
    return sup.run_one_step(step, _district, step_folder(step, pkey, skey, upstream), _context, _background)


@st.cache_resource(show_spinner=False)
def steps_started() -> tuple[set[tuple[str, str, str]], threading.Lock]:
    """(step, project, parameters) of the step runs this server has started, and the lock that
    guards the set (two sessions opening the same project start one worker, not two)."""
    return set(), threading.Lock()


def start_background(district: District, pkey: str, overrides: dict[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """Start, in worker processes, the steps that need only the loaded district and have not been
    started yet (``hotspots``), so they use the second core while compliance and coverage run here.
    A step started once is never started in a worker again (its result is cached, or being made)."""
    from gis.background import BackgroundStep
    from gis.steps import worker_steps

    started, lock = steps_started()
    jobs = {}
    for step in worker_steps(district):
        if step in skip or not sup.step_available(step)[0]:
            continue
        skey = sup.step_key(step, overrides)
        with lock:
            if (step, pkey, skey) in started:
                continue
            started.add((step, pkey, skey))
        jobs[step] = BackgroundStep(step, district, step_folder(step, pkey, skey, ()))
    return jobs


@st.cache_resource(show_spinner=False, max_entries=4)
def static_layers_cached(pkey: str, tiles: str, attribution: str, _district: District
                         ) -> tuple[maps.MapOptions, maps.StaticLayers]:
    """The layers no analysis changes (land use, zones, townships …), built once per project and basemap."""
    opt = maps.district_options(_district)
    if tiles:
        opt = maps.with_options(opt, basemaps=(maps.Basemap(tiles, attribution or tiles),))
    return opt, maps.static_layers(_district, opt)


@st.cache_resource(show_spinner="绘制地图 Drawing the map …", max_entries=8)
def build_layers_cached(pkey: str, keys: tuple[str, ...], tiles: str, attribution: str, _district: District,
                        _context: dict[str, Any]) -> tuple[maps.MapOptions, list[maps.MapLayer]]:
    """The map's layers (display-ready data), cached per project, step results and basemap."""
    opt, static = static_layers_cached(pkey, tiles, attribution, _district)
    return opt, maps.build_layers(_district, _context, opt, static=static)


def fresh_map(district: District, opt: maps.MapOptions, layers: list[maps.MapLayer]) -> Any:
    """A new folium map of the cached layers, for every rerun.

    A folium ``Map`` must not be shared between reruns or sessions: rendering it
    (``st_folium``, ``save``) renames its elements, and a second render of the same
    object refers to variables that no longer exist — the map stays blank
    (``geo_json_… is not defined``) on reload, in a second session, after any widget.
    """
    return maps.render_folium(layers, opt, title=maps.district_title(district),
                              attributions=maps.district_attributions(district))


@st.cache_resource(show_spinner=False, max_entries=4)
def site_features_cached(pkey: str, _district: District) -> Any:
    """The sites' rows of the clickable-feature table, built once per project."""
    from gis import app_planner as pl

    return pl.site_features(_district)


@st.cache_resource(show_spinner="准备规划数据 Preparing the planner …", max_entries=4)
def planner_base_cached(pkey: str, ckey: str, limit_m: float, _district: District, _compliance: Any,
                        _targets: list[dict[str, Any]], _networks: dict[str, Any],
                        _checked: Any = None) -> pl.PlannerBase:
    """Distances to the nearest site (one search up to the slider's maximum) and checked candidates
    (the coverage step's, when it ran)."""
    from gis import app_planner as pl

    return pl.planner_base(_district, _compliance, _targets, _networks, limit_m, candidate_check=_checked)


@st.cache_resource(show_spinner=False, max_entries=32)
def planner_at_cached(pkey: str, ckey: str, radius: float, _base: pl.PlannerBase, _district: District) -> pl.PlannerAt:
    """Coverage, gaps and the siting matrix at one radius (a threshold on the cached distances)."""
    from gis import app_planner as pl

    return pl.planner_at(_base, _district, radius)


@st.cache_resource(show_spinner=False, max_entries=64)
def what_if_cached(pkey: str, ckey: str, radius: float, k: int, _at: pl.PlannerAt, _base: pl.PlannerBase,
                   _district: District) -> tuple[Any, float]:
    """The best k new sites at this radius (one MCLP on the cached matrix), with their place context."""
    from gis import app_planner as pl
    from gis import coverage as cov

    rec, share = cov.what_if_sites(_at.inputs, k)
    return pl.place_context(rec, _district, _base.existing), share


@st.cache_resource(show_spinner=False, max_entries=64)
def reach_cached(pkey: str, ckey: str, radius: float, share: float, exact: bool, limit_s: float,
                 _at: pl.PlannerAt, _base: pl.PlannerBase, _district: District) -> cov.ReachAnswer:
    """Fewest new sites reaching ``share`` at this radius (greedy, or exact on request)."""
    from gis import app_planner as pl
    from gis import coverage as cov

    ans = cov.sites_to_reach(_at.inputs, share, exact=exact, time_limit_s=limit_s)
    ans.sites = pl.place_context(ans.sites, _district, _base.existing)
    return ans


@st.cache_resource(show_spinner=False, max_entries=64)
def section(pkey: str, name: str, _district: District) -> dict[str, Any]:
    """``project.section(name)`` read once per project (each call otherwise re-parses the YAML defaults)."""
    return _district.project.section(name)


def sec(district: District, name: str) -> dict[str, Any]:
    """The project's config section ``name`` (cached per project key)."""
    return section(str(st.session_state.get("_pkey", "")), name, district)


# ---------------------------------------------------------------------------------
# Sidebar: project and parameters
# ---------------------------------------------------------------------------------


def choose_project() -> Path | None:
    st.sidebar.header("项目 Project")
    source = st.sidebar.radio(
        "数据来源 Data source",
        ["样例区 Bundled sample" if not os.environ.get("GIS_PROJECT") else "默认项目 Default project (GIS_PROJECT)",
         "本地文件夹 Folder on this machine", "上传 Upload (zip)"],
        key="source",
    )
    if source.startswith(("样例", "默认")):
        # GIS_PROJECT=/path/to/district streamlit run app.py opens that district instead
        return Path(os.environ["GIS_PROJECT"]) if os.environ.get("GIS_PROJECT") else settings.SAMPLE_PROJECT_DIR
    if source.startswith("本地"):
        text = st.sidebar.text_input(
            "项目文件夹 Folder: project.yaml (区县 district), municipality.yaml (市 municipality) "
            "或各区县结果 or per-district results", key="project_path")
        if not text:
            st.info("请输入项目文件夹路径 Enter the path of a district project folder.")
            return None
        try:  # one answer for every path it will not open: nothing tells whether a server path exists
            return confine.open_local_folder(text, sup.is_openable_project, confine.local_roots())
        except confine.LocalFolderError as exc:
            st.error(confine.escape_markdown(exc))
            return None
    up = st.sidebar.file_uploader(
        f"项目压缩包 Project zip (≤ {upload_limits().max_zip_bytes // MIB} MiB: layers + project.yaml)", type=["zip"],
        key="upload",
    )
    if up is None:
        st.info("请上传项目压缩包 Upload a zip holding project.yaml and the layer files it names.")
        return None
    data = up.getvalue()
    digest = hashlib.sha1(data).hexdigest()[:16]
    if st.session_state.get("upload_digest") == digest and st.session_state.get("upload_project"):
        return Path(st.session_state["upload_project"])
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    sid = ctx.session_id if ctx is not None else "local"
    try:  # per-session folder: the previous upload and ended sessions' folders are deleted
        confine.prune_sessions(UPLOAD_ROOT, [s.session.id for s in st.runtime.get_instance()._session_mgr.list_sessions()])
    except Exception:  # runtime internals differ between Streamlit versions: the cap below still holds
        pass
    dest = confine.session_upload_dir(UPLOAD_ROOT, sid)
    try:
        yaml_path = sup.extract_project_zip(data, dest, name=up.name)
        confine.enforce_upload_cap(UPLOAD_ROOT, keep=dest)
        st.session_state["upload_digest"], st.session_state["upload_project"] = digest, str(yaml_path.parent)
        return yaml_path.parent
    except Exception as exc:  # shown to the user, never a traceback; escaped (Markdown), no server paths
        confine.drop_session_dir(UPLOAD_ROOT, sid)
        st.error("上传的项目无法使用 The upload cannot be used: " + confine.escape_markdown(confine.redact(str(exc), dest)))
        return None


def choose_params(district: District) -> tuple[sup.AppParams, str, str]:
    st.sidebar.header("参数 Parameters")
    cov = sec(district, "coverage")
    default_r = int(cov["service_standards"]["collection_point"]["distance_m"])  # typed, always present
    rs = sec(district, "app")["radius_slider_m"]
    radius = st.sidebar.slider("回收网点服务半径(米) Collection-point service radius (m)", int(rs["min"]), int(rs["max"]),
                               default_r, int(rs["step"]), key="radius")
    hot = sec(district, "hotspots").get("clusters") or {}
    es = sec(district, "app")["eps_slider_m"]
    eps = st.sidebar.slider("聚集距离(米, 0=自动) Cluster distance (m, 0 = automatic)", int(es["min"]), int(es["max"]),
                            int(hot.get("eps_m") or 0), int(es["step"]), key="eps")
    start = end = None
    inc = district.incidents
    if inc is not None and len(inc) and inc["date"].notna().any():
        lo, hi = inc["date"].min().date(), inc["date"].max().date()
        picked = st.sidebar.date_input("事件日期范围 Incident date range", (lo, hi), min_value=lo, max_value=hi,
                                       key="dates")
        if isinstance(picked, (tuple, list)) and len(picked) == 2:
            start, end = picked
            if (start, end) == (lo, hi):
                start = end = None
    default_k = int((cov.get("siting") or {}).get("k_new"))
    k = st.session_state.setdefault("k_new_sites", default_k)
    params = sup.AppParams(
        service_radius_m=None if radius == default_r else float(radius),
        cluster_distance_m=None if eps == int(hot.get("eps_m") or 0) else (float(eps) if eps > 0 else None),
        start=start if isinstance(start, date) else None,
        end=end if isinstance(end, date) else None,
        k_new_sites=int(k) if k and int(k) != default_k else None,
    )
    with st.sidebar.expander("底图 Basemap (需联网 online only)"):
        st.caption(
            "默认无底图，离线可用。图层为 WGS84 坐标；高德/腾讯(GCJ-02)、百度(BD-09)底图会偏移 100–700 米，"
            "请用天地图 `_w` 图层或 OSM。 Layers are WGS84: GCJ-02/BD-09 basemaps would be offset."
        )
        tiles = st.text_input("瓦片地址 Tile URL ({z}/{x}/{y})", key="tiles")
        attribution = st.text_input("版权声明 Attribution", key="attribution")
    return params, tiles.strip(), attribution.strip()


# ---------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------


def run_steps(district: District, pkey: str, params: sup.AppParams, skip: frozenset[str] = frozenset()
              ) -> dict[str, sup.StepOutput]:
    """Run the pipeline steps (cached) but those in ``skip`` (and the steps that read them). The
    service radius and k are not step parameters here: the planner answers them from cached distances
    and coverage matrix (:func:`planner_state`)."""
    overrides = dataclasses.replace(params, service_radius_m=None, k_new_sites=None).overrides()
    d = sup.with_overrides(district, overrides)
    outputs: dict[str, sup.StepOutput] = {}
    keys: dict[str, str] = {}
    context: dict[str, Any] = {}
    jobs = start_background(d, pkey, overrides, skip)
    try:
        for step in sup.registered_steps():
            if step == "maps":
                continue
            ok, _why = sup.step_available(step)
            deps = sup.step_upstream(step)
            if not ok or step in skip or any(s in skip for s in deps):
                continue
            skey = sup.step_key(step, overrides)
            upstream = tuple(f"{s}:{keys[s]}" for s in deps if s in keys)
            keys[step] = f"{skey}-{hashlib.sha1('|'.join(upstream).encode()).hexdigest()[:6]}"
            with st.spinner(f"{sup.STEP_LABELS.get(step, step)} …"):
                out = run_step_cached(step, pkey, skey, upstream, d, context, jobs.get(step))
            outputs[step] = out
            context.update(out.context)
    finally:  # a job not taken (the result was cached after all, or this run was interrupted) is stopped
        for job in jobs.values():
            job.cancel()  # a no-op for a job whose result was taken
    st.session_state["_step_keys"] = tuple(sorted(f"{s}:{k}" for s, k in keys.items() if s in outputs))
    return outputs


@dataclasses.dataclass
class PlannerState:
    """The planner's figures at the sidebar's radius and the page's k (shared by map and planner)."""

    base: pl.PlannerBase
    at: pl.PlannerAt
    k: int
    recommended: Any
    share_k: float
    key: str
    ckey: str


def planner_state(district: District, pkey: str, outputs: dict[str, sup.StepOutput]) -> PlannerState | None:
    """Coverage at the slider's radius and the best k new sites, from inputs computed once per project."""
    if "coverage" not in outputs or outputs["coverage"].error or "compliance" not in outputs:
        return None
    ctx = sup.merged_context(outputs)
    keys = dict(k.split(":", 1) for k in st.session_state.get("_step_keys", ()))
    ckey = f"{keys.get('compliance', '')}|{keys.get('coverage', '')}"
    app_cfg = sec(district, "app")
    try:
        checked = getattr(ctx.get("coverage"), "candidate_check", None)
        base = planner_base_cached(pkey, ckey, float(app_cfg["radius_slider_m"]["max"]), district, ctx.get("compliance"),
                                   list(outputs["coverage"].summary.get("targets") or []), ctx.get("networks") or {},
                                   checked)
    except Exception as exc:  # no population layer, no sites: the planner says so instead of a traceback
        st.session_state["_planner_error"] = f"{type(exc).__name__}: {exc}"
        return None
    radius = float(st.session_state.get("radius") or base.scope.standard.distance_m or 0)
    if base.scope.standard.mode == "district":
        radius = float(app_cfg["radius_slider_m"]["max"])
    at = planner_at_cached(pkey, ckey, radius, base, district)
    k = int(st.session_state.get("k_new_sites") or (base.siting_config.get("k_new") or app_cfg["k_slider"]["min"]))
    rec, share_k = (what_if_cached(pkey, ckey, radius, k, at, base, district) if at.inputs is not None
                    else (None, float("nan")))
    return PlannerState(base, at, k, rec, share_k, f"r{radius:g}-k{k}", ckey)


def panel_unavailable(step: str, outputs: dict[str, sup.StepOutput]) -> bool:
    """Say plainly that an analysis is not there (or failed); True when so."""
    label = sup.STEP_LABELS.get(step, step)
    if step not in outputs:
        st.info(f"{label}: {sup.NOT_AVAILABLE}")
        return True
    if outputs[step].error:
        st.warning(f"{label}: 无法运行 could not run — " + confine.escape_markdown(outputs[step].error))
        return True
    return False


def show_table(df: pd.DataFrame | None, key: str, empty: str = "无 None") -> None:
    if df is None or len(df) == 0:
        st.caption(empty)
        return
    df = pd.DataFrame(df.drop(columns=[c for c in ("geometry",) if c in df.columns]))
    st.dataframe(df, width="stretch", hide_index=True)


# ---------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=32)
def plan_layers_cached(pkey: str, ckey: str, plan_key: str, _district: District, _plan: PlannerState,
                       _opt: maps.MapOptions) -> list[maps.MapLayer]:
    """Service areas, gaps and recommended sites at the planner's radius and k (the only layers they change)."""
    from gis import app_planner as pl

    return maps.coverage_siting_layers(_district, pl.map_results(_plan.at, _plan.recommended), _opt)


def map_layers(district: District, pkey: str, outputs: dict[str, sup.StepOutput], plan: PlannerState | None,
               tiles: str, attribution: str) -> tuple[maps.MapOptions, list[maps.MapLayer], tuple[str, ...]]:
    """The map's layers: those of the step results (cached per step keys) with the coverage and siting
    layers at the planner's radius and k in their places (cached per radius and k)."""
    context = sup.merged_context(outputs)
    # keyed on the steps the map draws only: the ledgers' arrival (Inspector tab opened) rebuilds nothing
    drawn = sup.step_upstream("maps")
    keys = tuple(k for k in st.session_state.get("_step_keys", ()) if k.split(":", 1)[0] in drawn)
    if plan is None:
        opt, layers = build_layers_cached(pkey, keys, tiles, attribution, district, context)
        return opt, layers, keys
    base_ctx = {k: v for k, v in context.items() if k not in ("coverage", "siting")}
    opt, base = build_layers_cached(pkey, keys + ("no-coverage",), tiles, attribution, district, base_ctx)
    extra = plan_layers_cached(pkey, plan.ckey, plan.key, district, plan, opt)
    before = {"service_areas": "clusters", "gaps": "clusters", "recommended": "incidents"}
    layers = list(base)
    for lay in extra:
        at = next((i for i, b in enumerate(layers) if b.key == before.get(lay.key)), len(layers))
        layers.insert(at, lay)
    return opt, layers, keys + (plan.key,)


def page_map(district: District, pkey: str, outputs: dict[str, sup.StepOutput], plan: PlannerState | None,
             tiles: str, attribution: str) -> None:
    from streamlit_folium import st_folium

    from gis import app_planner as pl

    summary = sup.merged_summary(outputs)
    cols = st.columns(4)
    cols[0].metric("网点 Sites", len(district.sites))
    cols[1].metric("事件记录 Incidents", 0 if district.incidents is None else len(district.incidents))
    cols[2].metric("剔除行 Rejected rows", len(district.rejects))
    cols[3].metric("违规 Violations", summary.get("violations_total", "—"))
    opt, layers, _keys = map_layers(district, pkey, outputs, plan, tiles, attribution)
    m = fresh_map(district, opt, layers)
    if plan is not None:
        st.caption(f"服务半径 {plan.at.radius_m:.0f} 米 · 人口覆盖率 {sup.format_share(plan.at.coverage.population_covered_share)}"
                   f" ({plan.at.coverage.method}) · 推荐新址 ★ {plan.k} 个 · Service radius {plan.at.radius_m:.0f} m, "
                   f"{plan.k} recommended sites")
    st.caption("图层 Layers: " + " · ".join(lay.title for lay in layers))
    hot = sup.merged_context(outputs).get("hotspots")
    table = pl.feature_table(district, hot, plan.at if plan else None, plan.recommended if plan else None,
                             site_features_cached(pkey, district))
    focus = st.session_state.get("_map_focus")
    got = st_folium(m, height=640, use_container_width=True, returned_objects=["last_object_clicked"], key="map",
                    center=focus[:2] if focus else None, zoom=focus[2] if focus else None)
    map_selection(district, table, got)


def map_selection(district: District, table: pd.DataFrame, got: Any) -> None:
    """Clicked feature → its record, highlighted first in the table; a selected row → the map zooms to it."""
    from gis import app_planner as pl

    click = (got or {}).get("last_object_clicked") if isinstance(got, dict) else None
    picked = None
    if click and click.get("lat") is not None:
        picked = pl.nearest_feature(table, float(click["lat"]), float(click["lng"]), district.crs)
    if picked is not None:
        row = table.iloc[picked]
        st.markdown(f"**选中 Selected: {row['类型']} {row['编号']} {row['名称']} ({row['镇街']})**")
        table = pd.concat([table.iloc[[picked]], table.drop(table.index[picked])])
    view = table.drop(columns=["x", "y"]).round({"lat": 5, "lon": 5})
    # a Styler only to highlight a picked row: rendering one for every rerun cost ~0.15 s
    shown = view if picked is None else view.style.apply(
        lambda r: ["background-color:#fff3cd" if r.name == view.index[0] else "" for _ in r], axis=1)
    ev = st.dataframe(shown, width="stretch", hide_index=True, height=260, on_select="rerun",
                      selection_mode="single-row", key="map_table")
    rows = getattr(getattr(ev, "selection", None), "rows", None) or []
    if rows:
        r = view.iloc[rows[0]]
        focus = (float(r["lat"]), float(r["lon"]), 16)
        if st.session_state.get("_map_focus") != focus:
            st.session_state["_map_focus"] = focus
            st.rerun()


_RAG = {"green": ("#d4edda", "#2e7d32", "达标 met"), "amber": ("#fff3cd", "#b26a00", "规划后达标 met once planned"),
        "red": ("#fde0dd", "#c62828", "未达标 not met")}


def target_card(card: pl.TargetCard) -> None:
    """One red/amber/green target card (actual, target, shortfall, planned sites' contribution)."""
    bg, fg, word = _RAG[card.status]
    esc = html.escape
    st.markdown(
        f'<div class="gis-card gis-{card.status}" style="background:{bg};border-left:6px solid {fg};'
        f'padding:8px 12px;border-radius:4px;margin-bottom:8px;min-height:128px">'
        f'<div style="color:{fg};font-weight:bold">● {esc(word)}</div>'
        f'<div style="font-weight:bold">{esc(card.title)}</div>'
        f'<div>现状 Actual <b>{esc(card.actual_text)}</b> · 目标 Target <b>{esc(card.target_text)}</b></div>'
        f'<div>{esc(card.shortfall_text)}</div>'
        f'<div style="color:#555;font-size:0.9em">{esc(card.planned_text)}</div></div>',
        unsafe_allow_html=True)


def coverage_headline(plan: PlannerState) -> None:
    """One coverage figure with its method named, and the straight-line figure as an explicit comparison."""
    from gis import app_planner as pl

    c = plan.at.coverage
    std = c.standard
    tiers = "+".join(pl.TIER_ZH.get(t, t) for t in plan.base.scope.tiers)
    method = {"network": f"路网{pl.MODE_ZH.get(std.mode, '')}距离 network", "euclidean": "直线距离 straight-line",
              "district": "全区 district-wide"}[c.method]
    col1, col2 = st.columns(2)
    col1.metric(f"人口覆盖率 Population covered — {tiers} {std.distance_m or 0:.0f} 米, {method}",
                sup.format_share(c.population_covered_share))
    if c.method == "network":
        diff = (c.population_covered_share_euclidean - c.population_covered_share) * 100
        col2.metric("对比：按直线距离 Comparison: straight-line", sup.format_share(c.population_covered_share_euclidean),
                    f"{diff:+.1f} 个百分点 points vs network", delta_color="off")
        st.caption("本页所有覆盖率按道路网络距离计算(居民沿道路步行到最近网点)；直线距离忽略道路、河流和山体，"
                   "会高估覆盖，仅作对比。 Every share on this page is by road-network distance; the straight-line "
                   "figure ignores roads, rivers and ridges and overstates coverage — shown for comparison only.")


def what_if_panel(district: District, pkey: str, plan: PlannerState) -> None:
    """'To reach X % we need N new sites at these places' (or the best reachable share)."""
    from gis import app_planner as pl

    if plan.at.inputs is None:
        st.info("没有候选点 No candidate sites (siting.candidates)")
        return
    app_cfg = sec(district, "app")
    ks = app_cfg["k_slider"]
    target = plan.base.scope.target
    default_x = int(round(float((target or {}).get("target") or plan.base.siting_config.get("target_share") or 0) * 100))
    c1, c2 = st.columns(2)
    c1.slider("新增网点数 k new sites", int(ks["min"]), int(ks["max"]), key="k_new_sites")
    x = c2.number_input("目标覆盖率 Target share (%)", 1, 100, default_x, key="what_if_share")
    exact = st.toggle("精确求解(较慢) Exact solve (slower, HiGHS)", key="what_if_exact")
    ans = reach_cached(pkey, plan.ckey, plan.at.radius_m, x / 100, bool(exact),
                       float(app_cfg["what_if"]["time_limit_s"]), plan.at, plan.base, district)
    st.markdown("**" + pl.what_if_sentence(ans, plan.k, plan.share_k) + "**")
    st.markdown(f"##### 新增 {plan.k} 个网点的最优位置 Best {plan.k} new sites (地图上的 ★ on the map)")
    st.dataframe(pl.recommended_view(plan.recommended), width="stretch", hide_index=True)
    if ans.reachable and len(ans.sites):
        with st.expander(f"达到 {x}% 所需的 {len(ans.sites)} 个网点 The {len(ans.sites)} sites reaching {x} %"):
            st.dataframe(pl.recommended_view(ans.sites), width="stretch", hide_index=True)


def page_planner(district: District, pkey: str, outputs: dict[str, sup.StepOutput], plan: PlannerState | None) -> None:
    from gis import app_planner as pl

    st.subheader("规划看板 Planner — 三级回收体系 three-tier network")
    summary = sup.merged_summary(outputs)
    if panel_unavailable("coverage", outputs):
        return
    if plan is None:
        st.warning("规划数据无法准备 The planner cannot be prepared: "
                   + confine.escape_markdown(st.session_state.get("_planner_error", "")))
        return
    coverage_headline(plan)
    st.markdown("#### 目标完成情况 Targets")
    c, cp = plan.at.coverage, plan.at.coverage_planned
    cards = pl.target_cards(summary.get("targets") or [], radius_m=c.standard.distance_m, mode=c.standard.mode,
                            coverage_now=(c.population_covered_share, cp.population_covered_share))
    cols = st.columns(3)
    for i, card in enumerate(cards):
        with cols[i % 3]:
            target_card(card)
    st.markdown("#### 各镇街覆盖率 Coverage by township")
    chart = pl.township_chart(c)
    st.altair_chart(township_bars(chart), width="stretch")
    with st.expander("各镇街明细 Table by township (路网 network / 直线 straight-line)"):
        st.dataframe(chart, width="stretch", hide_index=True)
    st.markdown("#### 新增网点测算 What-if: new sites")
    what_if_panel(district, pkey, plan)
    st.markdown("#### 覆盖缺口 Coverage gaps")
    gaps = plan.at.gaps
    show_table(None if not len(gaps) else pd.DataFrame({
        "排名 Rank": gaps["rank"], "镇街 Township": gaps["township"],
        "未覆盖人口 Uncovered residents": gaps["population"].round().astype("int64"),
        "面积 km²": gaps["area_km2"].round(2)}), "gaps")
    if not panel_unavailable("compliance", outputs):
        with st.expander("三级网络完整性 Three-tier network completeness"):
            show_table(sup.network_status(summary), "network_status")


def township_bars(chart: pd.DataFrame) -> Any:
    """Horizontal bars, least covered township first, one labelled row per township."""
    import altair as alt

    return alt.Chart(chart).mark_bar(color="#1f6fb2").encode(
        y=alt.Y("镇街:N", sort=alt.EncodingSortField("覆盖率 %", order="ascending"), title=None,
                axis=alt.Axis(labelLimit=200, labelFontSize=12)),
        x=alt.X("覆盖率 %:Q", title="人口覆盖率 % Population covered", scale=alt.Scale(domain=[0, 100])),
        tooltip=["镇街", "覆盖率 %", "直线距离 %", "人口", "覆盖人口"],
    ).properties(height=26 * len(chart) + 20)


def inspector_filters(district: District) -> sup.InspectorFilter:
    """Township, kind, date window and 四山 level: one filter for the map, the list and the ledger."""
    towns = sorted(district.townships["township"].dropna().astype(str).unique())
    c1, c2, c3, c4 = st.columns(4)
    pick_towns = c1.multiselect("镇街 Township", towns, key="f_township")
    kinds = [k.value for k in maps.IncidentKind]
    pick_kinds = c2.multiselect("问题类型 Kind", kinds, format_func=lambda k: f"{maps.INCIDENT_KIND_ZH_STR[k]} {k}",
                                key="f_kind")
    picked = c3.date_input("事件日期 Incident dates (起 from – 止 to)", value=(), key="f_dates")
    since, until = (tuple(picked) + (None, None))[:2] if isinstance(picked, (tuple, list)) else (picked, None)
    levels = c4.multiselect("四山级别 Four-Mountains level", list(sup.ZONE_ZH), format_func=lambda v: sup.ZONE_ZH[v],
                            key="f_level")
    return sup.InspectorFilter(tuple(pick_towns), tuple(pick_kinds), since, until, tuple(levels))


@st.cache_resource(show_spinner=False, max_entries=16)
def inspector_layers_cached(pkey: str, keys: tuple[str, ...], fkey: str, _filt: sup.InspectorFilter,
                            _district: District, _clusters: pd.DataFrame) -> tuple[maps.MapOptions, list[maps.MapLayer]]:
    """Zones, townships, the filtered clusters and incidents (the inspector's map)."""
    d = _district
    if d.incidents is not None:
        d = dataclasses.replace(d, incidents=_filt.incidents(d.incidents))
    opt = maps.district_options(d)
    layers = maps.build_layers(d, {"hotspots": {"priority": _clusters}}, opt)
    return opt, [lay for lay in layers if not lay.key.startswith(("site", "landuse", "candidate", "tier"))]


def page_inspector(district: District, pkey: str, outputs: dict[str, sup.StepOutput], tiles: str, attribution: str) -> None:
    from streamlit_folium import st_folium

    st.subheader("巡查 Inspector — 非法拆解热点 illegal-dismantling hot spots")
    filt = inspector_filters(district)
    if panel_unavailable("hotspots", outputs):
        return
    clusters = sup.filtered_clusters(outputs["hotspots"], filt)
    hot = sup.hotspot_overview(outputs["hotspots"], filt)
    cols = st.columns(3)
    cols[0].metric("聚集区 Clusters", hot.n_clusters)
    cols[1].metric("位于四山 In Four-Mountains zones", hot.n_in_four_mountains)
    cols[2].metric("反弹 Rebounds", hot.n_rebounds)
    left, right = st.columns([1, 1])
    with left:
        keys = tuple(st.session_state.get("_step_keys", ()))
        opt, layers = inspector_layers_cached(pkey, keys, repr(filt), filt, district, clusters)
        st_folium(fresh_map(district, opt, layers), height=520, use_container_width=True, returned_objects=[],
                  key="inspector_map")
    with right:
        st.markdown("#### 整治优先级 Priority list")
        show_table(hot.priority, "priority")
    with st.expander(f"四山内聚集区 Clusters in the Four-Mountains zones ({hot.n_in_four_mountains})"):
        show_table(hot.in_four_mountains, "clusters_fm")
    with st.expander(f"反弹 Rebounds 严防反弹 ({hot.n_rebounds})"):
        show_table(hot.rebounds, "rebounds")
    st.markdown("#### 问题台账 Problem ledger (筛选后 filtered)")
    if not panel_unavailable("ledgers", outputs):
        ledger = sup.ledger_preview(outputs["ledgers"], filt, clusters)
        st.metric("问题数 Problems", 0 if ledger is None else len(ledger))
        if filt.kinds or filt.since or filt.until:
            st.caption("按问题类型或日期筛选时只保留聚集区问题(网点问题没有事件日期和类型)。 A kind or date filter keeps "
                       "cluster problems only (site problems carry no incident date or kind).")
        show_table(ledger, "ledger")
        tag = hashlib.sha1(repr((keys, filt)).encode()).hexdigest()[:12]
        path = CACHE_ROOT / pkey / "inspector" / tag / "problem_ledger.xlsx"
        if not path.exists():
            sup.filtered_ledger_file(outputs["ledgers"], filt, clusters, path.parent,
                                     sample=bool(getattr(district.project, "sample", False)))
        if path.exists():
            st.download_button(f"⬇ 下载筛选后的问题台账 Filtered problem ledger ({0 if ledger is None else len(ledger)} 条, xlsx)",
                               path.read_bytes(), file_name="problem_ledger.xlsx", key="dl_inspector_ledger")
    _campaign_panel(district)


def _campaign_panel(district: District) -> None:
    """Campaign progress by 镇街 / department, overdue list, status change with evidence (gis.campaign)."""
    from gis import campaign
    from gis._errors import GisError

    try:
        tabs = campaign.inspector_tables(district.project.root)
    except GisError as exc:
        st.warning("专项整治 Campaign: " + confine.escape_markdown(str(exc)))
        return
    st.markdown("#### 专项整治进度 Campaign progress")
    c1, c2 = st.columns(2)
    with c1:
        show_table(tabs["by_township"], "campaign_town", "尚无台账 No campaign store yet (run the ledgers step)")
    with c2:
        show_table(tabs["by_department"], "campaign_dept")
    st.markdown("#### 逾期问题 Overdue")
    show_table(tabs["overdue"], "campaign_overdue")
    if not len(tabs["ledger"]):
        return
    with st.form("campaign_edit"):
        st.markdown("#### 更新整改状态 Change a problem's status (联络员 only)")
        a, b, c = st.columns(3)
        number = a.selectbox("问题编号", tabs["ledger"]["问题编号"].tolist())
        status = b.selectbox("整改状态", ["未整改", "整改中", "已整改", "已销号"])
        done = c.date_input("完成时间 (已整改/已销号)", value=None)
        evidence = st.text_area("整改情况 / 证据 Evidence")
        n1, n2 = st.columns(2)
        name, unit = n1.text_input("姓名 Name"), n2.text_input("单位 Unit")
        if st.form_submit_button("提交 Submit"):
            try:
                r = campaign.authorised_edit(district.project.root, number, status=status, evidence=evidence,
                                             name=name, unit=unit, done_date=done.isoformat() if done else None)
                st.success(f"{r['number']}: {r['old']} → {r['new']}")
            except GisError as exc:
                st.error(confine.escape_markdown(str(exc)))


def page_downloads(district: District, pkey: str, outputs: dict[str, sup.StepOutput], plan: PlannerState | None,
                   tiles: str, attribution: str) -> None:
    st.subheader("下载 Downloads")
    st.caption("表格与图层按项目参数计算；地图 map.html 按当前服务半径和新增网点数绘制。 Workbooks and layers use the "
               "project's parameters; map.html shows the current radius and k.")
    files = sup.download_files(outputs.values())
    for o in outputs.values():
        if o.write_error is not None:  # e.g. a full disk: say which step's files are missing, no traceback
            st.error("文件写入失败 Writing the files failed — " + confine.escape_markdown(o.write_error))
    opt, layers, keys = map_layers(district, pkey, outputs, plan, tiles, attribution)
    tag = hashlib.sha1("|".join(keys + (tiles, attribution)).encode()).hexdigest()[:12]
    map_path = CACHE_ROOT / pkey / "map" / tag / "map.html"
    # drawn on request: writing the whole map on every slider change would slow every rerun
    if map_path.exists() or st.button("生成地图文件 Make map.html (当前参数 current parameters)", key="make_map_html"):
        if not map_path.exists():
            maps.save_map_html(fresh_map(district, opt, layers), map_path)
        files.append(map_path)
    if not files:
        st.info(sup.NOT_AVAILABLE)
    for f in files:
        label = sup.FILE_LABELS.get(f.name, f.name)
        st.download_button(f"⬇ {label} ({f.stat().st_size / 1024:.0f} KB)", f.read_bytes(), file_name=f.name,
                           key=f"dl_{f.name}")


@st.cache_resource(show_spinner="市级汇总 Rolling up the districts …", max_entries=4)
def rollup_cached(runs: str, key: str) -> Any:
    """The roll-up of per-district results (cached per folder state; written under the app cache)."""
    from gis.municipal import rollup

    return rollup(runs, CACHE_ROOT / "municipal" / key / "rollup")


def page_municipal(project: Path | None, kind: str) -> None:
    st.subheader("市级汇总 Municipal roll-up — 各区县目标、覆盖、四山聚集区、部门违规")
    if project is None or kind == "district":
        st.info(sup.NEEDS_MUNICIPALITY)
        return
    key = sup.folder_key(project)
    runs = project
    if kind == "municipality":
        from gis.municipal import load_index

        index = load_index(project)
        st.caption(f"{index.get('name', '')} · {len(index['districts'])} 区县 districts ({project / 'municipality.yaml'})")
        runs = CACHE_ROOT / "municipal" / key / "runs"
        if not sup.municipal_runs_complete(project, runs):
            st.info("各区县尚未分析 The districts have not been analysed yet: 每个区县运行一次 `gis run` "
                    f"({', '.join(sup.MUNICIPAL_STEPS)})，大的市可能需要较长时间 — may take long for a large municipality.")
            if not st.button(f"运行各区县分析 Run the {len(index['districts'])} district analyses", key="run_municipal"):
                return
            bar = st.progress(0.0)
            try:
                sup.municipal_district_runs(
                    project, runs, on_district=lambda i, n, name: bar.progress(i / n, text=f"{name} ({i + 1}/{n})"))
            except Exception as exc:  # a district's data cannot be analysed: say which, no traceback
                st.error("区县分析失败 A district analysis failed: " + confine.escape_markdown(exc))
                return
            bar.progress(1.0, text="完成 Done")
    else:
        st.caption(f"各区县结果 Per-district results: {project}")
    try:
        r = rollup_cached(str(runs), key)
    except Exception as exc:  # unreadable results: say what and where
        st.error("无法汇总 The roll-up failed: " + confine.escape_markdown(exc))
        return
    ov = sup.municipal_overview(r)
    h = ov.headline
    if h.get("sample"):
        st.warning(settings.SAMPLE_LABEL)
    cols = st.columns(4)
    cols[0].metric("区县 Districts", h["districts"])
    cols[1].metric("网点 Sites", h["sites_total"])
    cols[2].metric("事件记录 Incidents", h["incidents_total"])
    cols[3].metric("违规 Violations", h["violations_total"])
    cols = st.columns(3)
    cols[0].metric("全市人口覆盖率 Population covered (municipality)", sup.format_share(h["population_covered_share"]))
    cols[1].metric("聚集区(合并后) Clusters (merged)", h["clusters_merged"])
    cols[2].metric("跨区聚集区 Cross-border clusters", h["cross_border_clusters"])
    st.markdown("#### 各区县目标完成 Targets met per district")
    show_table(ov.targets_by_district, "muni_targets_by_district")
    with st.expander("各区县指标明细 Every target of every district"):
        show_table(ov.targets, "muni_targets")
    st.markdown("#### 各区县覆盖率 Coverage by district")
    show_table(ov.coverage, "muni_coverage")
    st.markdown("#### 四山聚集区 Clusters per Four-Mountains range (缙云山 · 中梁山 · 铜锣山 · 明月山)")
    show_table(ov.ranges, "muni_ranges")
    st.markdown(f"#### 跨区聚集区 Cross-border clusters (合并距离 merged within {h['merge_distance_m']:.0f} m)")
    show_table(ov.cross_border, "muni_cross_border")
    st.markdown("#### 部门违规 Violations by department")
    show_table(ov.departments, "muni_departments")
    with st.expander("按区县 By district"):
        show_table(ov.departments_by_district, "muni_departments_by_district")
    xlsx = CACHE_ROOT / "municipal" / key / "rollup" / "municipal_summary.xlsx"
    if xlsx.exists():
        st.download_button(f"⬇ 市级汇总表 Municipal summary (municipal_summary.xlsx, {xlsx.stat().st_size / 1024:.0f} KB)",
                           xlsx.read_bytes(), file_name="municipal_summary.xlsx", key="dl_municipal_summary")


# ---------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def warm_projects() -> set[str]:
    """Project keys whose analyses this server has run (their results are cached)."""
    return set()


def base_map_first(district: District, pkey: str, tab: Any, tiles: str, attribution: str) -> Any:
    """On a project's first run, draw the base layers at once while the analyses run (replaced after)."""
    if pkey in warm_projects():
        return None
    from streamlit_folium import st_folium

    with tab:
        slot = st.empty()
        with slot.container():
            st.info("正在分析，先显示基础图层 Analyses running — base layers (zones, townships, sites, incidents) "
                    "first; the full map follows.")
            opt, layers = build_layers_cached(pkey, ("base",), tiles, attribution, district, {})
            st_folium(fresh_map(district, opt, layers), height=640, use_container_width=True, returned_objects=[],
                      key="map_base")
    return slot


def main() -> None:
    st.title("再生资源回收网络 GIS")
    st.caption("Recycling-network planning and illegal-dismantling hot spots · 三级回收体系 · 四山管控 · 问题台账")
    project = choose_project()
    if project is None:
        return
    kind = sup.project_kind(project)
    if kind != "district":  # a municipality or a folder of district results: the roll-up only
        page_municipal(project, kind)
        return
    try:
        pkey = sup.project_key(project)
        district = load_district(str(project), pkey)
        st.session_state["_pkey"] = pkey
    except Exception as exc:  # bad project: say what and where, no traceback
        st.error("项目无法读取 The project cannot be loaded: " + confine.escape_markdown(confine.redact(str(exc), Path(project))))
        return
    if getattr(district.project, "sample", False):
        st.warning(settings.SAMPLE_LABEL)
    params, tiles, attribution = choose_params(district)
    # lazy tabs: only the open tab's page runs (a hidden map is never drawn into a 0×0 frame, and a
    # slider change does not redraw pages nobody looks at)
    tab_map, tab_plan, tab_insp, tab_dl, tab_muni = st.tabs(
        ["地图 Map", "规划 Planner", "巡查 Inspector", "下载 Downloads", "市级汇总 Municipal"], key="tab", on_change="rerun"
    )
    early = base_map_first(district, pkey, tab_map, tiles, attribution) if tab_map.open is not False else None
    # the ledgers (问题台账, campaign store) serve the Inspector and Downloads tabs only: the map and the
    # planner do not wait for them; they run (once, cached) when one of those tabs is opened
    ledgers_wanted = tab_insp.open is not False or tab_dl.open is not False
    outputs = run_steps(district, pkey, params, skip=frozenset() if ledgers_wanted else frozenset({"ledgers"}))
    warm_projects().add(pkey)
    st.sidebar.caption(
        "已运行 Analyses run: " + (", ".join(sup.STEP_LABELS.get(s, s) for s in outputs) or "—")
        + ("" if ledgers_wanted else " · 台账在「巡查」「下载」页生成 Ledgers are made on the Inspector and "
           "Downloads tabs")
    )
    plan = planner_state(district, pkey, outputs) if tab_insp.open is not True and tab_muni.open is not True else None
    if tab_map.open is not False:
        with tab_map:
            if early is not None:
                early.empty()
            page_map(district, pkey, outputs, plan, tiles, attribution)
    if tab_plan.open is not False:
        with tab_plan:
            page_planner(district, pkey, outputs, plan)
    if tab_insp.open is not False:
        with tab_insp:
            page_inspector(district, pkey, outputs, tiles, attribution)
    if tab_dl.open is not False:
        with tab_dl:
            page_downloads(district, pkey, outputs, plan, tiles, attribution)
    if tab_muni.open is not False:
        with tab_muni:
            page_municipal(project, "district")

main()
