"""Core benchmark: recommend() per patient in-process, and the CLI on a 10,000-patient .jsonl.

Prints its figures; it is not a test. Targets (issue 2): median < 60 us per patient
in-process; the 10,000-patient CLI run < 3 s including start-up. Baseline in the same
run: a hand-written if/else AJCC staging + group split (the fastest possible form of the
classification alone), so the figures can be compared across machines as ratios.

    python bench/bench_core.py [--n 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from patients import patients

from sarcoma_cds import load_kb, recommend


def baseline(f: dict) -> str:
    """Plain if/else: AJCC 8 trunk/extremity stage + a 7-way extremity group split."""
    size, g, n, m = f.get("size_cm"), f.get("grade"), f.get("nodes"), f.get("metastasis")
    if m == "M1":
        return "iv_" + str(f.get("metastatic_burden"))
    if n == "N1":
        return "iii_" + str(f.get("resectability"))
    if size is None or g is None:
        return "unknown"
    t = 1 if size <= 5 else 2 if size <= 10 else 3
    if g in ("1", "X"):
        return "i"
    if t == 1:
        return "ii_" + str(f.get("resectability"))
    return "iii_" + str(f.get("resectability"))


def per_call(fn, items, repeat: int = 3) -> tuple[float, float]:
    """Median per-call time (us) over all items, best of `repeat` passes; and patients/s."""
    best_median = float("inf")
    best_rate = 0.0
    for _ in range(repeat):
        times = []
        t_all = time.perf_counter()
        for it in items:
            t0 = time.perf_counter_ns()
            fn(it)
            times.append(time.perf_counter_ns() - t0)
        elapsed = time.perf_counter() - t_all
        best_median = min(best_median, statistics.median(times) / 1000)
        best_rate = max(best_rate, len(items) / elapsed)
    return best_median, best_rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--cli-n", type=int, default=10000)
    args = ap.parse_args()
    items = patients(args.n)
    t0 = time.perf_counter()
    load_kb()
    print(f"knowledge base load + compile: {(time.perf_counter() - t0) * 1000:.1f} ms")
    for it in items[:2000]:  # warm-up
        recommend(it)
    med, rate = per_call(recommend, items)
    bmed, brate = per_call(baseline, items)
    print(f"recommend() in-process, {args.n} mixed patients: median {med:.1f} us/patient, "
          f"{rate:,.0f} patients/s (target: median < 60 us)")
    print(f"baseline if/else staging + group split: median {bmed:.2f} us, {brate:,.0f} patients/s; "
          f"full recommendation costs {med / bmed:.0f}x the bare classification")

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "patients.jsonl"
        path.write_text("\n".join(json.dumps(p) for p in patients(args.cli_n, seed=11)) + "\n")
        exe = [sys.executable, "-m", "sarcoma_cds.interfaces.cli.main"]
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = subprocess.run(
                [*exe, "recommend", str(path), "--format", "json"], capture_output=True, check=False
            )
            walls.append(time.perf_counter() - t0)
            assert out.returncode == 0, out.stderr[:500]
        t0 = time.perf_counter()
        subprocess.run([*exe, "--help"], capture_output=True, check=True)
        startup = time.perf_counter() - t0
        lines = out.stdout.count(b"\n")
        print(
            f"CLI recommend on {args.cli_n}-patient .jsonl: median {statistics.median(walls):.2f} "
            "s wall "
            f"({lines} lines; CLI start-up alone {startup:.2f} s) (target < 3 s)"
        )


if __name__ == "__main__":
    main()
