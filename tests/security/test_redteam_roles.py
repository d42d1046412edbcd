"""Red-team review of the roles of API keys (issue 12, identity): role escapes through the key
file. Each attack is made over real HTTP (TestClient) against the real app and database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sarcoma_cds.interfaces.api import create_app
from tests.conftest_service import BASE_URL, make_settings


def _line(key: str, rest: str) -> str:
    return f"{hashlib.sha256(key.encode()).hexdigest()} {rest}\n"


def test_a_key_line_without_roles_does_not_inherit_another_lines_roles(tmp_path: Path) -> None:
    """Two lines with one name, one with ``roles=admin`` and one without: the second key (a
    ward's legacy key, say) was given admin. The start must stop, as for two role lists."""
    keys = tmp_path / "keys.txt"
    keys.write_text(_line("admin-key", "ops roles=admin") + _line("ward-key", "ops"))
    with pytest.raises(ValueError, match="listed twice with different roles"):
        create_app(make_settings(tmp_path, base_url=BASE_URL, api_keys_file=keys))
    # the same roles written out (the legacy viewer + auditor) are not a conflict
    keys.write_text(_line("a-key", "ops roles=viewer,auditor") + _line("b-key", "ops"))
    app = create_app(make_settings(tmp_path, base_url=BASE_URL, api_keys_file=keys))
    with TestClient(app, base_url=BASE_URL) as c:
        assert c.get("/audit", headers={"Authorization": "Bearer b-key"}).status_code == 200


def test_a_viewer_key_reaches_no_auditor_route_and_no_web_page(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(_line("v-key", "reader roles=viewer"))
    app = create_app(make_settings(tmp_path, base_url=BASE_URL, api_keys_file=keys))
    auth = {"Authorization": "Bearer v-key"}
    with TestClient(app, base_url=BASE_URL) as c:
        r = c.post("/recommendations", headers=auth, json={"histology": "gist"})
        assert r.status_code in (200, 422)
        audit_id = r.headers.get("x-audit-id", "0" * 32)
        for path in ("/audit", f"/audit/{audit_id}", "/audit?limit=1&after=0"):
            r = c.get(path, headers=auth)
            assert r.status_code == 403, path
            assert r.headers["content-type"].startswith("application/problem+json")
        for path in ("/cases", f"/cases/{audit_id}", f"/cases/{audit_id}/facts.json"):
            assert c.get(path, headers=auth).status_code == 403, path  # no sign-in: closed


@pytest.mark.parametrize("lines", [
    _line("admin-key", "ops roles=admin") + _line("ward-key", "ops"),
    _line("k", "ops roles=surgeon"),  # (an unknown role)
])
def test_serve_stops_on_a_bad_key_file_roles_with_a_clear_error(tmp_path: Path,
                                                                lines: str) -> None:
    """``serve`` checked only the key file's digests: roles that stop ``create_app`` made every
    worker fail with a traceback instead of a clear exit 2 naming the file."""
    import os
    import subprocess
    import sys

    keys = tmp_path / "keys.txt"
    keys.write_text(lines)
    exe = Path(sys.executable).parent / "sarcoma-cds"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARCOMA_CDS_")}
    env.update(SARCOMA_CDS_DATA_DIR=str(tmp_path / "d"), SARCOMA_CDS_API_KEYS=str(keys))
    p = subprocess.run([str(exe), "serve", "--port", "0"], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == 2, p.stderr[-2000:]
    assert str(keys) in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
