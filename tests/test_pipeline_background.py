"""``gis run``'s overlap: a step in a spawned worker, and writes deferred to the end.

What a user would check: the hot-spot step run in its worker gives the same summary keys,
the same clusters and the same files as run in the calling process; a worker that fails is
replaced by running the step in the calling process; and the deferred writes happen (every
file of the steps is there when ``run_steps`` returns).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from gis import background, steps


@pytest.fixture(scope="module")
def in_process(sample_district, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("in_process")
    summary, ctx = steps.run_steps(sample_district, out, ["load", "hotspots"])
    return out, summary, ctx


def test_hotspots_in_a_worker_equal_hotspots_in_process(sample_district, in_process, tmp_path: Path) -> None:
    ref_out, ref_summary, ref_ctx = in_process
    timings: dict[str, float] = {}
    summary, ctx = steps.run_steps(sample_district, tmp_path, ["load", "hotspots"], background=["hotspots"],
                                   timings=timings)
    assert summary == ref_summary
    assert list(summary) == list(ref_summary)  # the keys in registry order, as summary.json writes them
    assert timings["hotspots"] > 0
    assert len(ctx.hotspot_problems) == len(ref_ctx.hotspot_problems)
    for layer in ("clusters", "incidents"):
        got = gpd.read_file(tmp_path / "hotspots.gpkg", layer=layer)
        ref = gpd.read_file(ref_out / "hotspots.gpkg", layer=layer)
        assert got.drop(columns="geometry").equals(ref.drop(columns="geometry"))
        assert got.geometry.geom_equals_exact(ref.geometry, tolerance=0).all()
    assert (tmp_path / "density.tif").read_bytes() == (ref_out / "density.tif").read_bytes()


def test_a_failed_worker_is_replaced_by_the_step_in_process(sample_district, in_process, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, ref_summary, _ = in_process
    monkeypatch.setattr(background.BackgroundStep, "result", lambda self: (self.cancel(), None)[1])
    summary, ctx = steps.run_steps(sample_district, tmp_path, ["load", "hotspots"], background=["hotspots"])
    assert summary == ref_summary
    assert ctx.hotspots is not None and (tmp_path / "hotspots.gpkg").exists()


def test_deferred_writes_are_done_when_run_steps_returns(sample_district, in_process) -> None:
    out, _, ctx = in_process
    assert ctx.deferred == []
    assert (out / "district.gpkg").exists() and (out / "rejects.csv").exists()


def test_a_step_that_needs_another_cannot_go_to_the_background(sample_district, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="cannot run in the background"):
        steps.run_steps(sample_district, tmp_path, ["load", "compliance", "ledgers"], background=["ledgers"])


def test_spawned_worker_gives_the_forked_answer(sample_district, in_process, tmp_path: Path) -> None:
    """Where the caller cannot fork, ``python -m gis.step_worker`` runs the step from a pickle: same answer."""
    _, ref_summary, ref_ctx = in_process
    answer = background.BackgroundStep("hotspots", sample_district, tmp_path).result()
    assert answer is not None
    summary, results, seconds = answer
    assert summary["hotspots"] == ref_summary["hotspots"] and seconds > 0
    assert len(results["hotspot_problems"]) == len(ref_ctx.hotspot_problems)
    assert (tmp_path / "hotspots.gpkg").exists()


def test_a_taken_answer_stays_and_cancel_after_it_is_a_no_op(sample_district, tmp_path: Path) -> None:
    """The app cancels every job of a finished run: once a job's answer is taken, its (reaped)
    child's pid may belong to another process, so cancel must not signal it."""
    import os
    import signal

    job = background.BackgroundStep("hotspots", sample_district, tmp_path,
                                    run=lambda: steps.run_alone("hotspots", sample_district, tmp_path))
    first = job.result()
    assert first is not None and job.result() is first
    sent: list[tuple[int, int]] = []
    real_kill = os.kill
    try:
        os.kill = lambda pid, sig: sent.append((pid, sig))  # type: ignore[assignment]
        job.cancel()
    finally:
        os.kill = real_kill
    assert sent == [] and signal.SIGKILL not in [s for _, s in sent]


@pytest.mark.skipif(not background.can_fork(), reason="no fork on this platform")
def test_a_forked_write_writes_and_a_failed_one_raises(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    job = background.ForkedWrite(lambda: target.write_text("done"), "written.txt")
    job.wait()
    job.wait()  # a second wait is a no-op
    assert target.read_text() == "done"

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(Exception, match="writing broken.gpkg failed: OSError: disk full"):
        background.ForkedWrite(fail, "broken.gpkg").wait()


@pytest.mark.skipif(not background.can_fork(), reason="no fork on this platform")
def test_a_lean_run_writes_its_files_in_forked_children(sample_district, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lean run hands each step's files to a forked child and has them all when ``run_steps`` returns;
    a run that keeps its results (the sample's ``gis run``, the app) forks no writer."""
    started: list[str] = []
    real = background.ForkedWrite.__init__

    def record(self, write, label):
        started.append(label)
        real(self, write, label)

    monkeypatch.setattr(background.ForkedWrite, "__init__", record)
    summary, ctx = steps.run_steps(sample_district, tmp_path, ["load", "compliance"],
                                   ctx=steps.RunContext(sample_district, lean=True))
    assert started == ["district.gpkg", "sites.gpkg"] and ctx.writing == []
    assert {p.name for p in tmp_path.iterdir()} >= {"district.gpkg", "sites.gpkg", "rejects.csv"}
    started.clear()
    kept = tmp_path / "kept"
    kept.mkdir()
    steps.run_steps(sample_district, kept, ["load", "compliance"])
    assert started == [] and (kept / "sites.gpkg").exists()
