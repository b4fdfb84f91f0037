"""project.yaml and layer catalogues: parsing, validation errors naming file and key, merging."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gis._errors import CatalogError
from gis.catalog import deep_merge, landuse_class, load_project, normalise_label, value_lookup


def _rewrite(project: Path, mutate) -> Path:
    data = yaml.safe_load(project.read_text(encoding="utf-8"))
    mutate(data)
    project.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return project


def test_loads_tiny_project(tiny_project):
    p = load_project(tiny_project.parent)
    assert p.name == "测试区（样例）"
    assert p.sample is True
    assert p.spec("sites").format == "csv"
    assert p.spec("sites").coords == "gcj02"
    assert p.spec("zones").zone_type == "four_mountains"
    assert p.layers["zones"][0].key == "layers.zones[0]"
    assert p.targets[0]["metric"] == "count"


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (lambda d: d.pop("name"), "name", "required"),
        (lambda d: d["layers"].pop("sites"), "layers.sites", "required layer"),
        (lambda d: d["layers"].__setitem__("buildings", {"file": "x.gpkg"}), "layers.buildings", "unknown layer role"),
        (lambda d: d["layers"]["sites"].__setitem__("file", "nope.csv"), "layers.sites.file", "file not found"),
        (lambda d: d["layers"]["sites"].__setitem__("coords", "mars"), "layers.sites.coords", ""),
        (lambda d: d["layers"]["sites"].pop("coords"), "layers.sites.coords", "gcj02"),
        (lambda d: d["layers"]["townships"].__setitem__("file", "sites_ledger.csv"), "layers.townships.format", "cannot hold"),
        (lambda d: d["layers"]["sites"].__setitem__("colour", "red"), "layers.sites.colour", "unknown key"),
        (lambda d: d.__setitem__("crs", {"metric": "EPSG:4326"}), "crs.metric", "not a projected"),
        (lambda d: d["layers"]["zones"][0].__setitem__("level", "very_strict"), "layers.zones[0].level", "unknown level"),
        (lambda d: d["layers"]["sites"].__setitem__("columns", {"colour": "颜色"}), "layers.sites.columns.colour", "not a field"),
        (lambda d: d.__setitem__("targets", {"a": 1}), "targets", "list"),
    ],
)
def test_errors_name_file_and_key(tiny_project, mutate, key, words):
    _rewrite(tiny_project, mutate)
    with pytest.raises(CatalogError) as err:
        load_project(tiny_project)
    assert err.value.key == key
    assert err.value.path == str(tiny_project.resolve())
    assert words in str(err.value)
    assert str(tiny_project.name) in str(err.value)


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "project.yaml"
    p.write_text("name: x\nlayers:\n  sites: {file: a.csv\n", encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_project(tmp_path)
    assert err.value.key == "(syntax)"
    assert "line" in str(err.value)


def test_missing_project_file(tmp_path):
    with pytest.raises(CatalogError, match="no project.yaml"):
        load_project(tmp_path)


def test_section_merges_defaults_with_project(tiny_project, tmp_path, monkeypatch):
    from gis import settings

    layers = tmp_path / "layers"
    layers.mkdir()
    (layers / "demo.yaml").write_text(
        "radius_m: 500\nrules:\n  - {id: R1, enabled: true, x: 1}\n  - {id: R2, enabled: true}\n", encoding="utf-8"
    )
    (layers / "project.yaml").write_text((settings.LAYERS_DIR / "project.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(settings, "LAYERS_DIR", layers)
    _rewrite(tiny_project, lambda d: d.__setitem__("demo", {"radius_m": 300, "rules": [{"id": "R2", "enabled": False}, {"id": "R9"}]}))
    sec = load_project(tiny_project).section("demo")
    assert sec["radius_m"] == 300
    assert [r["id"] for r in sec["rules"]] == ["R1", "R2", "R9"]
    assert sec["rules"][1]["enabled"] is False
    assert sec["rules"][0]["x"] == 1


def test_deep_merge_replaces_plain_lists():
    assert deep_merge({"a": [1, 2], "b": {"c": 1}}, {"a": [3], "b": {"d": 2}}) == {"a": [3], "b": {"c": 1, "d": 2}}


def test_normalise_label_full_width_and_spaces():
    assert normalise_label("占地面积（㎡） ") == normalise_label("占地面积(m2)")
    assert normalise_label(" Lon ") == "lon"


def test_value_vocabularies():
    tiers = value_lookup("tier")
    assert tiers[normalise_label("中转站")] == "transfer_station"
    assert tiers[normalise_label("分拣中心")] == "sorting_centre"
    assert value_lookup("zone_level")[normalise_label("禁建区")] == "no_build"
    assert value_lookup("bool")[normalise_label("已备案")] == "true"


def test_landuse_class_falls_back_to_first_level():
    assert landuse_class("0701")["name_zh"] == "城镇住宅用地"
    assert landuse_class("0799")["name_zh"] == "住宅用地"  # unknown second level → first level
    assert landuse_class("99") is None
    assert landuse_class(None) is None
