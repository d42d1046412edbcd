"""The web pages never wait for a commit on the event loop (issue 13).

A page that records something (saving a case, the result of the patient form, an import) waits
for its audit record's group commit; that wait must be in the threadpool, so that the service
keeps answering everyone else meanwhile. A real uvicorn server; the commit is held up the way
another worker process holds it up: by holding the SQLite writers' turn lock
(``<db>.write.lock``, ``GroupCommitWriter.lock_path``). No timing: the test waits for the
writer to reach the lock, checks that ``/healthz`` answers while the page is still waiting, then
lets the commit through.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest_service import make_settings
from security.uvicorn_live import live_server

FACTS = {
    "histology": "undifferentiated_pleomorphic_sarcoma", "primary_site": "lower_extremity",
    "size_cm": "12", "depth": "deep", "grade": "3", "nodes": "N0", "metastasis": "M0",
    "resectability": "resectable", "disease_status": "primary",
}
HTML = {"accept": "text/html"}


def _wait_for(cond: Any, what: str) -> None:
    for _ in range(3000):  # (a bound on waiting for a state, not a timing assertion)
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"never reached: {what}")


@pytest.mark.parametrize(("path", "expect"), [
    ("/cases", 303),     # save a case: its record, then the redirect to the case
    ("/patient", 200),   # the form's result: its audit record, then the page
])
def test_health_answers_while_a_page_waits_for_its_commit(tmp_path: Path, path: str,
                                                          expect: int) -> None:
    from sarcoma_cds.interfaces.api import create_app

    app = create_app(make_settings(tmp_path))
    writer = app.state.services.store.writer
    assert writer.lock_path is not None  # (the default store: a SQLite file)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as browser:
        page = browser.get("/patient", headers=HTML)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, "no CSRF field on the patient form"
        assert writer.batches == 0
        fd = os.open(writer.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # another worker's writer is committing
        try:
            with ThreadPoolExecutor(1) as pool:
                call = pool.submit(browser.post, path, headers=HTML, follow_redirects=False,
                                   data={**FACTS, "case_label": "MDT 4",
                                         "csrf_token": token.group(1)})
                # the page's record reached the writer, which now waits for its turn
                _wait_for(lambda: writer._lock_fd is not None, "the writer waits for the lock")
                health = httpx.get(url + "/healthz", timeout=30)
                assert health.status_code == 200, health.text
                assert httpx.get(url + "/version", timeout=30).status_code == 200
                assert not call.done()  # the page is still waiting for its commit
                fcntl.flock(fd, fcntl.LOCK_UN)
                r = call.result()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    assert r.status_code == expect, r.text[:500]
    assert writer.batches >= 1
    if path == "/cases":
        assert r.headers["location"].startswith("/cases/")
