"""FHIR reader benchmark (issue 11): a 300-resource Bundle to a recommendation, and a record of
20,000 observations (linear time).

Prints its figures; it is not a test. Targets: median < 5 ms from a 300-resource Bundle to a
recommendation (mapping, fact check, engine); the 20,000-observation record in time linear in
its size (the per-observation time at 20,000 within 2x of that at 2,500; the old reader was
quadratic, ~25 s).

    python bench/bench_fhir.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from sarcoma_cds import load_kb, parse_facts
from sarcoma_cds.adapters.fhir import facts_from_bundle
from sarcoma_cds.domain.engine import recommend as engine_recommend

RECORD = Path(__file__).parents[1] / "tests" / "fixtures" / "ehr" / "records"
TODAY = date(2026, 11, 30)


def big_bundle(n_resources: int) -> dict[str, Any]:
    """The angiosarcoma-after-breast-cancer record padded with dated, linked observations
    (sizes, grades, ECOG) and unlinked labs, as a long EHR history is."""
    base = json.loads(next(RECORD.glob("*angiosarcoma-after-breast-cancer.json")).read_text())[
        "bundle"
    ]
    entries = list(base["entry"])
    i = 0
    while len(entries) < n_resources:
        day = f"20{10 + (i // 365) % 16:02d}-{1 + (i // 28) % 12:02d}-{1 + i % 28:02d}"
        kind = i % 4
        if kind == 0:
            res = {
                "resourceType": "Observation",
                "id": f"s{i}",
                "status": "final",
                "effectiveDateTime": day,
                "focus": [{"reference": "Condition/sarcoma"}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]},
                "valueQuantity": {"value": 4.0, "unit": "cm", "code": "cm"},
            }
        elif kind == 1:
            res = {
                "resourceType": "Observation",
                "id": f"e{i}",
                "status": "final",
                "effectiveDateTime": day,
                "code": {"coding": [{"system": "http://loinc.org", "code": "89247-1"}]},
                "valueInteger": 1,
            }
        else:
            res = {
                "resourceType": "Observation",
                "id": f"l{i}",
                "status": "final",
                "effectiveDateTime": day,
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                "valueQuantity": {"value": 13.0, "unit": "g/dL"},
            }
        entries.append({"fullUrl": f"urn:uuid:x{i}", "resource": res})
        i += 1
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def bundle_to_recommendation(kb: Any, bundle: dict[str, Any]) -> Any:
    mapped = facts_from_bundle(bundle, today=TODAY)
    return engine_recommend(kb, parse_facts(mapped.facts))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args(argv)
    kb = load_kb()
    b300 = big_bundle(300)
    bundle_to_recommendation(kb, b300)  # warm caches (code tables, compiled rules)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        bundle_to_recommendation(kb, b300)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times) * 1000
    print(
        f"300-resource Bundle -> recommendation: median {med:.2f} ms over {args.repeat} runs "
        "(target < 5 ms)"
    )
    per: dict[int, float] = {}
    for n in (2_500, 5_000, 10_000, 20_000):
        b = big_bundle(n)
        t0 = time.perf_counter()
        facts_from_bundle(b, today=TODAY)
        dt = time.perf_counter() - t0
        per[n] = dt / n * 1e6
        print(f"{n:>6} observations: {dt * 1000:8.1f} ms  ({per[n]:.1f} us per resource)")
    ratio = per[20_000] / per[2_500]
    print(f"per-resource time at 20,000 / at 2,500: {ratio:.2f} (linear: about 1; target < 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
