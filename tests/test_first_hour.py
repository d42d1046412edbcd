"""Issue 15, "first hour of a new user": each rough edge a new user met, as a test.

The lean install itself (a fresh venv without extras) is in ``test_newcomer.py``; here the
missing extras are simulated by hiding their modules from a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_cli_core import CMD, EXAMPLES, GOOD, run

EXAMPLE = EXAMPLES / "03-extremity.stage_iii_resectable.json"

# a subprocess in which the optional extras' modules cannot be found, as after
# `pip install sarcoma-cds` without extras
_HIDE = """
import sys
from importlib.abc import MetaPathFinder
HIDDEN = {"fastapi", "uvicorn", "sqlalchemy", "alembic", "jwt", "httpx", "jinja2", "polars", \
"duckdb",
          "pyarrow", "plotly", "numpy", "pyspark", "pandas"}
class Hide(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
sys.argv = ["sarcoma-cds", *sys.argv[1:]]
from sarcoma_cds.interfaces.cli.main import run
run()
"""


def lean(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _HIDE, *args], capture_output=True, text=True, timeout=60
    )


# ------------------------------------------------------------------ 1. lean install
@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["serve"], "service"),
        (["audit-log", "export"], "service"),
        (["kb", "export", "--fhir", "x"], "service"),
        (["synth", "--out", "c.parquet"], "cohort"),
        (["concordance", "c.parquet"], "cohort"),
    ],
)
def test_lean_install_commands_name_their_extra(args: list[str], extra: str) -> None:
    p = lean(*args)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert f"pip install 'sarcoma-cds[{extra}]'" in p.stderr
    assert p.stderr.startswith("error: ")


def test_lean_install_help_lists_commands_and_their_extra() -> None:
    p = lean("--help")
    assert p.returncode == 0, p.stderr
    for name in ("recommend", "serve", "concordance", "synth", "audit-log"):
        assert name in p.stdout
    flat = "".join(p.stdout.replace("│", "").split())
    assert "needsthe'service'extra" in flat and "needsthe'cohort'extra" in flat
    assert lean("recommend", str(EXAMPLE), "--format", "json").returncode == 0


def test_spark_engine_without_spark_extra(tmp_path: Path) -> None:
    pytest.importorskip("polars")
    code = _HIDE.replace('"polars", "duckdb",\n          "pyarrow", "plotly", "numpy", ', "")
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "concordance",
            str(tmp_path / "c.parquet"),
            "--engine",
            "spark",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "pip install 'sarcoma-cds[spark]'" in p.stderr


# ------------------------------------------------------------------ 2. encodings
def test_utf8_bom_accepted(tmp_path: Path) -> None:
    f = tmp_path / "windows.json"
    f.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.read_bytes())
    p = run("recommend", str(f), "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["patient_group"]["id"] == "extremity.stage_iii_resectable"
    jl = tmp_path / "windows.jsonl"
    jl.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n").encode())
    p = run("recommend", str(jl), "--format", "json")
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 2


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_not_utf8_names_file_and_offset(tmp_path: Path, bom: bytes) -> None:
    f = tmp_path / "latin1.json"
    raw = bom + '{"histology": "gist", "primary_site": "estómago"}'.encode("latin-1")
    f.write_bytes(raw)
    p = run("recommend", str(f))
    assert p.returncode == 2 and p.stdout == ""
    assert "Traceback" not in p.stderr
    offset = raw.index(b"\xf3")
    assert (
        p.stderr
        == (
            f"error: {f}: not UTF-8 text (byte 0xf3 at byte offset {offset}); save the file as "
            "UTF-8\n"
        )
    )
    p = subprocess.run([*CMD, "recommend", "-"], input=raw, capture_output=True, timeout=60)
    assert p.returncode == 2 and b"<stdin>: not UTF-8" in p.stderr and b"Traceback" not in p.stderr


# ------------------------------------------------------------------ 3. duplicate keys
def test_duplicate_key_rejected_naming_it(tmp_path: Path) -> None:
    text = json.dumps(GOOD)[:-1] + ', "grade": "1"}'
    f = tmp_path / "dup.json"
    f.write_text(text)
    p = run("recommend", str(f), "--format", "json")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error: grade: duplicate key")
    jl = tmp_path / "dup.jsonl"
    jl.write_text(json.dumps(GOOD) + "\n" + text + "\n")
    p = run("recommend", str(jl), "--format", "json")
    assert p.returncode == 2
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert "patient_group" in out[0]
    assert out[1]["error"]["problems"][0]["field"] == "grade"


def test_duplicate_key_rejected_over_rest(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from conftest_service import BASE_URL, make_settings
    from sarcoma_cds.interfaces.api import create_app
    from test_api import _problem

    body = json.dumps(GOOD)[:-1] + ', "grade": "1"}'
    with TestClient(create_app(make_settings(tmp_path)), base_url=BASE_URL) as c:
        r = c.post("/recommendations", content=body, headers={"content-type": "application/json"})
        p = _problem(r, 422)
        assert p["errors"] == [{"field": "grade", "message": p["errors"][0]["message"]}]
        assert "duplicate key 'grade'" in p["detail"] and p["instance"]
        # the same document without the repeat is fine
        assert c.post("/recommendations", json=GOOD).status_code == 200
        # (item 4 over REST) NaN, which Python's JSON reader accepts, is "not a number"
        nan = json.dumps(GOOD)[:-1].replace('"size_cm": 8.0', '"size_cm": NaN') + "}"
        r = c.post("/recommendations", content=nan, headers={"content-type": "application/json"})
        assert _problem(r, 422)["errors"] == [
            {
                "field": "size_cm",
                "message": "NaN is not a number; give the value or leave the field out",
            }
        ]


# ------------------------------------------------------------------ 4. NaN
def test_nan_is_not_a_number(tmp_path: Path) -> None:
    p = run(
        "recommend", "-", stdin='{"histology": "gist", "primary_site": "stomach", "size_cm": NaN}'
    )
    assert p.returncode == 2
    assert (
        p.stderr == "error: size_cm: NaN is not a number; give the value or leave the field out\n"
    )
    p = run(
        "recommend",
        "-",
        stdin='{"histology": "gist", "primary_site": "stomach", "size_cm": Infinity}',
    )
    assert p.stderr == "error: size_cm: Infinity is not a finite number\n"


def test_nan_message_in_the_python_api() -> None:
    from sarcoma_cds import InvalidFacts, recommend

    with pytest.raises(InvalidFacts) as e:
        recommend(
            {"histology": "gist", "primary_site": "stomach", "mitotic_rate_per_5mm2": float("nan")}
        )
    assert e.value.problems == [
        ("mitotic_rate_per_5mm2", "NaN is not a number; give the value or leave the field out")
    ]


# --------------------------------------------------------- 5. jsonl: one output line per input line
def test_jsonl_blank_lines_keep_lines_aligned(tmp_path: Path) -> None:
    f = tmp_path / "gaps.jsonl"
    f.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "size_cm": 3.0}) + "\n   \n")
    p = run("recommend", str(f), "--format", "json")
    assert p.returncode == 2
    out = [json.loads(x) for x in p.stdout.splitlines()]
    assert len(out) == 4
    assert out[0]["stage"]["group"] == "IIIA" and out[2]["stage"]["group"] == "II"
    assert out[1] == {
        "error": {
            "line": 2,
            "problems": [
                {
                    "field": "input",
                    "message": "blank line; expected one patient (a JSON object) per line",
                }
            ],
        }
    }
    assert out[3]["error"]["line"] == 4
    assert "error: line 2: input: blank line" in p.stderr


# ------------------------------------------------------------------ 7. CLI consistency
def test_version() -> None:
    from sarcoma_cds import __version__

    p = run("--version")
    assert p.returncode == 0 and p.stdout == f"sarcoma-cds {__version__}\n"


@pytest.mark.parametrize("args", [[], ["recommend"], ["kb"], ["kb", "archive"], ["groups"]])
def test_help_shows_no_type_next_to_flags(args: list[str]) -> None:
    p = run(*args, "--help")
    assert p.returncode == 0
    line = next(x for x in p.stdout.splitlines() if "--help" in x)
    assert "<bool>" not in line, line


def test_kb_archive_option_is_kb_archive(tmp_path: Path) -> None:
    p = run("kb", "archive", "--help")
    assert "--kb-archive" in p.stdout and "--to" not in p.stdout
    p = run(
        "kb", "archive", "--to", str(tmp_path / "a")
    )  # the old name still works, with a warning
    assert p.returncode == 0, p.stderr
    assert "--to is deprecated; use --kb-archive" in p.stderr
    from sarcoma_cds import load_kb

    assert (tmp_path / "a" / load_kb().version).is_dir()


def test_groups_json_has_the_rest_shape(tmp_path: Path) -> None:
    p = run("groups", "--format", "json")
    cli = json.loads(p.stdout)
    assert list(cli) == ["groups"] and len(cli["groups"]) == 16
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from conftest_service import BASE_URL, make_settings
    from sarcoma_cds.interfaces.api import create_app

    with TestClient(create_app(make_settings(tmp_path)), base_url=BASE_URL) as c:
        assert c.get("/groups").json() == cli


# ------------------------------------------------------------------ 8. quiet start
def _serve(tmp_path: Path, *args: str) -> list[str]:
    """Start ``serve`` on a free port, ask /healthz once, stop it; its stderr lines."""
    import os
    import signal
    import socket
    import time
    import urllib.request

    pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SARCOMA_CDS_") and k != "DATABASE_URL"
    }
    proc = subprocess.Popen([*CMD, "serve", "--port", str(port), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    return err.splitlines()


def test_serve_starts_with_one_line(tmp_path: Path) -> None:
    lines = _serve(tmp_path)
    assert lines[0].startswith("sarcoma-cds ") and "listening on http://127.0.0.1:" in lines[0]
    assert "audit store sqlite:///" in lines[0] and "no API keys" in lines[0]
    rest = lines[1:]
    assert all("sarcoma_cds.service.access" in x and "route=/healthz" in x for x in rest), rest
    assert len(rest) == 1  # the request's own line, as before


def test_serve_verbose_says_more(tmp_path: Path) -> None:
    text = "\n".join(_serve(tmp_path, "--verbose"))
    # the line, and the application's warning from each worker (one worker per core by default)
    assert text.count("no API keys") >= 2
    assert "Uvicorn running on" in text and "SARCOMA_CDS_BASE_URL is not set" in text


# --------------------------------------------------- 9. no deprecation warning from the test client
def test_test_client_imports_without_warnings() -> None:
    """Starlette's TestClient is built on httpx2; with only httpx installed it warns (the cause,
    fixed by the ``dev`` extra's ``httpx2``)."""
    pytest.importorskip("fastapi")
    p = subprocess.run([sys.executable, "-W", "error", "-c", "import fastapi.testclient"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


# ------------------------------------------------------ 11. cohort: Spark local mode binds loopback
@pytest.mark.spark
def test_spark_local_mode_binds_loopback() -> None:
    import os

    from test_cohort_equivalence import _spark_or_skip

    _spark_or_skip()  # (skips, or fails in CI, without PySpark or Java)

    code = ("from sarcoma_cds.cohort.backends import spark_session\n"
            "c = spark_session().sparkContext.getConf()\n"
            "print(c.get('spark.driver.bindAddress'), c.get('spark.driver.host'))\n")
    env = {k: v for k, v in os.environ.items() if k != "SPARK_LOCAL_IP"}
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["127.0.0.1", "127.0.0.1"]


# --------------------------------------------------------- 12. progress in rows, with the time left
def test_progress_shows_rows_and_time_left() -> None:
    pytest.importorskip("polars")
    import io

    from rich.console import Console

    from sarcoma_cds.cohort.progress import RowsColumn, progress_bar, rows_task

    assert rows_task(None, "x") is None  # (no display, no callback)
    clock = [100.0]
    prog = progress_bar(
        Console(file=io.StringIO(), force_terminal=True, width=160), get_time=lambda: clock[0]
    )
    steps = prog.add_task("evaluate (python): 1,000,000 patients", total=5, completed=1)
    report = rows_task(prog, "patients evaluated")
    assert report is not None
    report(0, 1_000_000)
    clock[0] = 105.0
    report(50_000, 1_000_000)
    clock[0] = 110.0
    report(100_000, 1_000_000)  # 10,000 rows a second: 90 s for the rest
    col = next(c for c in prog.columns if isinstance(c, RowsColumn))
    rows = prog.tasks[-1]
    assert col.render(rows).plain == "100,000/1,000,000, 0:01:30 left"
    assert col.render(prog.tasks[steps]).plain == ""  # the step bar shows no rows
    report(1_000_000, 1_000_000)
    assert col.render(rows).plain == "1,000,000/1,000,000"


def test_concordance_python_engine_reports_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pl = pytest.importorskip("polars")
    from sarcoma_cds import load_kb
    from sarcoma_cds.cohort import run
    from sarcoma_cds.cohort.synth import synth

    kb = load_kb()
    src = tmp_path / "c.parquet"
    synth(1200, seed=3, kb=kb).write_parquet(src)
    seen: list[tuple[str, int, int]] = []

    def fake_rows_task(prog: object, label: str):  # type: ignore[no-untyped-def]
        return lambda done, total: seen.append((label, done, total))

    monkeypatch.setattr(run, "rows_task", fake_rows_task)
    run.run_concordance(src, tmp_path / "o", kb, engine="python", progress=True)
    valid = pl.read_csv(tmp_path / "o" / "patients.csv").get_column("valid").sum()
    assert seen[0] == ("patients evaluated", 0, valid) and seen[-1] == (
        "patients evaluated",
        valid,
        valid,
    )
    assert len(seen) >= 3


# ------------------------------------------------------------------ 6. README and docs
ROOT = Path(__file__).resolve().parents[1]


def test_readme_says_how_to_reach_the_cli_and_the_port() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert ".venv/bin/sarcoma-cds" in quick and "source .venv/bin/activate" in quick
    assert "PORT=" in quick and "/api/docs" in quick
    assert "pip install 'sarcoma-cds[service]'" in quick
    run_script = (ROOT / "scripts" / "run").read_text(encoding="utf-8")
    assert '"${PORT:-8000}"' in run_script and "PORT=" in run_script.split("set -euo")[0]
    comments = "".join(ln for ln in run_script.splitlines() if ln.startswith("#"))
    assert "/api/docs" in comments and " /docs" not in comments  # (/docs is not served: 404)


def test_no_doc_points_outside_the_repository() -> None:
    """Every relative path or link in the Markdown files stays inside the repository."""
    import re

    docs = [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("examples/**/*.md"),
    ]
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        # links are relative to their file; paths quoted in code are read from the repository root
        links = [
            (doc.parent, t)
            for t in re.findall(r"\]\(([^)#\s]+)", text)
            if not t.startswith(("http", "mailto:"))
        ]
        quoted = [(ROOT, t) for t in re.findall(r"`((?:\.\./)+[^`\s]+)`", text)]
        for base, t in links + quoted:
            resolved = (base / t).resolve()
            assert resolved.is_relative_to(ROOT), (
                f"{doc.relative_to(ROOT)}: {t} is outside the repository"
            )
            assert resolved.exists(), f"{doc.relative_to(ROOT)}: {t} does not exist"
