"""The rendered recommendation is reused for equal facts (issue 13): the REST answer is the
cached contract JSON, equal to the engine's own output, and every answer still has its own audit
record."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import conftest_service
from conftest_service import BASE_URL
from sarcoma_cds import recommend

service_app = conftest_service.service_app
signer = conftest_service.signer

FACTS = {"histology": "leiomyosarcoma", "primary_site": "lower_extremity", "size_cm": 8.0,
         "depth": "deep", "grade": "3", "nodes": "N0", "metastasis": "M0",
         "resectability": "resectable", "disease_status": "primary"}


def test_equal_facts_answer_the_same_bytes_each_with_its_own_record(service_app: Any) -> None:
    a = service_app.post("/recommendations", json=FACTS)
    # the same facts written another way: other key order, an explicit null
    b = service_app.post("/recommendations",
                         json={**dict(reversed(list(FACTS.items()))), "ecog": None})
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    assert a.json() == json.loads(json.dumps(recommend(FACTS).model_dump(mode="json")))
    assert a.headers["content-type"] == "application/json"
    ids = {a.headers["X-Audit-ID"], b.headers["X-Audit-ID"]}
    assert len(ids) == 2
    store = service_app.app_services.store
    for aid in ids:
        assert store.get_record(aid)["recommendation"] == a.json()


def test_the_cache_is_keyed_by_the_facts_and_bounded(service_app: Any) -> None:
    services = service_app.app_services
    first = services.render(FACTS)
    assert services.render({**FACTS, "ecog": None}) is first  # canonical: nulls dropped
    other = services.render({**FACTS, "size_cm": 4.0})
    assert other is not first and other.recommendation != first.recommendation
    info = services._rendered.cache_info()
    assert info.maxsize is not None and info.maxsize > 0 and info.hits >= 1


def test_invalid_facts_are_refused_and_not_cached(service_app: Any) -> None:
    services = service_app.app_services
    before = services._rendered.cache_info().currsize
    r = service_app.post("/recommendations", json={**FACTS, "size_cm": -3})
    assert r.status_code == 422 and "size_cm" in r.text
    assert services._rendered.cache_info().currsize == before
    assert BASE_URL  # (the app answers on the test base URL)


def test_the_row_parts_made_once_per_facts_stay_per_key(tmp_path: Path) -> None:
    """The digest, statuses and encrypted recommendation of equal facts are made once (the
    render cache's memo) and reused; another data key gets its own, and each row decrypts to
    the recommendation with its own key; stored facts and labels are encrypted per row."""
    from cryptography.fernet import Fernet

    from sarcoma_cds.store import AuditStore
    from sarcoma_cds.store.crypto import DataCipher

    rec = recommend(FACTS)
    memo: dict[Any, Any] = {}
    stores = [AuditStore.open(f"sqlite:///{tmp_path / f'{i}.sqlite3'}",
                              cipher=DataCipher([Fernet.generate_key()])) for i in range(2)]
    try:
        rows = [s.build_record(rec, FACTS, interface="rest", caller="c", request_id="r",
                               memo=memo, saved=True, label="MDT")
                for s in (stores[0], stores[0], stores[1])]
        assert len(memo) == 2  # one entry per cipher
        assert rows[0].facts_digest == rows[1].facts_digest != rows[2].facts_digest
        assert rows[0].recommendation == rows[1].recommendation != rows[2].recommendation
        assert rows[0].raw_facts != rows[1].raw_facts and rows[0].label != rows[1].label
        for s, r in zip((stores[0], stores[0], stores[1]), rows, strict=True):
            s.write_record(r)
            got = s.get_record(r.id)
            assert got is not None and got["label"] == "MDT"
            assert got["recommendation"] == rec.model_dump(mode="json")
    finally:
        for s in stores:
            s.close()
