"""Browser tests: real uvicorn server, Debian Chromium driven by Playwright, axe-core checks.

Screenshots go to test-artifacts/screenshots/ (laptop 1366x900 and tablet 820x1180).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.browser

VIEWPORTS = {"laptop": {"width": 1366, "height": 900}, "tablet": {"width": 820, "height": 1180}}

EXTREMITY_III = {
    "histology": "Undifferentiated pleomorphic sarcoma",
    "primary_site": "Lower limb",
    "disease_status": "Primary",
    "depth": "Deep",
    "grade": "Grade 3",
    "nodes": "N0",
    "metastasis": "M0",
    "resectability": "Resectable",
}
GIST_D842V = {
    "histology": "GIST",
    "primary_site": "Stomach",
    "disease_status": "Primary",
    "metastasis": "M0",
    "resectability": "Unresectable",
    "pdgfra_mutation": "D842V",
}


def fill(page: Any, selects: dict[str, str], texts: dict[str, str] | None = None) -> None:
    for name, label in selects.items():
        page.select_option(f"#f-{name}", label=label)
    for name, value in (texts or {}).items():
        page.fill(f"#f-{name}", value)


def regimen_row(page: Any, drug_text: str) -> Any:
    return page.locator(
        "table.regimens tr",
        has=page.locator("td.regimen", has_text=re.compile(rf"^\s*{drug_text}\s*$")),
    )


@pytest.mark.parametrize("vp", list(VIEWPORTS))
def test_browse_to_group(page: Any, vp: str, helpers: Any) -> None:
    page.set_viewport_size(VIEWPORTS[vp])
    page.goto("/")
    assert page.locator("h1").inner_text() == "Treatment algorithm"
    assert page.locator(".group-item").count() == 16
    for site in (
        "Extremity and trunk",
        "Retroperitoneal and intra-abdominal",
        "Gastrointestinal stromal tumour (GIST)",
    ):
        assert page.get_by_role("heading", name=re.compile(re.escape(site))).count() == 1
    helpers.shot(page, f"home-{vp}", full_page=False)
    helpers.axe(page, "home")
    # open a group in the tree (details/summary), then follow it to the group page
    item = page.locator(".group-item", has_text="Unresectable").filter(has_text="pathway").nth(2)
    item.locator("summary").click()
    item.get_by_role("link", name=re.compile("Open group")).click()
    page.wait_for_url(re.compile(r"/groups/gist\.unresectable$"))
    assert "GIST: unresectable" in page.locator("h1").inner_text()
    step = page.locator("#step-1-targeted_systemic_therapy")
    assert step.is_visible()
    assert "Applies to all patients" in step.inner_text()
    assert "avapritinib" in step.inner_text()
    helpers.shot(page, f"group-{vp}", full_page=False)
    helpers.axe(page, "group page")
    # a step is linkable
    page.goto("/groups/gist.unresectable#step-1-excision")
    assert page.locator("#step-1-excision").is_visible()


def test_search(page: Any, helpers: Any) -> None:
    page.goto("/")
    page.fill("#site-search", "avapritinib")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/search\?q=avapritinib"))
    assert page.locator(".hits").first.is_visible()
    assert "GIST" in page.locator("main").inner_text()
    helpers.axe(page, "search")


@pytest.mark.parametrize("vp", list(VIEWPORTS))
def test_extremity_stage_iii(page: Any, vp: str, helpers: Any) -> None:
    page.set_viewport_size(VIEWPORTS[vp])
    page.goto("/patient")
    if vp == "laptop":
        helpers.axe(page, "patient form")
        helpers.shot(page, "form-laptop", full_page=False)
    fill(page, EXTREMITY_III, {"size_cm": "12", "age_years": "58"})
    page.select_option("#f-ecog", value="1")  # ECOG is a choice (issue 14)
    page.get_by_role("button", name="Show recommendation").click()
    page.wait_for_selector("#result-h")
    assert "stage III" in page.locator("#result-h").inner_text()
    stage = page.locator(".card-stat").first.inner_text()
    assert "IIIB" in stage and "T3" in stage and "N0" in stage and "M0" in stage and "G3" in stage
    assert page.locator(".pathway-result").count() == 3
    assert page.locator(".badge.st-option").count() > 0
    assert page.locator("svg.diagram").count() == 1
    assert page.locator(".disclaimer").is_visible()
    helpers.shot(page, f"extremity-stage-iii-{vp}", full_page=False)
    helpers.axe(page, "extremity result")
    if vp != "laptop":
        return
    # save the case -> case view -> board (print view) -> patient summary
    page.fill("#case-label", "MDT demo: thigh UPS")
    page.get_by_role("button", name=re.compile("Save case")).click()
    page.wait_for_url(re.compile(r"/cases/[0-9a-f-]+$"))
    assert page.locator("h1").inner_text() == "MDT demo: thigh UPS"
    helpers.axe(page, "case view")
    helpers.shot(page, "case-laptop", full_page=False)
    helpers.shot_element(page.locator(".diagram-panel"), "diagram-laptop")
    assert (
        "one of 3 alternatives" in page.locator("svg.diagram").inner_html()
    )  # tied, not "best fit"
    page.get_by_role("link", name="Tumour-board summary", exact=True).click()
    page.wait_for_url(re.compile(r"/board$"))
    page.get_by_label("Chose another option").check()
    page.select_option("#d-chosen", value="excision")
    page.fill(
        "#d-rationale",
        "Patient declined preoperative radiotherapy; surgery first, adjuvant radiotherapy to be "
        "discussed.",
    )
    assert "Recorded by" in page.locator(".decision-form").inner_text()  # the user, not typed
    page.get_by_role("button", name="Record decision").click()
    page.wait_for_url(re.compile(r"/board$"))
    assert (
        "Patient declined preoperative radiotherapy" in page.locator(".board-decision").inner_text()
    )
    helpers.axe(page, "tumour-board summary")
    helpers.shot(page, "board-laptop")
    page.emulate_media(media="print")
    assert not page.locator(".topbar").is_visible()
    assert not page.locator(".board-form").is_visible()
    assert page.locator(".board").is_visible()
    helpers.shot(page, "board-print")
    page.emulate_media(media="screen")
    pdf = page.request.get(page.url + ".pdf")
    assert pdf.ok and pdf.body()[:5] == b"%PDF-"
    page.goto(page.url.rsplit("/", 1)[0] + "/patient-summary")
    text = page.locator("main").inner_text()
    assert "Discussion aid" in text
    assert "mg" not in text.split() and "ifosfamide" not in text.lower()
    helpers.axe(page, "patient summary")
    helpers.shot(page, "patient-summary-laptop")


@pytest.mark.parametrize("vp", list(VIEWPORTS))
def test_gist_d842v(page: Any, vp: str, helpers: Any) -> None:
    page.set_viewport_size(VIEWPORTS[vp])
    page.goto("/patient")
    fill(page, GIST_D842V, {"size_cm": "8", "mitotic_rate_per_5mm2": "6"})
    page.get_by_role("button", name="Show recommendation").click()
    page.wait_for_selector("#result-h")
    assert "GIST: unresectable" in page.locator("#result-h").inner_text()
    imatinib = regimen_row(page, "imatinib")
    avapritinib = regimen_row(page, "avapritinib")
    assert "Not recommended" in imatinib.inner_text()
    assert "D842V" in imatinib.inner_text()  # the reason stays visible
    assert "Preferred" in avapritinib.inner_text()
    risk = page.locator(".facts-cards").inner_text()
    assert "AFIP" in risk and "NIH" in risk.upper() and "High" in risk
    # missing facts at the top link back to the form fields
    link = page.locator(".callout-missing a[href='#f-ntrk_fusion']")
    assert link.count() == 1
    helpers.shot(page, f"gist-d842v-{vp}", full_page=False)
    helpers.axe(page, "GIST result")
    if vp != "laptop":
        return
    link.click()
    assert page.evaluate("document.activeElement.id") == "f-ntrk_fusion"
    # what would change it
    page.goto(page.url)  # back at the result
    page.go_back()
    page.locator("a", has_text="See what each value would change").first.click()
    page.wait_for_url(re.compile(r"/patient/what-if\?"))
    ntrk = page.locator("#wi-ntrk_fusion")
    assert ntrk.is_visible()
    assert "Conditional" in ntrk.inner_text() and "Preferred" in ntrk.inner_text()
    assert page.locator("#wi-resectability").is_visible()
    helpers.axe(page, "what-if")
    helpers.shot(page, "what-if-laptop", full_page=False)


def test_out_of_scope(page: Any, helpers: Any) -> None:
    page.goto("/patient")
    fill(page, {"histology": "Rhabdomyosarcoma", "primary_site": "Lower limb"})
    page.get_by_role("button", name="Show recommendation").click()
    page.wait_for_selector("#result-h")
    assert "Outside the algorithm" in page.locator("#result-h").inner_text()
    assert "outside the source algorithm" in page.locator(".result-head").inner_text()
    assert page.locator(".pathway-result").count() == 0
    assert page.locator(".disclaimer").is_visible()
    helpers.shot(page, "out-of-scope-laptop", full_page=False)
    helpers.axe(page, "out-of-scope result")


def test_validation_and_keyboard(page: Any, helpers: Any) -> None:
    page.goto("/patient")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    fill(page, {"histology": "GIST", "primary_site": "Stomach", "metastasis": "M0",
                "metastatic_burden": "Disseminated"}, {"size_cm": "twelve"})
    page.get_by_role("button", name="Show recommendation").click()
    page.wait_for_selector("#error-summary")
    errs = page.locator("#error-summary").inner_text()
    assert "Size" in errs and "Metastatic burden" in errs
    assert (
        "expected a number"
        in page.locator(".has-error", has=page.locator("#f-size_cm")).inner_text()
    )
    assert page.locator("#f-size_cm").input_value() == "twelve"  # nothing the user typed is lost
    assert page.evaluate("document.activeElement.id") == "error-summary"
    helpers.shot(page, "validation-laptop", full_page=False)
    helpers.axe(page, "form with errors")


def test_core_path_without_javascript(browser: Any, server: str) -> None:
    ctx = browser.new_context(
        java_script_enabled=False, base_url=server, viewport=VIEWPORTS["laptop"]
    )
    pg = ctx.new_page()
    try:
        pg.goto("/patient")
        fill(pg, GIST_D842V)
        pg.get_by_role("button", name="Show recommendation").click()
        pg.wait_for_selector("#result-h")
        assert "GIST: unresectable" in pg.locator("#result-h").inner_text()
        assert "Preferred" in regimen_row(pg, "avapritinib").inner_text()
    finally:
        ctx.close()
