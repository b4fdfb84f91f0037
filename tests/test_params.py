"""Typed parameters (gis.params): every key from layers/*.yaml, misspelt keys refused in one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from gis import params
from gis._errors import CatalogError
from gis.catalog import load_yaml


def _edit(project: Path, change) -> Path:
    path = project if project.suffix == ".yaml" else project / "project.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(raw)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return project


def _keys(cls: type, data: dict, prefix: str = "") -> tuple[set[str], set[str]]:
    """(dotted dataclass field paths, dotted YAML key paths) of nested sections."""
    hints = params._hints(cls)
    fields_, keys = set(), set()
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING and f.name not in data:
            continue  # an optional key (default None) the bundled file leaves out
        fields_.add(prefix + f.name)
        tp = hints[f.name]
        if isinstance(tp, type) and issubclass(tp, params.Section) and isinstance(data.get(f.name), dict):
            a, b = _keys(tp, data[f.name], prefix + f.name + ".")
            fields_ |= a
            keys |= b
    for k, v in data.items():
        keys.add(prefix + k)
    return fields_, keys


@pytest.mark.parametrize("name", sorted(params.SECTIONS))
def test_every_field_is_in_the_yaml_and_every_yaml_key_is_a_field(name):
    data = load_yaml(params.section_file(name))
    fields_, keys = _keys(params.SECTIONS[name], data)
    assert fields_ == keys
    built = params.build_section(name)
    assert dataclasses.is_dataclass(built) and built.__dataclass_params__.frozen


def test_sample_parameters_are_typed_and_read_only(sample_project):
    p = params.load_params(sample_project)
    std = p.coverage.service_standards["collection_point"]
    assert std.distance_m == load_yaml(params.section_file("coverage"))["service_standards"]["collection_point"]["distance_m"]
    assert p.coverage["siting"]["k_new"] == p.coverage.siting.k_new  # the mapping bridge
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.coverage.siting.k_new = 3  # type: ignore[misc]
    raw = yaml.safe_load((sample_project / "project.yaml").read_text(encoding="utf-8"))
    assert [t.name for t in p.targets] == [t["name"] for t in raw["targets"]]
    assert p.outside_tolerance_m == raw["outside_tolerance_m"]


def test_the_slider_radius_is_a_typed_field(sample_project):
    p = params.load_params(sample_project).with_service_radius(300)
    stds = p.coverage.service_standards
    assert stds["collection_point"].distance_m == stds["drop_off_point"].distance_m == 300.0
    assert stds["transfer_station"].distance_m == params.load_params(sample_project).coverage.service_standards[
        "transfer_station"].distance_m


def test_project_override_merges_over_the_defaults(tiny_project):
    _edit(tiny_project, lambda r: r.update(hotspots={"clusters": {"eps_m": 120}}))
    p = params.load_params(tiny_project)
    assert p.hotspots.clusters.eps_m == 120.0
    default = load_yaml(params.section_file("hotspots"))["clusters"]["min_cluster_size"]
    assert p.hotspots.clusters.min_cluster_size == default


BAD = [
    # (change to project.yaml, dotted key named, nearest valid key named)
    (lambda r: r.update(outside_tolerence_m=10), "outside_tolerence_m", "outside_tolerance_m"),
    (lambda r: r.update(target=[]), "target", "targets"),
    (lambda r: r.update(hotspots={"clusterz": {"eps_m": 3}}), "hotspots.clusterz", "clusters"),
    (lambda r: r.update(coverage={"siting": {"k_nwe": 3}}), "coverage.siting.k_nwe", "k_new"),
    (lambda r: r.update(coverage={"service_standards": {"collection_point": {"distance": 300}}}),
     "coverage.service_standards.collection_point.distance", "distance_m"),
    (lambda r: r.update(compliance={"linkage": {"point_max_distanse_m": 1}}), "compliance.linkage.point_max_distanse_m",
     "point_max_distance_m"),
    (lambda r: r.update(compliance={"ledgr": {}}), "compliance.ledgr", "ledger"),
    (lambda r: r.update(map={"max_plain_marker": 3}), "map.max_plain_marker", "max_plain_markers"),
    (lambda r: r.update(targets=[{"name": "x", "metric": "count", "tiers": ["collection_point"], "targt": 1}]),
     "targets[0].targt", "target"),
    (lambda r: r["layers"]["sites"].update(encodng="gb18030"), "layers.sites.encodng", "encoding"),
    (lambda r: r["layers"].update(site=r["layers"]["sites"]), "layers.site", "sites"),
    (lambda r: r.update(crs={"metrc": "auto"}), "crs.metrc", "metric"),
    (lambda r: r.update(categories={"my_points": {"label_zh": "点", "tiers": ["collection_point"], "unti": "site"}}),
     "categories.my_points.unti", "unit"),
    (lambda r: r.update(target_tables={"tonnage": {"file": "t.csv", "colums": {}}}), "target_tables.tonnage.colums",
     "columns"),
]


@pytest.mark.parametrize("change,key,nearest", BAD, ids=[b[1] for b in BAD])
def test_unknown_keys_are_refused_naming_file_path_and_nearest_key(tiny_project, change, key, nearest, capsys):
    from gis.cli import main

    _edit(tiny_project, change)
    assert main(["validate", "--project", str(tiny_project)]) == 2  # `gis validate`: one line, exit 2
    msg = capsys.readouterr().err.strip()
    assert "\n" not in msg and "project.yaml" in msg and f"'{key}'" in msg and f"'{nearest}'" in msg
    assert "Traceback" not in msg


WRONG_TYPES = [
    (lambda r: r.update(targets=[{"name": "x", "metric": "count", "tiers": ["collection_point"], "target": "abc"}]),
     "targets[0].target"),
    (lambda r: r.update(coverage={"service_standards": {"collection_point": {"distance_m": "abc"}}}),
     "coverage.service_standards.collection_point.distance_m"),
    (lambda r: r.update(hotspots={"gistar": {"fdr": "yes"}}), "hotspots.gistar.fdr"),
    (lambda r: r.update(coverage={"siting": {"k_new": 2.5}}), "coverage.siting.k_new"),
    (lambda r: r.update(map={"width": [1]}), "map.width"),
    (lambda r: r.update(compliance={"ledger": {"verdicts_in_ledger": "prohibited"}}), "compliance.ledger.verdicts_in_ledger"),
]


@pytest.mark.parametrize("change,key", WRONG_TYPES, ids=[w[1] for w in WRONG_TYPES])
def test_wrong_types_are_refused_in_one_line(tiny_project, change, key):
    _edit(tiny_project, change)
    with pytest.raises(CatalogError) as err:
        params.load_params(tiny_project)
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)


def test_gis_validate_prints_one_line_and_exits_2(tiny_project, capsys):
    from gis.cli import main

    _edit(tiny_project, lambda r: r.update(hotspots={"clusterz": {}}))
    assert main(["validate", "--project", str(tiny_project)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "hotspots.clusterz" in err and "clusters" in err and "Traceback" not in err


def test_app_sliders_and_project_overrides_give_the_same_typed_parameters(sample_project):
    from datetime import date

    from gis import app_support as sup
    from gis.district import load_district

    ap = sup.AppParams(service_radius_m=350, cluster_distance_m=150, start=date(2023, 1, 1), k_new_sites=4)
    d = sup.with_overrides(load_district(sample_project), ap.overrides())
    assert params.params_for(d.project) == ap.apply(params.load_params(sample_project))


def test_dask_engine_parameters_come_from_the_yaml():
    e = params.engine_params()
    cov = load_yaml(params.section_file("coverage"))
    hs = load_yaml(params.section_file("hotspots"))
    mu = load_yaml(params.section_file("municipal"))
    assert e["coverage_radius_m"] == cov["service_standards"]["collection_point"]["distance_m"]
    assert e["band_cells"] == hs["gistar"]["band_cells"] and e["min_samples"] == hs["clusters"]["min_cluster_size"]
    assert e["hex_spacing_m"] == mu["hex_spacing_m"] and e["eps_m"] == mu["eps_m"]
    p = params.default_params().with_service_radius(250)
    assert params.engine_params(p)["coverage_radius_m"] == 250.0


#: layers/*.yaml files that are tables checked by their own reader, not parameter sections.
TABLES = {
    "aliases.yaml": "gis.catalog (column/value aliases)",
    "campaign.yaml": "gis.campaign.campaign_params (typed CampaignParams, unknown keys refused)",
    "disposition.yaml": "gis.campaign_disposition.disposition_params (typed DispositionParams)",
    "categories.yaml": "gis.targets.load_categories",
    "departments.yaml": "gis.departments.DepartmentTable.load",
    "landuse_canonical.yaml": "gis.landuse",
    "landuse_gbt21010_2017.yaml": "gis.landuse",
    "landuse_sandiao.yaml": "gis.landuse",
    "landuse_yongdi_yonghai_2023.yaml": "gis.landuse",
}


def test_every_layers_file_is_a_typed_section_or_a_checked_table():
    """A new layers/<name>.yaml (e.g. campaign.yaml) must be registered in params.SECTIONS."""
    from gis import settings

    files = {p.name for p in settings.LAYERS_DIR.glob("*.yaml")}
    untyped = files - {f"{n}.yaml" for n in params.SECTIONS} - set(TABLES)
    assert untyped == set(), "add a frozen dataclass to gis.params.SECTIONS for each"


def _misspell(key: str) -> str:
    return key[:-1] + ("x" if key[-1] != "x" else "y") if len(key) > 3 else key + "_x"


def _first_mapping_path(data: dict, cls: type) -> list[str]:
    """Path to a key two levels deep when the first field is a nested section, else the first key."""
    hints = params._hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and issubclass(tp, params.Section) and isinstance(data.get(f.name), dict):
            return [f.name, *_first_mapping_path(data[f.name], tp)]
    return [next(iter(data))]


@pytest.mark.parametrize("name", sorted(params.SECTIONS))
def test_unknown_key_in_each_layers_file_is_one_line_naming_path_and_nearest(name, tmp_path, monkeypatch):
    """Every section's own layers/<name>.yaml: a misspelt (nested) key is refused in one line."""
    import shutil

    from gis import settings

    layers = tmp_path / "layers"
    shutil.copytree(settings.LAYERS_DIR, layers)
    data = load_yaml(layers / f"{name}.yaml")
    path = _first_mapping_path(data, params.SECTIONS[name])
    block = data
    for k in path[:-1]:
        block = block[k]
    bad = _misspell(path[-1])
    block[bad] = block.pop(path[-1])
    (layers / f"{name}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(settings, "LAYERS_DIR", layers)
    with pytest.raises(CatalogError) as err:
        params.default_params()
    msg = str(err.value)
    dotted = ".".join([*path[:-1], bad])
    assert "\n" not in msg and f"{name}.yaml" in msg and f"'{dotted}'" in msg and f"'{path[-1]}'" in msg


@pytest.mark.parametrize("name", sorted(set(params.SECTIONS) - set(params.NOT_PROJECT_SECTIONS)))
def test_unknown_key_in_each_project_section_fails_gis_validate_in_one_line(name, tiny_project, capsys):
    """Every ``<section>:`` block a project may write: `gis validate` prints file, key path and nearest key."""
    from gis.cli import main

    data = load_yaml(params.section_file(name))
    path = _first_mapping_path(data, params.SECTIONS[name])
    bad = _misspell(path[-1])
    block: dict = {bad: data_at(data, path)}
    for k in reversed(path[:-1]):
        block = {k: block}
    _edit(tiny_project, lambda r: r.update({name: block}))
    assert main(["validate", "--project", str(tiny_project)]) == 2
    err = capsys.readouterr().err.strip()
    dotted = ".".join([name, *path[:-1], bad])
    assert err.count("\n") == 0 and "project.yaml" in err and dotted in err and path[-1] in err and "Traceback" not in err


def data_at(data: dict, path: list[str]):
    for k in path:
        data = data[k]
    return data


@pytest.mark.parametrize("key", sorted(params.TOOLKIT_SECTIONS))
def test_a_project_cannot_override_toolkit_sections(key, tiny_project):
    """limits (an upload must not raise its own limits), siting solver, road-graph cache, municipal grid."""
    _edit(tiny_project, lambda r: r.update({key: {}}))
    with pytest.raises(CatalogError) as err:
        params.load_params(tiny_project)
    assert f"'{key}'" in str(err.value) and "not a project key" in str(err.value) and "\n" not in str(err.value)


def test_siting_solver_keys_are_overridable_under_coverage_siting(tiny_project):
    _edit(tiny_project, lambda r: r.update(coverage={"siting": {"mip_rel_gap": 1e-3}}))
    p = params.load_params(tiny_project)
    assert p.coverage.siting.mip_rel_gap == 1e-3
    assert p.solver.mip_rel_gap == load_yaml(params.section_file("siting"))["mip_rel_gap"]
