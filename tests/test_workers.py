"""Worker processes of ``serve`` (issue 13): one per core by default, ``--workers`` or
``SARCOMA_CDS_WORKERS`` otherwise; a bad value stops the start with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sarcoma_cds.interfaces.api.settings import Settings, default_workers


def test_workers_default_to_the_cores_and_follow_the_variable() -> None:
    assert Settings.from_env({}).workers is None  # serve then uses default_workers()
    assert default_workers() == len(os.sched_getaffinity(0)) >= 1
    assert Settings.from_env({"SARCOMA_CDS_WORKERS": " 3 "}).workers == 3


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_worker_count_is_refused_with_its_name(value: str) -> None:
    with pytest.raises(ValueError, match="SARCOMA_CDS_WORKERS"):
        Settings.from_env({"SARCOMA_CDS_WORKERS": value})


def test_serve_stops_on_a_bad_worker_count(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "sarcoma-cds"
    env = dict(os.environ, SARCOMA_CDS_WORKERS="many", SARCOMA_CDS_DATA_DIR=str(tmp_path))
    p = subprocess.run([str(exe), "serve", "--port", "0"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "SARCOMA_CDS_WORKERS" in p.stderr and "Traceback" not in p.stderr
