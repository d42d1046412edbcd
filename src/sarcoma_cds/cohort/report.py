"""The human report: one self-contained HTML file (plotly.js inlined, readable offline)."""

from __future__ import annotations

import html
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sarcoma_cds.cohort.compiler import CONCORDANCE
from sarcoma_cds.domain.facts import FACT_FIELDS

if TYPE_CHECKING:
    from sarcoma_cds.cohort.aggregate import Aggregates

COLOURS = {"concordant": "#2e7d32", "concordant_conditional": "#f9a825", "discordant": "#c62828",
           "not_assessable": "#9e9e9e"}
LABELS = {"concordant": "Concordant", "concordant_conditional": "Concordant (conditional)",
          "discordant": "Discordant", "not_assessable": "Not assessable"}


@lru_cache(maxsize=1)
def _template() -> dict[str, Any]:
    """plotly_white as a plain dict, built once (plotly validates and copies it on every use of
    ``template="plotly_white"``: most of the report's time before)."""
    import plotly.io as pio

    out: dict[str, Any] = pio.templates["plotly_white"].to_plotly_json()
    return out


def _layout(**kw: Any) -> dict[str, Any]:
    return {"template": _template(), "margin": {"l": 10, "r": 10, "t": 50, "b": 10}, **kw}


def _stacked(counts: dict[str, dict[str, int]], title: str) -> dict[str, Any]:
    """Horizontal stacked bars of the four classes, in % of each row's patients."""
    keys = sorted(counts, key=lambda k: -sum(counts[k].values()))[::-1]
    tot = [max(1, sum(counts[k].values())) for k in keys]
    data = []
    for c in CONCORDANCE:
        data.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": LABELS[c],
                "marker": {"color": COLOURS[c]},
                "x": [100 * counts[k][c] / t for k, t in zip(keys, tot, strict=True)],
                "y": keys,
                "customdata": [f"{counts[k][c]}" for k in keys],
                "hovertemplate": "%{y}: %{customdata} patients (%{x:.1f}%)<extra>"
                + LABELS[c]
                + "</extra>",
            }
        )
    return {"data": data, "layout": _layout(
        barmode="stack", title={"text": title}, height=max(320, 34 * len(keys) + 140),
        legend={"orientation": "h", "y": -0.15},
        xaxis={"title": {"text": "% of patients"}, "range": [0, 100]})}


def _impact_section(summary: dict[str, Any]) -> str:
    """The recommendation-level impact of ``--compare-kb``, both versions named (empty
    otherwise)."""
    rec = (summary.get("guideline_change") or {}).get("recommendation")
    if not rec:
        return ""
    from sarcoma_cds.cohort.impact_report import to_html

    return to_html(rec)


def build(summary: dict[str, Any], agg: Aggregates, title: str = "Guideline concordance") -> str:
    """``agg``: the cohort's :class:`~sarcoma_cds.cohort.aggregate.Aggregates` (small tables
    only)."""
    import plotly.io as pio
    import polars as pl

    figs = [
        _stacked(summary["by_group"], "Concordance by patient group"),
        _stacked(summary["by_centre"], "Concordance by centre"),
    ]
    # completeness heat map: % missing per fact and centre (valid rows)
    facts = [f for f in FACT_FIELDS if f not in ("histology", "primary_site")]
    by_centre = agg.missing_by_centre.filter(pl.col("_n") > 0) \
        .with_columns([(pl.col(f) / pl.col("_n")).alias(f) for f in facts])
    centres = sorted(x for x in by_centre.get_column("centre").to_list() if x is not None)
    z = []
    for f in facts:
        m = dict(zip(by_centre.get_column("centre").to_list(), by_centre.get_column(f).to_list(),
                     strict=True))
        z.append([round(100 * (m.get(c) or 0), 1) for c in centres])
    # (the stops themselves: plotly.js reads the name "YlOrRd" the other way round from plotly.py)
    import plotly.colors

    ylorrd = plotly.colors.sequential.YlOrRd
    scale = [[i / (len(ylorrd) - 1), c] for i, c in enumerate(ylorrd)]
    figs.append({"data": [{"type": "heatmap", "z": z, "x": centres, "y": facts, "colorscale": scale,
                           "zmin": 0, "zmax": 100, "colorbar": {"title": {"text": "% missing"}},
                           "hovertemplate": "%{y} at %{x}: %{z}% missing<extra></extra>"}],
                 "layout": _layout(title={"text": "Data completeness: % of patients with the fact "
                                                  "missing, by centre"},
                                   height=620, yaxis={"autorange": "reversed"})})
    # trend
    years = sorted(summary["by_year"])
    trend = []
    for c in ("concordant", "concordant_conditional", "discordant"):
        ys = []
        for y in years:
            cnt = summary["by_year"][y]
            ass = max(1, sum(cnt.values()) - cnt["not_assessable"])
            ys.append(100 * cnt[c] / ass)
        trend.append({"type": "scatter", "x": years, "y": ys, "name": LABELS[c],
                      "mode": "lines+markers", "line": {"color": COLOURS[c], "width": 3}})
    figs.append({"data": trend, "layout": _layout(
        title={"text": "Trend by year of diagnosis (% of assessable patients)"}, height=380,
        yaxis={"range": [0, 100], "title": {"text": "%"}}, xaxis={"type": "category"},
        legend={"orientation": "h", "y": -0.2})})

    parts = []
    for i, fig in enumerate(figs):
        # fixed element ids: the same cohort gives the same report, byte for byte; plain figure
        # dicts, not validated again (they are built here, from fixed shapes)
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0),
                                 div_id=f"figure-{i + 1}", config={"displaylogo": False},
                                 validate=False))
    c = summary["concordance"]
    rate = summary["concordance_rate"]
    tiles = "".join(
        f'<div class="tile" style="border-color:{COLOURS[k]}"><div class="n">{c[k]:,}</div>'
        f'<div class="l">{LABELS[k]}</div></div>' for k in CONCORDANCE)
    reasons = "".join(f"<tr><td>{r['patients']:,}</td><td>{html.escape(r['reason'])}</td></tr>"
                      for r in summary["top_discordance_reasons"])
    comp = "".join(
        f"<tr><td>{html.escape(r['fact'])}</td><td>{100 * r['missing_share']:.1f}%</td>"
        f"<td>{r['undecided_patients_missing_it']:,}</td>"
        f"<td>{html.escape(', '.join(list(r['blocks_groups'])[:4]))}</td></tr>"
        for r in summary.get("completeness", [])[:8])
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px \
auto;max-width:1280px;color:#222}}
h1{{margin:0 0 4px}} .sub{{color:#555;margin-bottom:16px}} \
.tiles{{display:flex;gap:12px;margin:12px 0 20px}}
.tile{{flex:1;border-left:6px solid;padding:10px 14px;background:#fafafa;border-radius:4px}}
.tile .n{{font-size:28px;font-weight:600}} .tile .l{{color:#555}} \
.grid{{display:grid;grid-template-columns:1fr 1fr;gap:16px}}
table{{border-collapse:collapse;width:100%;font-size:14px}} td,th{{border-bottom:1px solid \
#eee;padding:5px 8px;text-align:left;vertical-align:top}}
.card{{background:#fff;border:1px solid #eee;border-radius:6px;padding:8px}} \
.note{{color:#666;font-size:13px}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<div class="sub">{summary["patients"]:,} patients, {summary["assessable"]:,} assessable, \
{summary["invalid_rows"]:,} invalid rows
(kept out of the rates). Concordance (incl. conditional) among assessable patients:
<b>{"n/a" if rate is None else f"{100 * rate:.1f}%"}</b>.</div>
<div class="tiles">{tiles}</div>
<div class="grid"><div class="card">{parts[0]}</div><div class="card">{parts[1]}</div></div>
<div class="card">{parts[3]}</div>
<div class="grid"><div class="card"><h3>Most common discordance \
reasons</h3><table><tr><th>Patients</th><th>Reason</th></tr>{reasons}</table></div>
<div class="card"><h3>Missing facts that leave the group \
open</h3><table><tr><th>Fact</th><th>Missing</th><th>Undecided patients missing it</th><th>Groups \
it blocks</th></tr>{comp}</table></div></div>
<div class="card">{parts[2]}</div>
{_impact_section(summary)}
<p class="note">Decision support, not orders. Concordance is computed on the knowledge base's own \
rules; see docs/cohort.md.</p>
</body></html>"""
