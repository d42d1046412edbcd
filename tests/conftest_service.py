"""Shared helpers of the service tests (import explicitly; not a conftest plugin)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

FIXTURES = Path(__file__).parent / "fixtures"
MCODE_DIR = FIXTURES / "mcode"
FHIR_DIR = FIXTURES / "fhir"
BASE_URL = "http://cds.test"
ISS = "https://ehr.example.org"

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


# ------------------------------------------------------------------ app fixtures

#: Host names the test clients use (TestClient's default ``testserver``, BASE_URL's ``cds.test``):
#: allowed in the tests' settings, never by the production defaults (DNS rebinding, issue 12).
TEST_HOSTS = ["testserver", "cds.test", "127.0.0.1", "localhost"]


def make_settings(tmp_path: Path, **kw: Any) -> Any:
    from sarcoma_cds.interfaces.api.settings import Settings

    kw.setdefault("allowed_hosts", TEST_HOSTS)
    return Settings(data_dir=tmp_path / "data", **kw)


def write_api_keys(tmp_path: Path, keys: dict[str, str]) -> Path:
    import hashlib

    p = tmp_path / "api-keys.txt"
    p.write_text("# sha256 name\n" + "".join(
        f"{hashlib.sha256(k.encode()).hexdigest()} {name}\n" for name, k in keys.items()))
    return p


class Signer:
    """An EHR-side CDS client: an ES384 key pair and a JWKS."""

    def __init__(self, iss: str = ISS, kid: str = "k1") -> None:
        self.iss = iss
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": kid, "alg": "ES384", "use": "sig"})
        self.jwks = {"keys": [jwk]}

    def token(self, aud: str, **over: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.iss,
            "aud": aud,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "sub": "client-1",
            "tenant": "t1",
        }
        claims.update(over)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": self.kid})


def write_clients(tmp_path: Path, signer: Signer) -> Path:
    p = tmp_path / "clients.json"
    p.write_text(json.dumps({"clients": [{"iss": signer.iss, "jwks": signer.jwks}]}))
    return p


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def service_app(tmp_path: Path, signer: Signer) -> Any:
    from fastapi.testclient import TestClient

    from sarcoma_cds.interfaces.api import create_app

    settings = make_settings(
        tmp_path, base_url=BASE_URL, clients_file=write_clients(tmp_path, signer)
    )
    app = create_app(settings)
    with TestClient(app, base_url=BASE_URL) as client:
        client.app_services = app.state.services  # type: ignore[attr-defined]
        yield client


def pg_url_or_skip() -> str:
    url = os.environ.get("SARCOMA_CDS_TEST_PG_URL")
    if not url:
        if os.environ.get("SARCOMA_CDS_REQUIRE_SERVICES") == "1":
            pytest.fail("SARCOMA_CDS_REQUIRE_SERVICES=1 but SARCOMA_CDS_TEST_PG_URL is not set")
        pytest.skip("PostgreSQL not configured: set SARCOMA_CDS_TEST_PG_URL")
    return url


# ------------------------------------------------------------------ bundle builder

def cc(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return {"coding": [c]}


def obs(oid: str, code: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": code,
            "subject": {"reference": "Patient/p1"}, **kw}


def tnm(axis: str, value: str, phase: str = "c") -> dict[str, Any]:
    codes = {
        ("N", "c"): "21906-3",
        ("M", "c"): "21907-1",
        ("N", "p"): "21900-6",
        ("M", "p"): "21901-4",
    }
    return obs(
        f"tnm-{phase}{axis}",
        cc(LOINC, codes[(axis, phase)]),
        valueCodeableConcept={
            "coding": [{"system": "http://cancerstaging.org", "code": f"{phase}{value}"}]
        },
    )


def variant(
    oid: str, genes: list[tuple[str, str]], present: bool = True, text: str | None = None
) -> dict[str, Any]:
    comps = [
        {"code": cc(LOINC, "48018-6"), "valueCodeableConcept": cc("http://www.genenames.org", h, g)}
        for h, g in genes
    ]
    if text:
        comps.append({"code": cc(LOINC, "48005-3"), "valueCodeableConcept": {"coding": [
            {"system": "http://varnomen.hgvs.org", "code": text, "display": text}]}})
    return obs(
        oid,
        cc(LOINC, "69548-6"),
        valueCodeableConcept=cc(
            LOINC, "LA9633-4" if present else "LA9634-2", "Present" if present else "Absent"
        ),
        component=comps,
    )


def bundle(histology_icdo: str, site_sct: str, *extra: dict[str, Any], size_cm: float | None = None,
           grade: str | None = None) -> dict[str, Any]:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1960-05-01"},
        {"resourceType": "Condition", "id": "primary",
         "meta": {"profile": [MCODE + "mcode-primary-cancer-condition"]},
         "extension": [{"url": MCODE + "mcode-histology-morphology-behavior",
                        "valueCodeableConcept": cc(ICDO3, histology_icdo)}],
         "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
         "code": {"text": "Primary sarcoma"},
         "bodySite": [cc(SCT, site_sct)], "subject": {"reference": "Patient/p1"}},
    ]
    if size_cm is not None:
        resources.append(
            obs(
                "size",
                cc(LOINC, "21889-1"),
                component=[
                    {
                        "code": cc(LOINC, "33728-7"),
                        "valueQuantity": {
                            "value": size_cm,
                            "unit": "cm",
                            "system": "http://unitsofmeasure.org",
                            "code": "cm",
                        },
                    }
                ],
            )
        )
    if grade is not None:
        g = {"1": "1155708003", "2": "1286893008", "3": "1155707008"}[grade]
        resources.append(
            obs(
                "grade",
                cc("http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "C18000"),
                valueCodeableConcept=cc(SCT, g),
            )
        )
    resources.extend(extra)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": (
                    f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, r['resourceType'] + r['id'])}"
                ),
                "resource": r,
            }
            for r in resources
        ],
    }


def secondary(site_sct: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"met-{site_sct}",
        "meta": {"profile": [MCODE + "mcode-secondary-cancer-condition"]},
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
        "code": {"text": "Metastasis"},
        "bodySite": [cc(SCT, site_sct)],
        "subject": {"reference": "Patient/p1"},
    }


KIT, PDGFRA, BRAF, NTRK3, SDHB = (
    ("HGNC:6342", "KIT"),
    ("HGNC:8803", "PDGFRA"),
    ("HGNC:1097", "BRAF"),
    ("HGNC:8033", "NTRK3"),
    ("HGNC:10681", "SDHB"),
)
STOMACH, LOWER_LIMB, LIVER, LUNG = "69695003", "61685007", "10200004", "39607008"


def own_bundles() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (bundle, expected facts subset)."""
    met = (tnm("M", "M1"), secondary(LIVER))
    wt = (variant("kit-neg", [KIT], present=False), variant("pdgfra-neg", [PDGFRA], present=False))
    gist = lambda *x, **k: bundle("8936/3", STOMACH, *x, size_cm=7.0, **k)  # noqa: E731
    return {
        "gist-kit-exon11": (
            gist(variant("v", [KIT], text="NP_000213.1:p.Trp557_Lys558del"), *met),
            {
                "histology": "gist",
                "primary_site": "stomach",
                "kit_mutation": "exon_11",
                "metastasis": "M1",
                "metastatic_sites": ["liver"],
            },
        ),
        "gist-kit-exon9": (
            gist(variant("v", [KIT], text="NP_000213.1:p.Ala502_Tyr503dup"), *met),
            {"kit_mutation": "exon_9"},
        ),
        "gist-pdgfra-d842v": (
            gist(
                variant("v", [PDGFRA], text="NP_006197.1:p.Asp842Val"),
                variant("kit-neg", [KIT], present=False),
                *met,
            ),
            {"pdgfra_mutation": "d842v", "kit_mutation": "none"},
        ),
        "gist-sdh-deficient": (
            gist(variant("v", [SDHB], text="NP_002991.2:p.Arg46Ter"), *wt, *met),
            {"sdh_deficient": True, "kit_mutation": "none", "pdgfra_mutation": "none"},
        ),
        "gist-braf-v600e": (
            gist(variant("v", [BRAF], text="NP_004324.2:p.Val600Glu"), *wt, *met),
            {"braf_v600e": True},
        ),
        "gist-ntrk": (
            gist(variant("v", [NTRK3], text="ETV6::NTRK3 fusion"), *wt, *met),
            {"ntrk_fusion": True},
        ),
        "extremity-stage-i": (
            bundle("8890/3", LOWER_LIMB, tnm("N", "N0"), tnm("M", "M0"), size_cm=4.0, grade="1"),
            {
                "histology": "leiomyosarcoma",
                "primary_site": "lower_extremity",
                "size_cm": 4.0,
                "grade": "1",
                "nodes": "N0",
                "metastasis": "M0",
            },
        ),
        "extremity-stage-ii": (
            bundle("8802/3", LOWER_LIMB, tnm("N", "N0"), tnm("M", "M0"), size_cm=4.0, grade="3"),
            {"histology": "undifferentiated_pleomorphic_sarcoma", "grade": "3"},
        ),
        "extremity-stage-iii": (
            bundle("8802/3", LOWER_LIMB, tnm("N", "N0"), tnm("M", "M0"), size_cm=8.0, grade="3"),
            {"size_cm": 8.0, "grade": "3"},
        ),
        "extremity-stage-iv": (
            bundle(
                "9040/3",
                LOWER_LIMB,
                tnm("N", "N0"),
                tnm("M", "M1"),
                secondary(LUNG),
                size_cm=12.0,
                grade="3",
            ),
            {"histology": "synovial_sarcoma", "metastasis": "M1", "metastatic_sites": ["lung"]},
        ),
    }


def load_fixture_bundle(name: str) -> dict[str, Any]:
    return json.loads((FHIR_DIR / f"{name}.json").read_text())


def mcode_examples() -> list[Path]:
    return sorted(p for p in MCODE_DIR.glob("*.json") if not p.name.startswith("hl7.fhir"))


def as_bundle(resource: dict[str, Any]) -> dict[str, Any]:
    if resource.get("resourceType") == "Bundle":
        return resource
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}


# ------------------------------------------------------------------ a browser-like client

def csrf_client_class() -> Any:
    """A TestClient that, like a browser on the service's own pages, sends the CSRF token of
    its cookie with every form post (the token is read once from the patient form)."""
    import re

    from fastapi.testclient import TestClient

    class CsrfClient(TestClient):
        _csrf: str | None = None

        def csrf_token(self) -> str:
            if not self._csrf:  # (not cached while no page with a form is open to this client)
                for path in ("/patient", "/"):
                    page = super().request("GET", path, headers={"accept": "text/html"})
                    m = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                    if m:
                        self._csrf = m.group(1)
                        break
            return self._csrf or ""

        def request(self, method: str, url: Any, **kw: Any) -> Any:  # type: ignore[override]
            unsafe = method.upper() in ("POST", "PUT", "PATCH", "DELETE")
            if unsafe and (kw.get("data") is not None or kw.get("files") is not None):
                data = kw.get("data") or {}
                if isinstance(data, dict) and "csrf_token" not in data:
                    kw["data"] = {**data, "csrf_token": self.csrf_token()}
            return super().request(method, url, **kw)

    return CsrfClient
