"""HTTP-level tests of the web pages (FastAPI TestClient, no JavaScript involved)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sarcoma_cds import FACT_FIELDS, PatientFacts, load_kb
from sarcoma_cds.interfaces.web.forms import _literal_values

HTML = {"accept": "text/html,application/xhtml+xml"}
FIXTURES = Path(__file__).parent / "fixtures"

EXTREMITY_III = {
    "histology": "undifferentiated_pleomorphic_sarcoma", "primary_site": "lower_extremity",
    "size_cm": "12", "depth": "deep", "grade": "3", "nodes": "N0", "metastasis": "M0",
    "resectability": "resectable", "disease_status": "primary",
}
GIST_D842V = {
    "histology": "gist", "primary_site": "stomach", "size_cm": "8", "mitotic_rate_per_5mm2": "6",
    "metastasis": "M0", "resectability": "unresectable", "disease_status": "primary",
    "pdgfra_mutation": "d842v",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    data_dir = tmp_path_factory.mktemp("web")
    try:
        from sarcoma_cds.interfaces.api.app import create_app
        from sarcoma_cds.interfaces.api.settings import Settings
    except ImportError:  # the service layer is optional for the pages
        from sarcoma_cds.interfaces.web import create_web_app

        return TestClient(create_web_app(None))
    from tests.conftest_service import TEST_HOSTS, csrf_client_class

    # (a browser-like client: the service's forms carry a CSRF token; issue 12)
    return csrf_client_class()(create_app(Settings(data_dir=data_dir, allowed_hosts=TEST_HOSTS)))


def text(html: str) -> str:
    """Visible-ish text: tags removed, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def regimen_row(html: str, regimen: str) -> str:
    for row in re.findall(r"<tr class=\"opt-[a-z_]+\">.*?</tr>", html, flags=re.S):
        if re.search(rf'<td class="regimen">\s*{re.escape(regimen)}\s*(<|$)', row):
            return text(row)
    raise AssertionError(f"no regimen row {regimen!r}")


# --------------------------------------------------------------------------- algorithm

def test_home_lists_every_group_by_site(client: TestClient) -> None:
    r = client.get("/", headers=HTML)
    assert r.status_code == 200
    kb = load_kb()
    for g in kb.data.groups:
        assert f'href="/groups/{g.id}"' in r.text
    for site in (
        "Extremity and trunk",
        "Retroperitoneal and intra-abdominal",
        "Gastrointestinal stromal tumour (GIST)",
    ):
        assert site in r.text
    assert "do not replace the judgement" in r.text  # disclaimer on every page
    assert '<form class="search" role="search" action="/search"' in r.text


def test_group_pages_have_linkable_steps(client: TestClient) -> None:
    kb = load_kb()
    for g in kb.data.groups:
        r = client.get(f"/groups/{g.id}", headers=HTML)
        assert r.status_code == 200, g.id
        assert g.label in r.text
        for pi, p in enumerate(g.pathways, start=1):
            for s in p.steps:
                assert f'id="step-{pi}-{s.treatment}"' in r.text
                assert f'href="#step-{pi}-{s.treatment}"' in r.text
        assert "Applies to all patients" in r.text


def test_group_page_and_api_share_the_path(client: TestClient) -> None:
    r = client.get("/groups/gist.unresectable", headers={"accept": "application/json"})
    if r.status_code == 404:
        pytest.skip("no REST API mounted")
    assert r.headers["content-type"].startswith("application/json")
    assert (
        client.get("/groups/gist.unresectable", headers=HTML)
        .headers["content-type"]
        .startswith("text/html")
    )


def test_unknown_group_is_404(client: TestClient) -> None:
    r = client.get("/groups/extremity.nope", headers=HTML)
    assert r.status_code == 404
    assert "no patient group" in r.text


@pytest.mark.parametrize(("q", "expect"), [
    ("avapritinib", "Targeted systemic therapy"),
    ("neoadjuvant radiotherapy", "Neoadjuvant radiotherapy"),
    ("retroperitoneal", "Retroperitoneal or intra-abdominal: resectable"),
])
def test_search(client: TestClient, q: str, expect: str) -> None:
    r = client.get("/search", params={"q": q})
    assert r.status_code == 200
    assert expect in r.text
    assert "0 results" not in r.text


# --------------------------------------------------------------------------- form

def test_form_has_a_labelled_control_for_every_fact(client: TestClient) -> None:
    html = client.get("/patient").text
    for name in FACT_FIELDS:
        assert f'id="f-{name}"' in html, name
        assert (f'for="f-{name}"' in html) or re.search(rf'id="f-{name}"[^>]*>\s*<legend>', html), (
            name
        )
        values = _literal_values(PatientFacts.model_fields[name].annotation)
        for v in values or []:
            assert f'value="{v}"' in html, (name, v)
    assert 'method="post" action="/patient"' in html
    assert "cm" in html and "per 5 mm²" in html  # units shown


def test_extremity_stage_iii(client: TestClient) -> None:
    r = client.post("/patient", data=EXTREMITY_III)
    assert r.status_code == 200
    t = text(r.text)
    assert "Extremity or trunk: stage III or nodal stage IV (any T, N1, M0), resectable" in t
    assert "IIIB" in t and "T3" in t and "N0" in t and "M0" in t and "G3" in t
    assert "Neoadjuvant radiotherapy or chemoradiation" in t
    assert "badge st-option" in r.text
    assert "<svg" in r.text and "Pathway 1 — one of 3 alternatives" in r.text  # tied: no "best fit"
    assert "do not replace the judgement" in t


def test_gist_d842v_imatinib_not_recommended_avapritinib_preferred(client: TestClient) -> None:
    r = client.post("/patient", data=GIST_D842V)
    assert r.status_code == 200
    imatinib = regimen_row(r.text, "imatinib")
    assert "Not recommended" in imatinib and "D842V" in imatinib
    assert "Preferred" in regimen_row(r.text, "avapritinib")
    t = text(r.text)
    assert "AFIP (Miettinen &amp; Lasota 2006)" in t and "Modified NIH (Joensuu 2008)" in t
    # missing facts at the top, linked to their form fields on the same page
    assert 'href="#f-ntrk_fusion"' in r.text and 'id="f-ntrk_fusion"' in r.text
    assert r.text.index("Missing facts") < r.text.index("Pathways")


def test_out_of_scope(client: TestClient) -> None:
    r = client.post(
        "/patient", data={"histology": "rhabdomyosarcoma", "primary_site": "lower_extremity"}
    )
    assert r.status_code == 200
    t = text(r.text)
    assert "Outside the algorithm’s scope" in t
    assert "outside the source algorithm" in t
    assert "pathway-result" not in r.text


def test_validation_messages_sit_next_to_their_field(client: TestClient) -> None:
    bad = {"histology": "gist", "primary_site": "stomach", "size_cm": "twelve", "metastasis": "M0",
           "metastatic_burden": "disseminated", "ecog": "7"}
    r = client.post("/patient", data=bad)
    assert r.status_code == 422
    for field in ("size_cm", "metastatic_burden", "ecog"):
        m = re.search(
            rf'id="f-{field}".*?<p class="field-error" id="e-{field}">(.*?)</p>', r.text, flags=re.S
        )
        assert m, field
        assert 'aria-invalid="true"' in r.text
    assert "expected a number" in r.text
    assert "only with metastasis M1" in r.text
    assert 'value="twelve"' in r.text  # what was typed is kept
    assert 'href="#f-size_cm"' in r.text  # error summary links to the field
    assert "Personalised recommendation" not in r.text


def test_required_fields(client: TestClient) -> None:
    r = client.post("/patient", data={"size_cm": "3"})
    assert r.status_code == 422
    assert re.search(r'id="e-histology">.*required field is missing', r.text, flags=re.S)
    assert re.search(r'id="e-primary_site">.*required field is missing', r.text, flags=re.S)


def test_prefill_from_query(client: TestClient) -> None:
    r = client.get(
        "/patient",
        params={
            "histology": "gist",
            "primary_site": "stomach",
            "prior_therapies": ["imatinib_standard_dose", "sunitinib"],
        },
    )
    assert '<option value="gist" selected>' in r.text
    assert 'value="sunitinib" checked' in r.text


# --------------------------------------------------------------------------- what-if

def test_what_if_varies_missing_and_decisive_facts(client: TestClient) -> None:
    r = client.get("/patient/what-if", params=GIST_D842V)
    assert r.status_code == 200
    assert 'id="wi-ntrk_fusion"' in r.text
    assert 'id="wi-resectability"' in r.text
    section = r.text.split('id="wi-ntrk_fusion"')[1].split("</section>")[0]
    assert "larotrectinib" in section and "Preferred" in section
    res = r.text.split('id="wi-resectability"')[1].split("</section>")[0]
    assert "Group changes to" in res
    # the same facts via POST (the form's second button), no retyping
    assert client.post("/patient/what-if", data=GIST_D842V).status_code == 200


# --------------------------------------------------------------------------- cases

@pytest.fixture(scope="module")
def case_url(client: TestClient) -> str:
    r = client.post(
        "/cases", data={**EXTREMITY_III, "case_label": "MDT 1 / case 3"}, follow_redirects=False
    )
    assert r.status_code == 303
    return str(r.headers["location"])


def test_saved_case_reopens(client: TestClient, case_url: str) -> None:
    r = client.get(case_url)
    assert r.status_code == 200
    assert "MDT 1 / case 3" in r.text
    assert "IIIB" in r.text
    assert "Undifferentiated pleomorphic sarcoma" in r.text  # facts kept
    assert "MDT 1 / case 3" in client.get("/cases").text


def test_decision_recorded_with_validation(client: TestClient, case_url: str) -> None:
    r = client.post(
        case_url + "/decision", data={"outcome": "overridden", "chosen": "", "rationale": ""}
    )
    assert r.status_code == 422
    assert "Name the option that was chosen" in r.text and "Give the reason" in r.text
    r = client.post(
        case_url + "/decision",
        data={
            "outcome": "overridden",
            "chosen": "excision",
            "rationale": "Declined radiotherapy before surgery.",
            "next": "board",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("/board")
    board = client.get(case_url + "/board").text
    assert "Chose another option" in board and "Declined radiotherapy before surgery." in board
    client.post(case_url + "/decision", data={"outcome": "accepted"})
    assert "Accepted the recommendation" in client.get(case_url).text


def test_board_is_printable_and_downloadable(client: TestClient, case_url: str) -> None:
    r = client.get(case_url + "/board")
    assert "Sarcoma tumour board" in r.text and "do not replace the judgement" in r.text
    css = client.get("/static/web/web.css").text
    assert "@media print" in css and "@page" in css
    pdf = client.get(case_url + "/board.pdf")
    if pdf.status_code == 503:
        pytest.skip("WeasyPrint not available here")
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    assert pdf.headers["content-type"] == "application/pdf"


def test_patient_summary_is_plain(client: TestClient, case_url: str) -> None:
    r = client.get(case_url + "/patient-summary")
    assert r.status_code == 200
    t = text(r.text).lower()
    assert "discussion aid" in t and "not a treatment plan" in t
    for jargon in ("mg", "ifosfamide", "doxorubicin", "neoadjuvant", "fnclcc", "iiib", "ajcc"):
        assert not re.search(
            rf"\b{jargon}\b",
            t.split("skip to content")[-1].split("decision support, not an order")[0],
        ), jargon


def test_diagram_svg(client: TestClient, case_url: str) -> None:
    r = client.get(case_url + "/diagram.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    assert root.tag.endswith("svg")
    # three tied pathways: alternatives, not one "best fit" (issue 14)
    assert "best fit" not in r.text and "one of 3 alternatives" in r.text and "Stage III" in r.text
    assert 'stroke="#0b5d6b" stroke-width="3"' in r.text  # the taken branch is highlighted


def test_exports(client: TestClient, case_url: str) -> None:
    rec = client.get(case_url + "/recommendation.json").json()
    assert rec["patient_group"]["id"] == "extremity.stage_iii_resectable"
    assert rec["schema_version"] == "1.1"
    facts = client.get(case_url + "/facts.json").json()
    assert facts["histology"] == "undifferentiated_pleomorphic_sarcoma" and facts["size_cm"] == 12
    fhir = client.get(case_url + "/recommendation.fhir.json")
    if fhir.status_code == 501:
        pytest.skip("no FHIR service layer")
    assert fhir.json()["resourceType"] == "Bundle"


def test_unknown_case_404(client: TestClient) -> None:
    assert client.get("/cases/does-not-exist").status_code == 404


# --------------------------------------------------------------------------- import

def test_import_json_file(client: TestClient) -> None:
    facts = {k: v for k, v in GIST_D842V.items()}
    facts["size_cm"] = 8
    facts["mitotic_rate_per_5mm2"] = 6
    r = client.post("/import", files={"file": ("p.json", json.dumps(facts), "application/json")})
    assert r.status_code == 200
    assert "Imported from patient facts" in r.text
    assert "Preferred" in regimen_row(r.text, "avapritinib")
    wrapped = client.post("/import", data={"text": json.dumps({"facts": facts})})
    assert wrapped.status_code == 200 and "GIST: unresectable" in wrapped.text


@pytest.mark.parametrize(("payload", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "Expected a JSON object"),
    ('{"histology": "gist", "primary_site": "stomach", "sise_cm": 3}', "Unknown fields"),
    ("", "Choose a file"),
    ('{"histology": "gist", "primary_site": "stomach", "primary_site": "small_intestine"}',
     "The field &#39;primary_site&#39; is given more than once"),
])
def test_import_errors(client: TestClient, payload: str, message: str) -> None:
    r = client.post("/import", data={"text": payload})
    assert r.status_code == 422
    assert message in r.text


def test_import_fhir_bundle(client: TestClient) -> None:
    path = FIXTURES / "fhir" / "gist-pdgfra-d842v.json"
    if not path.exists():
        pytest.skip("no FHIR fixture")
    r = client.post(
        "/import", files={"file": (path.name, path.read_bytes(), "application/fhir+json")}
    )
    if "FHIR import needs the service layer" in r.text:
        pytest.skip("no FHIR service layer")
    assert r.status_code in (200, 422)
    assert "Imported from FHIR / mCODE bundle" in r.text or "Please check" in r.text
    if r.status_code == 200:
        assert "avapritinib" in r.text


def test_pages_without_services() -> None:
    """The pages also work mounted without the service layer (in-memory fallback)."""
    from sarcoma_cds.interfaces.web import create_web_app

    c = TestClient(create_web_app(None))
    assert c.get("/", headers=HTML).status_code == 200
    r = c.post("/cases", data=GIST_D842V, follow_redirects=False)
    assert r.status_code == 303
    assert "GIST: unresectable" in c.get(r.headers["location"]).text




# --------------------------------------------------------------------------- issue 14: bottom line

EXAMPLES = Path(__file__).parents[1] / "examples" / "patients"


def _rec(name: str) -> tuple[dict, dict]:
    from sarcoma_cds import recommend

    facts = json.loads((EXAMPLES / name).read_text())
    return facts, recommend(facts).model_dump(mode="json")


def test_bottom_line_names_the_preferred_drug_and_groups_ruled_out_reasons() -> None:
    from sarcoma_cds.interfaces.web.present import bottom_line

    facts, rec = _rec("gist-pdgfra-d842v-metastatic.json")
    bl = bottom_line(rec, facts)
    assert bl.group == "GIST: recurrent or metastatic"
    assert [i for g in bl.preferred for i in g.items] == ["avapritinib (targeted systemic therapy)"]
    reasons = [g.reason for g in bl.ruled_out]
    assert len(reasons) == len(set(reasons)) == 4  # each reason once
    ntrk = next(g for g in bl.ruled_out if "NTRK" in g.reason)
    assert ntrk.items == ["larotrectinib", "entrectinib", "repotrectinib"]
    assert bl.risk_not_applicable  # metastatic: AFIP/NIH do not apply
    assert "preferred: avapritinib" in bl.sentence


def test_bottom_line_without_a_preferred_choice_lists_the_alternatives() -> None:
    from sarcoma_cds.interfaces.web.present import bottom_line

    facts, rec = _rec("03-extremity.stage_iii_resectable.json")
    bl = bottom_line(rec, facts)
    assert bl.stage == "IIIA" and not bl.preferred
    assert bl.alternatives == [
        "Neoadjuvant radiotherapy or chemoradiation",
        "Neoadjuvant systemic therapy",
        "Excision",
    ]
    assert (
        len(bl.caution) == 1 and not bl.risk_not_applicable
    )  # same regimens: their two reasons on one line
    assert bl.caution[0].reason.count("Grade 3") == 1
    assert "3 alternative pathways, none preferred" in bl.sentence


def test_bottom_line_for_an_unpinned_group_reports_what_holds_and_what_is_missing() -> None:
    from sarcoma_cds.interfaces.web.present import bottom_line

    facts, rec = _rec("missing-resectability.json")
    bl = bottom_line(rec, facts, lambda g: g.upper())
    assert bl.group == "Not yet decided between 2 groups"
    assert bl.candidates == ["EXTREMITY.STAGE_III_RESECTABLE", "EXTREMITY.STAGE_III_UNRESECTABLE"]
    assert [f for f, _ in bl.missing] == ["resectability"]
    rec["across_candidates"] = [
        {
            "drugs": ["imatinib"],
            "status": "not_recommended",
            "reasons": ["r"],
            "groups": rec["candidate_groups"],
        },
        {"drugs": ["x"], "status": "preferred", "reasons": [], "groups": ["one"]},
    ]
    assert bottom_line(rec, facts).holds == [
        ("not_recommended", "imatinib", "r")
    ]  # only if in every group


def test_bottom_line_out_of_scope() -> None:
    from sarcoma_cds.interfaces.web.present import bottom_line

    facts, rec = _rec("out-of-scope-head-neck.json")
    bl = bottom_line(rec, facts)
    assert bl.out_of_scope and bl.sentence == "Outside the algorithm's scope."


def test_risk_applies_only_to_localised_gist() -> None:
    from sarcoma_cds.interfaces.web.present import risk_applies

    assert risk_applies(
        {"metastasis": "M0", "disease_status": "primary"},
        {"patient_group": {"id": "gist.unresectable"}},
    )
    assert not risk_applies({"metastasis": "M1"}, {})
    assert not risk_applies({"disease_status": "recurrent"}, {})


def _save(client: TestClient, name: str) -> str:
    from sarcoma_cds.interfaces.web.forms import form_values

    facts = json.loads((EXAMPLES / name).read_text())
    r = client.post("/cases", data=form_values(facts), headers=HTML, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    return str(r.headers["location"])


@pytest.mark.parametrize("suffix", ["", "/board"])
def test_bottom_line_heads_case_and_board_pages(client: TestClient, suffix: str) -> None:
    url = _save(client, "gist-pdgfra-d842v-metastatic.json") + suffix
    html = client.get(url, headers=HTML).text
    assert html.index('id="bl-h"') < html.index("Targeted systemic therapy")
    # (the collapsed "How this was worked out" is the engine's audit trail, regimen by regimen)
    t = text(re.sub(r'<details class="panel explanation".*?</details>', "", html, flags=re.S))
    once = (
        1 if suffix else 2
    )  # item 3: each reason once (the case page: bottom line + regimen table)
    assert t.count("No NTRK gene fusion; TRK inhibitors do not match") == once
    assert t.count("Not SDH-deficient; in this setting") == once
    assert "Not used here: the AFIP and NIH schemes" in t  # item 5
    assert "GIST risk · AFIP" not in t  # no prominent risk card for metastatic disease


def test_bottom_line_on_the_result_page(client: TestClient) -> None:
    r = client.post("/patient", data=EXTREMITY_III, headers=HTML)
    t = text(r.text)
    assert "Bottom line" in t and "AJCC 8 stage IIIB" in t
    assert "No single choice is preferred: 3 alternative pathways" in t


def test_risk_cards_stay_for_localised_gist(client: TestClient) -> None:
    html = client.get(
        _save(client, "13-gist.resectable_significant_morbidity.json"), headers=HTML
    ).text
    assert "GIST risk · AFIP" in text(html) and "Not used here" not in text(html)


def pdf_objects(pdf: bytes) -> bytes:
    """A PDF's objects as text: the file and its (zlib) object streams, inflated."""
    import contextlib
    import zlib

    blobs = [pdf]
    for m in re.finditer(rb"stream\r?\n(.*?)\nendstream", pdf, flags=re.S):
        # the end-of-line before "endstream" may be CR LF, or the data's own last byte may be a
        # CR: inflate leniently (a decompress object keeps what it could inflate, never raises
        # on a missing or extra byte at the end), so a page is never missed by chance
        with contextlib.suppress(zlib.error):
            blobs.append(zlib.decompressobj().decompress(m.group(1)))
    return b"\n".join(blobs)


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf_objects(pdf)))


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_board_pdf_is_one_a4_page_for_every_example(client: TestClient, name: str) -> None:
    pytest.importorskip("weasyprint")
    url = _save(client, name)
    # the board's override with a long rationale must not push the sheet onto a second page
    client.post(url + "/decision",
                data={"outcome": "deferred", "rationale": "Await the MRI. " * 20})
    client.post(
        url + "/decision",
        data={
            "outcome": "overridden",
            "chosen": _first_choice(client, url),
            "rationale": "Patient preference, discussed at length. " * 40,
        },
    )
    r = client.get(url + "/board.pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    assert pdf_pages(r.content) == 1, name
    assert re.search(rb"/MediaBox \[0 0 595\.\d* 841\.", pdf_objects(r.content))  # A4 in points


def _first_choice(client: TestClient, url: str) -> str:
    m = re.search(
        r'<select id="d-chosen" name="chosen"[^>]*>\s*<option value="">—</option>\s*<option '
        r'value="([^"]+)"',
        client.get(url, headers=HTML).text,
    )
    return m.group(1) if m else ""


def test_board_sheet_shows_the_preferred_choice_first(client: TestClient) -> None:
    html = client.get(
        _save(client, "gist-pdgfra-d842v-metastatic.json") + "/board", headers=HTML
    ).text
    sheet = html[html.index('class="board sheet"'):]
    assert sheet.index("avapritinib") < sheet.index("imatinib")
    assert "9 ruled out" in text(sheet)


def test_decision_form_preselects_nothing_and_checks_the_option(client: TestClient) -> None:
    url = _save(client, "03-extremity.stage_iii_resectable.json")
    html = client.get(url, headers=HTML).text
    assert not re.search(r'name="outcome" value="[a-z]+" checked', html)
    r = client.post(
        url + "/decision",
        data={"outcome": "overridden", "chosen": "imatinib_for_everyone", "rationale": "x"},
        headers=HTML,
    )
    assert r.status_code == 422 and "Choose one of this case" in r.text
    ok = client.post(
        url + "/decision",
        data={"outcome": "overridden", "chosen": _first_choice(client, url), "rationale": "x"},
        follow_redirects=False,
    )
    assert ok.status_code == 303


def test_favicon_and_missing_case_page(client: TestClient) -> None:
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    r = client.get("/cases/no-such-case", headers=HTML)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "There is no saved case" in r.text and "<h1>Not found</h1>" in r.text
    assert client.get("/cases/no-such-case/board.pdf").status_code == 404


def test_disclaimer_icon_is_drawn_and_print_has_a_no_script_hint(client: TestClient) -> None:
    url = _save(client, "01-extremity.stage_i.json")
    assert "ⓘ" not in client.get(url, headers=HTML).text
    assert "<noscript>" in client.get(url + "/board", headers=HTML).text


def test_form_messages_in_plain_words() -> None:
    from sarcoma_cds.interfaces.web.forms import plain_message, validate

    assert plain_message("Input should be less than or equal to 4") == "must be 4 or less"
    assert plain_message("Input should be greater than or equal to 0") == "must be 0 or more"
    errs = validate(
        {
            "histology": "gist",
            "primary_site": "stomach",
            "ecog": 7,
            "mitotic_rate_per_5mm2": -1,
            "disease_status": "primary",
            "progression_extent": "limited",
        }
    )
    flat = " ".join(m for ms in errs.values() for m in ms)
    assert "Input should" not in flat and "_" not in flat
    assert "disease status progressive" in flat


def test_ecog_is_a_choice_and_ntrk_sits_outside_the_gist_section(client: TestClient) -> None:
    html = client.get("/patient", headers=HTML).text
    assert re.search(r'<select id="f-ecog" name="ecog"', html)
    assert '<option value="4"' in html
    gist = html[html.index("section-gist"):html.index("section-molecular")]
    assert 'id="f-kit_mutation"' in gist and 'id="f-ntrk_fusion"' not in gist
    r = client.post("/patient", data={**EXTREMITY_III, "ecog": "2"}, headers=HTML)
    assert r.status_code == 200 and 'value="2" selected' in r.text


def test_search_links_drug_places_and_tolerates_a_typo(client: TestClient) -> None:
    html = client.get("/search?q=avapritinib", headers=HTML).text
    drugs = html[html.index('id="h-drug"'):]
    assert re.search(
        r'<a href="/groups/gist\.unresectable#step-1-targeted_systemic_therapy">', drugs
    )
    typo = client.get("/search?q=avaprtinib", headers=HTML).text
    assert "showing the closest spelling" in typo and "avapritinib" in typo
    assert "0 results" in client.get("/search?q=xyzzy", headers=HTML).text


def test_import_over_256_kib_answers_with_the_page(client: TestClient) -> None:
    big = b'{"histology": "gist", "primary_site": "stomach", "pad": "' + b"x" * (300 * 1024) + b'"}'
    r = client.post(
        "/import", files={"file": ("facts.json", big, "application/json")}, headers=HTML
    )
    assert r.headers["content-type"].startswith("text/html")
    assert (
        r.status_code == 422 and "Unknown fields" in r.text
    )  # read by the page, not refused as JSON
    huge = b"x" * (1024 * 1024 + 10)
    r = client.post(
        "/import", files={"file": ("facts.json", huge, "application/json")}, headers=HTML
    )
    assert r.headers["content-type"].startswith("text/html") and "larger than 1 MB" in r.text
    r = client.post(
        "/import", files={"file": ("facts.json", b"x" * (3 * 1024 * 1024), "application/json")}
    )
    assert r.status_code == 413 and r.headers["content-type"].startswith("text/html")
    assert (
        client.post("/recommend", content=b"x" * (300 * 1024)).status_code == 413
    )  # the API keeps 256 KiB


def test_api_docs_load_nothing_from_a_cdn(client: TestClient) -> None:
    pytest.importorskip("fastapi_offline")
    for url in ("/api/docs", "/api/redoc"):
        r = client.get(url)
        assert r.status_code == 200
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert refs and all(u.startswith("/") for u in refs), refs
        assert "googleapis" not in r.text and "cdn." not in r.text
    assert client.get("/api/docs-static/swagger-ui-bundle.js").status_code == 200


def test_patient_summary_keeps_the_alternatives_apart_and_says_spread_not_come_back(
    client: TestClient,
) -> None:
    t = text(
        client.get(
            _save(client, "03-extremity.stage_iii_resectable.json") + "/patient-summary",
            headers=HTML,
        ).text
    )
    assert "There are 3 possible ways to go" in t and "Way 1" in t and "Way 3" in t
    assert "A main first treatment" not in t and "Usually added" not in t
    t = text(client.get(_save(client, "gist-pdgfra-d842v-metastatic.json") + "/patient-summary",
                        headers=HTML).text)
    assert "has spread to other parts of the body" in t and "come back" not in t  # M1 at diagnosis
    assert "possible ways" not in t  # one pathway: no choice to announce



def test_diagram_tells_the_stage_iii_groups_apart_and_names_regimen_and_genotype(
    client: TestClient,
) -> None:
    svg = client.get(_save(client, "03-extremity.stage_iii_resectable.json") + "/diagram.svg").text
    texts = " ".join(re.findall(r">([^<>]+)</text>", svg))
    assert (
        "resectable" in texts
        and "unresectable" in texts
        and "…"
        not in "".join(
            re.findall(r'font-weight="700" fill="#(?:1c2733|5b6875)">([^<]+)</text>', svg)
        )
    )  # group labels whole
    assert "Stage IIIA" in texts
    svg = client.get(_save(client, "gist-pdgfra-d842v-metastatic.json") + "/diagram.svg").text
    assert "PDGFRA D842V" in svg and "avapritinib" in svg
    assert "best fit" not in svg  # one pathway: nothing to compare


def test_tumour_board_mode_lists_the_day_and_walks_the_sheets(tmp_path: Path) -> None:
    from sarcoma_cds.interfaces.web import create_web_app

    c = TestClient(create_web_app(None))  # a fresh store: only this session's cases
    assert "No case was saved today" in c.get("/board", headers=HTML).text
    first = _save(c, "03-extremity.stage_iii_resectable.json")
    _save(c, "gist-pdgfra-d842v-metastatic.json")
    t = text(c.get("/board", headers=HTML).text)
    assert "3 alternative pathways, none preferred" in t and "preferred: avapritinib" in t
    one = c.get("/board/1", headers=HTML).text
    assert "Case 1 of 2" in one and 'href="/board/2" rel="next"' in one and 'id="bl-h"' in one
    assert 'name="next" value="/board/1"' in one
    r = c.post(
        first + "/decision",
        data={"outcome": "deferred", "next": "/board/1"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/board/1"
    assert "Decision: Deferred" in c.get("/board", headers=HTML).text
    assert c.get("/board/3", headers=HTML).status_code == 404


def test_compare_two_cases_side_by_side(client: TestClient) -> None:
    a = _save(client, "03-extremity.stage_iii_resectable.json").rsplit("/", 1)[1]
    b = _save(client, "04-extremity.stage_iii_unresectable.json").rsplit("/", 1)[1]
    r = client.get(f"/compare?id={a}&id={b}", headers=HTML)
    assert r.status_code == 200
    t = text(r.text)
    assert "Facts that differ" in t and "Resectability" in t
    assert 'id="bl-h-1"' in r.text and 'id="bl-h-2"' in r.text and 'id="bl-h"' not in r.text
    assert client.get(f"/compare?id={a}", headers=HTML).status_code == 422
    assert 'action="/compare"' in client.get("/cases", headers=HTML).text


def test_what_if_varies_the_size_too(client: TestClient) -> None:
    from sarcoma_cds.interfaces.web.forms import facts_query

    facts = json.loads((EXAMPLES / "03-extremity.stage_iii_resectable.json").read_text())
    html = client.get("/patient/what-if?" + facts_query(facts), headers=HTML).text
    size = html[html.index('id="wi-size_cm"'):]
    size = size[:size.index("</section>")]
    assert "4 cm" in size and "8 cm" in size and "Group changes to" in size


@pytest.mark.parametrize("brand,generic", [("Gleevec", "imatinib"), ("sutent", "sunitinib"),
                                           ("Yondelis", "trabectedin")])
def test_search_finds_a_drug_by_its_brand_name(
    client: TestClient, brand: str, generic: str
) -> None:
    """Brand names come from the FHIR reader's drugs table (one table, with its provenance)."""
    from sarcoma_cds.adapters.fhir.terms import brand_names

    if brand.lower() not in brand_names():
        pytest.skip(f"{brand} is not in the drugs table")
    html = client.get("/search", params={"q": brand}, headers=HTML).text
    assert "0 results" not in html
    assert generic in html and brand in html and "is a brand name" in html
