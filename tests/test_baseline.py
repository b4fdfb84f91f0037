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

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("baseline_record", HERE / "baseline" / "record.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    if os.environ.get("GIS_TEST_PROJECT"):
        pytest.skip("the baseline is recorded for the bundled sample district only")
    out = tmp_path_factory.mktemp("baseline") / "out"
    record.run_sample(out)  # the README's main job on a copy of the sample (a fresh campaign store), no configuration
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


def test_main_job_on_bundled_sample_balances(sample_run):
    """Every row read is either loaded or rejected, and the load files are there."""
    summary = json.loads((sample_run / "summary.json").read_text(encoding="utf-8"))
    assert summary["sample"] is True and summary["steps_run"][0] == "load"
    for role, n in summary["read"].items():
        assert summary["loaded"].get(role, 0) + summary["rejects_by_layer"].get(role, 0) == n
    for f in ("summary.json", "rejects.csv", "district.gpkg"):
        assert (sample_run / f).exists()


def test_workbook_dates_are_compared_relative_to_the_run_date():
    """填报日期 and 整改期限 follow the run date; the data's own (earlier) dates are kept."""
    import datetime as dt

    import pandas as pd

    df = pd.DataFrame({"a": ["2026-12-03 00:00:00", "2026-12-18", "2025-01-13 00:00:00", "text"]})
    out = record.relative_dates(df, dt.date(2026, 12, 3))["a"].tolist()
    assert out == ["<run+0d>", "<run+15d>", "2025-01-13 00:00:00", "text"]
