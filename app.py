"""再生资源回收网络与非法拆解热点 · the Streamlit map app.

Start with ``streamlit run app.py``. Opens the bundled sample district; the sidebar
picks a district folder on this machine or an uploaded zip (layers + project.yaml).
A thin layer over :mod:`gis`: the same pipeline steps as ``gis run``
(:func:`gis.app_support.run_one_step`) and the same map (:mod:`gis.maps`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from gis import app_support as sup
from gis import confine
from gis import maps, settings
from gis.district import District
from gis.limits import MIB, upload_limits

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


@st.cache_data(show_spinner=False, max_entries=64)
def run_step_cached(
    step: str, pkey: str, skey: str, upstream: tuple[str, ...], _district: District, _context: dict[str, Any]
) -> sup.StepOutput:
    """One pipeline step, cached on (project, its parameters, its inputs' keys)."""
    tag = hashlib.sha1("|".join(upstream).encode()).hexdigest()[:8]
    return sup.run_one_step(step, _district, CACHE_ROOT / pkey / f"{step}-{skey}-{tag}", _context)


@st.cache_resource(show_spinner="绘制地图 Drawing the map …", max_entries=8)
def build_layers_cached(pkey: str, keys: tuple[str, ...], tiles: str, attribution: str, _district: District,
                        _context: dict[str, Any]) -> tuple[maps.MapOptions, list[maps.MapLayer]]:
    """The map's layers (display-ready data), cached per project, step results and basemap."""
    opt = maps.district_options(_district)
    if tiles:
        opt = maps.with_options(opt, basemaps=(maps.Basemap(tiles, attribution or tiles),))
    return opt, maps.build_layers(_district, _context, opt)


def fresh_map(district: District, opt: maps.MapOptions, layers: list[maps.MapLayer]) -> Any:
    """A new folium map of the cached layers, for every rerun.

    A folium ``Map`` must not be shared between reruns or sessions: rendering it
    (``st_folium``, ``save``) renames its elements, and a second render of the same
    object refers to variables that no longer exist — the map stays blank
    (``geo_json_… is not defined``) on reload, in a second session, after any widget.
    """
    return maps.render_folium(layers, opt, title=maps.district_title(district),
                              attributions=maps.district_attributions(district))


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
    cov = district.project.section("coverage")
    default_r = int(((cov.get("service_standards") or {}).get("collection_point") or {}).get("distance_m") or 500)
    radius = st.sidebar.slider("回收网点服务半径(米) Collection-point service radius (m)", 100, 2000, default_r, 50,
                               key="radius")
    hot = district.project.section("hotspots").get("clusters") or {}
    eps = st.sidebar.slider("聚集距离(米, 0=自动) Cluster distance (m, 0 = automatic)", 0, 1500,
                            int(hot.get("eps_m") or 0), 10, key="eps")
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
    default_k = int((cov.get("siting") or {}).get("k_new") or 10)
    st.session_state.setdefault("k_default", default_k)
    k = st.session_state.get("k_new_sites")
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


def run_steps(district: District, pkey: str, params: sup.AppParams) -> dict[str, sup.StepOutput]:
    overrides = params.overrides()
    d = sup.with_overrides(district, overrides)
    outputs: dict[str, sup.StepOutput] = {}
    keys: dict[str, str] = {}
    context: dict[str, Any] = {}
    for step in sup.registered_steps():
        if step == "maps":
            continue
        ok, _why = sup.step_available(step)
        if not ok:
            continue
        skey = sup.step_key(step, overrides)
        deps = sup.step_upstream(step)
        upstream = tuple(f"{s}:{keys[s]}" for s in deps if s in keys)
        keys[step] = f"{skey}-{hashlib.sha1('|'.join(upstream).encode()).hexdigest()[:6]}"
        with st.spinner(f"{sup.STEP_LABELS.get(step, step)} …"):
            out = run_step_cached(step, pkey, skey, upstream, d, context)
        outputs[step] = out
        context.update(out.context)
    st.session_state["_step_keys"] = tuple(sorted(f"{s}:{k}" for s, k in keys.items() if s in outputs))
    return outputs


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


def page_map(district: District, pkey: str, outputs: dict[str, sup.StepOutput], tiles: str, attribution: str) -> None:
    from streamlit_folium import st_folium

    summary = sup.merged_summary(outputs)
    cols = st.columns(4)
    cols[0].metric("网点 Sites", len(district.sites))
    cols[1].metric("事件记录 Incidents", 0 if district.incidents is None else len(district.incidents))
    cols[2].metric("剔除行 Rejected rows", len(district.rejects))
    cols[3].metric("违规 Violations", summary.get("violations_total", "—"))
    context = sup.merged_context(outputs)
    keys = st.session_state.get("_step_keys", ())
    opt, layers = build_layers_cached(pkey, keys, tiles, attribution, district, context)
    m = fresh_map(district, opt, layers)
    st.caption("图层 Layers: " + " · ".join(lay.title for lay in layers))
    st_folium(m, height=640, use_container_width=True, returned_objects=[], key="map")


def page_planner(outputs: dict[str, sup.StepOutput]) -> None:
    st.subheader("规划 Planner — 三级回收体系 three-tier network")
    summary = sup.merged_summary(outputs)
    if not panel_unavailable("compliance", outputs):
        net = sup.network_status(summary)
        show_table(net, "network_status")
    st.markdown("#### 目标完成情况 Targets (met / unmet)")
    if not panel_unavailable("coverage", outputs):
        show_table(sup.targets_table(summary), "targets")
        st.markdown("#### 各镇街覆盖率 Coverage by township")
        cov = sup.coverage_overview(outputs["coverage"])
        st.metric(cov.label, sup.format_share(cov.headline))
        show_table(cov.by_township, "coverage_by_township")
        st.markdown("#### 覆盖缺口 Coverage gaps")
        show_table(cov.gaps, "gaps")
    st.markdown("#### 推荐新址 Recommended new sites")
    step = "coverage"  # the coverage step chooses the new sites (MCLP)
    if not panel_unavailable(step, outputs):
        st.slider("新增网点数 k new sites", 1, 50, int(st.session_state.get("k_default") or 10), key="k_new_sites")
        show_table(sup.recommended_table(outputs[step]), "recommended")


def page_inspector(district: District, outputs: dict[str, sup.StepOutput]) -> None:
    st.subheader("巡查 Inspector — 非法拆解热点 illegal-dismantling hot spots")
    towns = sorted(district.townships["township"].dropna().astype(str).unique())
    c1, c2, c3 = st.columns(3)
    pick_towns = c1.multiselect("镇街 Township", towns, key="f_township")
    kinds = [k.value for k in maps.IncidentKind]
    pick_kinds = c2.multiselect("问题类型 Kind", kinds, format_func=lambda k: f"{maps.INCIDENT_KIND_ZH_STR[k]} {k}",
                                key="f_kind")
    since = c3.date_input("最近事件不早于 Last incident on or after", value=None, key="f_since")
    filt = sup.InspectorFilter(tuple(pick_towns), tuple(pick_kinds), since)
    st.markdown("#### 整治优先级 Priority list")
    if not panel_unavailable("hotspots", outputs):
        hot = sup.hotspot_overview(outputs["hotspots"], filt)
        cols = st.columns(3)
        cols[0].metric("聚集区 Clusters", hot.n_clusters)
        cols[1].metric("位于四山 In Four-Mountains zones", hot.n_in_four_mountains)
        cols[2].metric("反弹 Rebounds", hot.n_rebounds)
        show_table(hot.priority, "priority")
        st.markdown("#### 四山内聚集区 Clusters in the Four-Mountains zones")
        show_table(hot.in_four_mountains, "clusters_fm")
        st.markdown("#### 反弹 Rebounds (严防反弹)")
        show_table(hot.rebounds, "rebounds")
    st.markdown("#### 问题台账 Problem ledger (preview)")
    if not panel_unavailable("ledgers", outputs):
        ledger = sup.ledger_preview(outputs["ledgers"], filt)
        st.metric("问题数 Problems", 0 if ledger is None else len(ledger))
        show_table(ledger, "ledger")
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


def page_downloads(district: District, pkey: str, outputs: dict[str, sup.StepOutput], tiles: str, attribution: str) -> None:
    st.subheader("下载 Downloads")
    files = sup.download_files(outputs.values())
    context = sup.merged_context(outputs)
    keys = st.session_state.get("_step_keys", ())
    opt, layers = build_layers_cached(pkey, keys, tiles, attribution, district, context)
    tag = hashlib.sha1("|".join(keys + (tiles, attribution)).encode()).hexdigest()[:12]
    map_path = CACHE_ROOT / pkey / "map" / tag / "map.html"
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
    except Exception as exc:  # bad project: say what and where, no traceback
        st.error("项目无法读取 The project cannot be loaded: " + confine.escape_markdown(confine.redact(str(exc), Path(project))))
        return
    if getattr(district.project, "sample", False):
        st.warning(settings.SAMPLE_LABEL)
    params, tiles, attribution = choose_params(district)
    outputs = run_steps(district, pkey, params)
    st.sidebar.caption(
        "已运行 Analyses run: " + (", ".join(sup.STEP_LABELS.get(s, s) for s in outputs) or "—")
    )
    tab_map, tab_plan, tab_insp, tab_dl, tab_muni = st.tabs(
        ["地图 Map", "规划 Planner", "巡查 Inspector", "下载 Downloads", "市级汇总 Municipal"]
    )
    with tab_map:
        page_map(district, pkey, outputs, tiles, attribution)
    with tab_plan:
        page_planner(outputs)
    with tab_insp:
        page_inspector(district, outputs)
    with tab_dl:
        page_downloads(district, pkey, outputs, tiles, attribution)
    with tab_muni:
        page_municipal(project, "district")


main()
