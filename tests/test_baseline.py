"""The sample district's outputs are the same as recorded (refactorings change no result).

The record is ``tests/baseline/sample_outputs.json``, written by
``python tests/baseline/record.py`` (re-run it when the sample data or an analysis
changes on purpose, and say so in the commit).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from gis import settings

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("baseline_record", HERE / "baseline" / "record.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    if os.environ.get("GIS_TEST_PROJECT"):
        pytest.skip("the baseline is recorded for the bundled sample district only")
    out = tmp_path_factory.mktemp("baseline") / "out"
    from gis.pipeline import run

    run(settings.SAMPLE_PROJECT_DIR, out, progress=False)
    return out


def test_sample_outputs_identical_to_record(sample_run):
    expected = json.loads(record.RECORD.read_text(encoding="utf-8"))
    actual = record.digest_folder(sample_run)
    assert record.differences(expected, actual) == []


def test_digest_notices_a_changed_cell(sample_run, tmp_path):
    import pandas as pd

    df = pd.read_csv(sample_run / "rejects.csv", dtype=str, keep_default_na=False)
    before = record.frame_digest(df)
    df.iloc[0, 0] = df.iloc[0, 0] + "x"
    assert record.frame_digest(df)["sha256"] != before["sha256"]
    assert record.frame_digest(df.iloc[::-1])["sha256"] == record.frame_digest(df)["sha256"]
