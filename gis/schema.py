"""The district data model: every layer's canonical fields and vocabularies.

This is the one place that says what a *site ledger* (台账), an *incident record*
(摸排/举报/巡查/执法记录), a *zone*, a *land-use* layer, a *township* (镇街), a
*population* layer and a *road* layer look like once loaded. Loaders
(:mod:`gis.io`) map whatever headers a district's files use onto these names
through the alias table in ``layers/aliases.yaml``; analyses only ever see the
canonical names below.

All loaded vector layers are GeoDataFrames in the district's metric CRS (see
:func:`gis.coords.choose_metric_crs`), with the canonical columns present (missing
optional fields are filled with nulls).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    """Tier of a site in the three-tier recycling network (三级回收体系)."""

    SORTING_CENTRE = "sorting_centre"  #: tier 1, 分拣中心
    TRANSFER_STATION = "transfer_station"  #: tier 2, 中转分拣站 / 中转站
    COLLECTION_POINT = "collection_point"  #: tier 3, 回收网点 / 回收站点
    DROP_OFF_POINT = "drop_off_point"  #: tier 3, 分类投放点
    DISMANTLER = "dismantler"  #: licensed ELV / e-waste dismantling enterprise, 拆解企业

    @property
    def level(self) -> int:
        """Network level: 1 sorting centre, 2 transfer station, 3 points, 0 dismantler."""
        return TIER_LEVEL[self]

    @property
    def label_zh(self) -> str:
        return TIER_LABEL_ZH[self]


TIER_LEVEL: dict[Tier, int] = {
    Tier.SORTING_CENTRE: 1,
    Tier.TRANSFER_STATION: 2,
    Tier.COLLECTION_POINT: 3,
    Tier.DROP_OFF_POINT: 3,
    Tier.DISMANTLER: 0,
}

TIER_LABEL_ZH: dict[Tier, str] = {
    Tier.SORTING_CENTRE: "分拣中心",
    Tier.TRANSFER_STATION: "中转分拣站",
    Tier.COLLECTION_POINT: "回收网点",
    Tier.DROP_OFF_POINT: "分类投放点",
    Tier.DISMANTLER: "拆解企业",
}


class SiteStatus(StrEnum):
    """Operating status of a ledger site."""

    ACTIVE = "active"  #: 在营
    PLANNED = "planned"  #: 规划 / 在建
    CLOSED = "closed"  #: 关停 / 取缔
    ILLEGAL = "illegal"  #: 非法 (known illegal site on the ledger)


SITE_STATUS_LABEL_ZH: dict[SiteStatus, str] = {
    SiteStatus.ACTIVE: "在营",
    SiteStatus.PLANNED: "规划",
    SiteStatus.CLOSED: "关停",
    SiteStatus.ILLEGAL: "非法",
}


class IncidentKind(StrEnum):
    """Kind of an incident record (what the inspector or complainant found)."""

    ILLEGAL_ELV_DISMANTLING = "illegal_elv_dismantling"  #: 非法拆解报废机动车
    ILLEGAL_EWASTE_DISMANTLING = "illegal_ewaste_dismantling"  #: 非法拆解废弃电器电子产品
    UNLICENSED_RECYCLING = "unlicensed_recycling"  #: 无证照经营
    SCATTERED_POLLUTING = "scattered_polluting"  #: 散乱污
    FIRE_HAZARD = "fire_hazard"  #: 三合一 / 消防隐患
    ROAD_OCCUPYING = "road_occupying"  #: 占道经营
    ILLEGAL_LAND_USE = "illegal_land_use"  #: 违法用地 / 占用耕地
    UNFILED_SCRAP_METAL = "unfiled_scrap_metal"  #: 废旧金属收购未备案
    # kinds named in the seed notices (lead departments: layers/departments.yaml violation_kinds)
    RANDOM_DUMPING = "random_dumping"  #: 乱堆乱放 (农村沿路、房前屋后; 农业农村委)
    REPAIR_SHOP_SCRAPPED_VEHICLE = "repair_shop_scrapped_vehicle"  #: 机动车维修经营者承修报废机动车 (交通运输局)
    EV_BATTERY_DISMANTLING = "ev_battery_dismantling"  #: 新能源汽车废旧动力蓄电池违规拆卸/贮存
    NO_POLLUTION_CONTROLS = "no_pollution_controls"  #: 无地面硬化/无围挡/无防扬撒
    BEYOND_LICENSED_SCOPE = "beyond_licensed_scope"  #: 超出核准经营范围
    BRANCH_DISMANTLING = "branch_dismantling"  #: 资质企业分支机构拆解报废机动车
    FORGED_RECYCLING_CERTIFICATE = "forged_recycling_certificate"  #: 伪造/变造/买卖《回收证明》


INCIDENT_KIND_LABEL_ZH: dict[IncidentKind, str] = {
    IncidentKind.ILLEGAL_ELV_DISMANTLING: "非法拆解报废机动车",
    IncidentKind.ILLEGAL_EWASTE_DISMANTLING: "非法拆解废弃电器电子产品",
    IncidentKind.UNLICENSED_RECYCLING: "无证照经营",
    IncidentKind.SCATTERED_POLLUTING: "散乱污",
    IncidentKind.FIRE_HAZARD: "三合一消防隐患",
    IncidentKind.ROAD_OCCUPYING: "占道经营",
    IncidentKind.ILLEGAL_LAND_USE: "违法用地",
    IncidentKind.UNFILED_SCRAP_METAL: "废旧金属收购未备案",
    IncidentKind.RANDOM_DUMPING: "乱堆乱放",
    IncidentKind.REPAIR_SHOP_SCRAPPED_VEHICLE: "机动车维修经营者承修报废机动车",
    IncidentKind.EV_BATTERY_DISMANTLING: "新能源汽车废旧动力蓄电池违规拆卸贮存",
    IncidentKind.NO_POLLUTION_CONTROLS: "无地面硬化无围挡无防扬撒",
    IncidentKind.BEYOND_LICENSED_SCOPE: "超出核准经营范围",
    IncidentKind.BRANCH_DISMANTLING: "资质企业分支机构拆解报废机动车",
    IncidentKind.FORGED_RECYCLING_CERTIFICATE: "伪造变造买卖《回收证明》",
}


class ZoneType(StrEnum):
    """Kind of a control zone."""

    FOUR_MOUNTAINS = "four_mountains"  #: 四山管制区 (渝府令第204号)
    ECOLOGICAL_RED_LINE = "ecological_red_line"  #: 生态保护红线
    BASIC_FARMLAND = "basic_farmland"  #: 永久基本农田
    WATER_SOURCE = "water_source"  #: 饮用水水源保护区
    URBAN_DEVELOPMENT_BOUNDARY = "urban_development_boundary"  #: 城镇开发边界


class ZoneLevel(StrEnum):
    """Control level inside the 四山 area (and, generically, a zone's strictness)."""

    NO_BUILD = "no_build"  #: 禁建区
    KEY_CONTROL = "key_control"  #: 重点控建区
    GENERAL_CONTROL = "general_control"  #: 一般控建区


ZONE_LEVEL_LABEL_ZH: dict[ZoneLevel, str] = {
    ZoneLevel.NO_BUILD: "禁建区",
    ZoneLevel.KEY_CONTROL: "重点控建区",
    ZoneLevel.GENERAL_CONTROL: "一般控建区",
}

#: Strictness order of 四山 levels (higher = stricter).
ZONE_LEVEL_RANK: dict[ZoneLevel, int] = {
    ZoneLevel.GENERAL_CONTROL: 1,
    ZoneLevel.KEY_CONTROL: 2,
    ZoneLevel.NO_BUILD: 3,
}

#: The four 四山 ranges of Chongqing's main urban area.
FOUR_MOUNTAINS_RANGES: tuple[str, ...] = ("缙云山", "中梁山", "铜锣山", "明月山")


@dataclass(frozen=True)
class Field:
    """One canonical field of a layer.

    Attributes
    ----------
    name
        Canonical (English, snake_case) column name.
    kind
        ``str``, ``float``, ``int``, ``bool``, ``date`` or ``category`` (a value of
        the vocabulary named in ``vocabulary``).
    required
        A row without a value is rejected (reason ``missing_value``).
    label_zh
        The usual Chinese header, used on exports.
    vocabulary
        For ``category`` fields, the name of the alias table in
        ``layers/aliases.yaml`` that maps Chinese/English values to the enum.
    """

    name: str
    kind: str
    required: bool = False
    label_zh: str = ""
    vocabulary: str | None = None


SITE_FIELDS: tuple[Field, ...] = (
    Field("site_id", "str", True, "网点编号"),
    Field("name", "str", True, "网点名称"),
    Field("tier", "category", True, "网点层级", "tier"),
    Field("operator", "str", False, "经营者"),
    Field("address", "str", False, "经营地址"),
    Field("township", "str", False, "所属镇街"),
    Field("status", "category", False, "经营状态", "site_status"),
    Field("business_licence", "bool", False, "营业执照"),
    Field("dismantling_qualification", "bool", False, "资质认定"),
    Field("police_filing", "bool", False, "公安备案"),
    Field("capacity_t_per_day", "float", False, "日处理能力(吨)"),
    Field("floor_area_m2", "float", False, "占地面积(㎡)"),
    Field("business_scope", "str", False, "经营范围"),
)

INCIDENT_FIELDS: tuple[Field, ...] = (
    Field("incident_id", "str", True, "记录编号"),
    Field("date", "date", True, "发现日期"),
    Field("kind", "category", True, "问题类型", "incident_kind"),
    Field("source", "category", False, "线索来源", "incident_source"),
    Field("status", "category", False, "处置状态", "incident_status"),
    Field("closed_date", "date", False, "关停日期"),
    Field("five_assemblies_destination", "str", False, "五大总成流向"),
    Field("township", "str", False, "所属镇街"),
    Field("address", "str", False, "地址"),
    Field("description", "str", False, "问题描述"),
)

ZONE_FIELDS: tuple[Field, ...] = (
    Field("zone_id", "str", False, "编号"),
    Field("zone_type", "category", True, "管控类型", "zone_type"),
    Field("level", "category", False, "管控级别", "zone_level"),
    Field("name", "str", False, "名称"),
)

LANDUSE_FIELDS: tuple[Field, ...] = (
    Field("landuse_code", "str", True, "地类编码"),
    Field("landuse_name", "str", False, "地类名称"),
)

TOWNSHIP_FIELDS: tuple[Field, ...] = (
    Field("township", "str", True, "镇街名称"),
    Field("township_code", "str", False, "镇街代码"),
    Field("kind", "str", False, "类型"),  # street 街道 / town 镇 / township 乡
    Field("population", "float", False, "常住人口"),
    Field("households", "float", False, "户数"),
    Field("urban", "bool", False, "城镇"),
)

POPULATION_FIELDS: tuple[Field, ...] = (Field("population", "float", True, "人口"),)

ROAD_FIELDS: tuple[Field, ...] = (
    Field("osm_id", "str", False, "编号"),
    Field("fclass", "str", False, "道路等级"),
    Field("oneway", "str", False, "单行"),
    Field("name", "str", False, "名称"),
)

#: Canonical fields of each layer role.
LAYER_FIELDS: dict[str, tuple[Field, ...]] = {
    "sites": SITE_FIELDS,
    "incidents": INCIDENT_FIELDS,
    "zones": ZONE_FIELDS,
    "landuse": LANDUSE_FIELDS,
    "townships": TOWNSHIP_FIELDS,
    "population": POPULATION_FIELDS,
    "roads": ROAD_FIELDS,
    "candidates": (
        Field("candidate_id", "str", True, "编号"),
        Field("name", "str", False, "名称"),
        Field("kind", "str", False, "类型"),
        Field("address", "str", False, "地址"),
    ),
}

#: Primary-key field of each point layer (duplicates are rejected).
LAYER_ID_FIELD: dict[str, str] = {
    "sites": "site_id",
    "incidents": "incident_id",
    "candidates": "candidate_id",
}

#: Layer roles a project may declare. ``sites``, ``townships`` are required.
LAYER_ROLES: tuple[str, ...] = tuple(LAYER_FIELDS)
REQUIRED_ROLES: tuple[str, ...] = ("sites", "townships")


class RejectReason(StrEnum):
    """Why an input row did not make it into a loaded layer."""

    MISSING_COORDINATES = "missing_coordinates"
    NON_NUMERIC_COORDINATES = "non_numeric_coordinates"
    SWAPPED_LON_LAT = "swapped_lon_lat"
    COORDINATES_OUT_OF_RANGE = "coordinates_out_of_range"
    OUTSIDE_DISTRICT = "outside_district"
    INVALID_GEOMETRY = "invalid_geometry"
    EMPTY_GEOMETRY = "empty_geometry"
    DUPLICATE_ID = "duplicate_id"
    UNKNOWN_CATEGORY = "unknown_category"  # e.g. unknown tier
    MISSING_VALUE = "missing_value"
    BAD_VALUE = "bad_value"  # non-numeric number, unparseable date


#: Headers of the 问题台账 (problem ledger), exactly as on the Shapingba campaign's annex 2.
#: Every step that files problems (compliance, hotspots) produces rows with these columns.
PROBLEM_LEDGER_COLUMNS: tuple[str, ...] = (
    "序号",
    "镇街",
    "网点名称",
    "经营地址",
    "问题类型",
    "问题描述",
    "依据",
    "牵头单位",
    "配合单位",
    "整改措施",
    "整改时限",
    "整改状态",
)

#: Columns of the rejects table (``OUT/rejects.csv``).
REJECT_COLUMNS: tuple[str, ...] = ("layer", "file", "row", "field", "value", "reason", "detail")


def field_names(role: str) -> list[str]:
    """Canonical column names of a layer role, in order."""
    return [f.name for f in LAYER_FIELDS[role]]
