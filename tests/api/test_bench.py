"""bench/api.py runs on both databases and prints the figures issue 19 asks for, from one run; bench/reports.py
times every report of the catalog over rows it actually aggregates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.reports.catalog import REPORTS
from tests.conftest import BACKENDS, POSTGRES_URL, _pg_admin_engine

REPO = Path(__file__).resolve().parents[2]


def _database_exists(name: str) -> bool:
    admin = _pg_admin_engine()
    with admin.connect() as connection:
        found = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first()
    admin.dispose()
    return found is not None


@pytest.mark.parametrize("bench_backend", BACKENDS)
def test_the_api_bench_prints_both_rates_their_ratio_and_the_rep_latency(bench_backend: str) -> None:
    command = [sys.executable, str(REPO / "bench" / "api.py"), "--signals", "40", "--tasks", "120"]
    if bench_backend == "postgresql":
        assert POSTGRES_URL
        command += ["--database-url", POSTGRES_URL]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HANDOFF_CONFIG", None)

    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"database: {bench_backend}" in out
    api = float(re.search(r"POST /signals \(batches of 1000\): ([\d,]+) signals/s", out)[1].replace(",", ""))
    direct = float(re.search(r"ingest_many directly \(same batches\): ([\d,]+) signals/s", out)[1].replace(",", ""))
    ratio = float(re.search(r"ratio API / direct: ([\d.]+)", out)[1])
    assert api > 0 and direct > 0
    assert ratio == pytest.approx(api / direct, rel=0.05, abs=0.01)  # the ratio of the two printed rates
    p50, p95 = (float(v) for v in re.search(r"GET /tasks for a rep with 120 tasks: p50 ([\d.]+) ms, "
                                            r"p95 ([\d.]+) ms", out).groups())
    assert 0 < p50 <= p95
    if bench_backend == "postgresql":
        # It worked in a scratch database of its own, and that is gone now.
        scratch = re.search(r"scratch database (handoff_bench_\w+) dropped", out)[1]
        assert not _database_exists(scratch)


def _run_reports_bench(backend: str, *sizes: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "bench" / "reports.py"), *sizes]
    if backend == "postgresql":
        assert POSTGRES_URL
        command += ["--database-url", POSTGRES_URL]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HANDOFF_CONFIG", None)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


@pytest.mark.parametrize("bench_backend", BACKENDS)
def test_the_reports_bench_times_every_report_routing_and_experiments_included(bench_backend: str) -> None:
    done = _run_reports_bench(bench_backend, "--small", "200", "--large", "400")

    # It exits non-zero when any report came back empty, or routing or experiments counted nothing.
    assert done.returncode == 0, done.stderr
    timed = dict(re.findall(r"^([a-z-]+) +([\d.]+) ms +[\d.]+ ms +[\d.]+$", done.stdout, re.MULTILINE))
    assert set(timed) == set(REPORTS)
    assert {"routing", "experiments"} <= set(timed)


def test_the_reports_bench_fails_rather_than_time_an_empty_report() -> None:
    # Five tasks make one route run, and it goes the automated way: nobody decides, nothing to time.
    done = _run_reports_bench("sqlite", "--small", "5", "--large", "10")

    assert done.returncode == 1
    assert "error: 5 tasks: routing: human is 0 in every row" in done.stderr
    assert "10 tasks" not in done.stdout  # the large run never started
