"""Compare every output file of two municipal runs (GeoParquet partitions, GeoPackages, roll-up)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio


def layer_files(out: Path) -> list[Path]:
    """Every partitioned output file of a run, relative to ``out``."""
    root = out / "municipal_analysis"
    return sorted(p.relative_to(out) for p in root.rglob("*") if p.suffix in (".parquet", ".gpkg"))


def assert_same_outputs(a: Path, b: Path) -> int:
    """Assert both runs wrote the same files with equal rows and attributes; returns the number of tables compared."""
    fa, fb = layer_files(a), layer_files(b)
    assert fa == fb and fa, (fa, fb)
    n = 0
    for rel in fa:
        if rel.suffix == ".parquet":
            pd.testing.assert_frame_equal(gpd.read_parquet(a / rel), gpd.read_parquet(b / rel), check_exact=True)
            n += 1
            continue
        for layer, _ in pyogrio.list_layers(a / rel):
            pd.testing.assert_frame_equal(gpd.read_file(a / rel, layer=layer), gpd.read_file(b / rel, layer=layer), check_exact=True)
            n += 1
    return n


def read_layer(out: Path, layer: str) -> gpd.GeoDataFrame:
    """One layer of a run's partitioned output, all districts (as an analyst would read it)."""
    parts = sorted((out / "municipal_analysis" / layer).glob("district=*/part.parquet"))
    return gpd.GeoDataFrame(pd.concat([gpd.read_parquet(p) for p in parts], ignore_index=True))
