"""GIST risk of progression: AFIP (Miettinen & Lasota 2006) and modified NIH (Joensuu 2008).

Both schemes are table data (``kb/data/tables/gist_risk.yaml``). With a missing size
or mitotic rate the result is the set of categories still possible; a single
category is reported only when the facts pin it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AfipCategory = Literal["none", "very_low", "low", "moderate", "high", "insufficient_data"]
NihCategory = Literal["very_low", "low", "intermediate", "high"]


class _T(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SizeBand(_T):
    id: str
    max_cm: float | None = None


class MitoticBand(_T):
    id: str
    max: float | None = None


def _check_bands(bands: tuple[SizeBand, ...] | tuple[MitoticBand, ...], what: str) -> None:
    bounds = [getattr(b, "max_cm", None) if isinstance(b, SizeBand) else b.max for b in bands]
    if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
        raise ValueError(f"{what}: every band but the last needs an upper bound")
    inner = [b for b in bounds[:-1] if b is not None]
    if inner != sorted(inner):
        raise ValueError(f"{what}: upper bounds must increase")


class AfipTable(_T):
    source: str
    note: str
    sites: dict[str, str]
    size_bands: tuple[SizeBand, ...] = Field(min_length=2)
    mitotic_bands: tuple[MitoticBand, ...] = Field(min_length=2)
    cells: dict[str, dict[str, dict[str, tuple[AfipCategory, float | None]]]]
    small_numbers: tuple[tuple[str, str, str], ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> AfipTable:
        _check_bands(self.size_bands, "afip size_bands")
        _check_bands(self.mitotic_bands, "afip mitotic_bands")
        columns = set(self.sites.values())
        for mb in self.mitotic_bands:
            for sb in self.size_bands:
                row = self.cells.get(mb.id, {}).get(sb.id)
                if row is None or set(row) != columns:
                    raise ValueError(
                        f"afip cells[{mb.id}][{sb.id}] must give every site column "
                        f"{sorted(columns)}"
                    )
                for col, (cat, pct) in row.items():
                    if (cat == "insufficient_data") != (pct is None):
                        raise ValueError(
                            f"afip cells[{mb.id}][{sb.id}][{col}]: percent is null exactly when "
                            "data are insufficient"
                        )
        return self


class NihTable(_T):
    source: str
    gastric_sites: tuple[str, ...]
    rupture_category: NihCategory
    size_bands: tuple[SizeBand, ...] = Field(min_length=2)
    mitotic_bands: tuple[MitoticBand, ...] = Field(min_length=2)
    cells: dict[Literal["gastric", "non_gastric"], dict[str, dict[str, NihCategory]]]

    @model_validator(mode="after")
    def _complete(self) -> NihTable:
        _check_bands(self.size_bands, "nih size_bands")
        _check_bands(self.mitotic_bands, "nih mitotic_bands")
        for site in ("gastric", "non_gastric"):
            for sb in self.size_bands:
                row = self.cells.get(site, {}).get(sb.id)
                if row is None or set(row) != {m.id for m in self.mitotic_bands}:
                    raise ValueError(f"nih cells[{site}][{sb.id}] must give every mitotic band")
        return self


class GistRiskTables(_T):
    applies_to_groups: tuple[str, ...] = ()
    outside_note: str = ""
    afip_miettinen_2006: AfipTable
    nih_modified_joensuu_2008: NihTable


def _band(
    bands: tuple[SizeBand, ...] | tuple[MitoticBand, ...], x: float | None
) -> tuple[str, ...]:
    """The band of ``x`` (upper bounds inclusive), or every band when ``x`` is unknown."""
    if x is None:
        return tuple(b.id for b in bands)
    for b in bands:
        bound = b.max_cm if isinstance(b, SizeBand) else b.max
        if bound is None or x <= bound:
            return (b.id,)
    return (bands[-1].id,)


@dataclass(frozen=True, slots=True)
class RiskResult:
    scheme: str
    category: str | None  # None: the facts do not pin one category
    possible: frozenset[str]
    progression_percent: float | None
    basis: str


class GistRiskCalculator:
    def band_key(
        self, site: str, size_cm: float | None, mitoses: float | None
    ) -> tuple[object, ...]:
        """Everything the two tables read, as bands: equal keys give equal results."""
        return (
            site,
            _band(self.afip.size_bands, size_cm), _band(self.afip.mitotic_bands, mitoses),
            _band(self.nih.size_bands, size_cm), _band(self.nih.mitotic_bands, mitoses),
        )

    def __init__(self, tables: GistRiskTables) -> None:
        self.afip = tables.afip_miettinen_2006
        self.nih = tables.nih_modified_joensuu_2008
        self._small = set(self.afip.small_numbers)

    def afip_risk(self, site: str, size_cm: float | None, mitoses: float | None) -> RiskResult:
        col = self.afip.sites.get(site)
        if col is None:
            return RiskResult(
                "afip_miettinen_2006",
                "insufficient_data",
                frozenset({"insufficient_data"}),
                None,
                f"the AFIP table has no column for this site ({site})",
            )
        cells = [
            (mb, sb, self.afip.cells[mb][sb][col])
            for mb in _band(self.afip.mitotic_bands, mitoses)
            for sb in _band(self.afip.size_bands, size_cm)
        ]
        possible = frozenset(c[2][0] for c in cells)
        if len(cells) == 1:
            mb, sb, (cat, pct) = cells[0]
            basis = (
                f"{col.replace('_', '/')} site, size {_band_text(sb)} cm, {_band_text(mb)} mitoses "
                "per 5 mm2"
            )
            if (mb, sb, col) in self._small:
                basis += " (few cases in the study)"
            return RiskResult("afip_miettinen_2006", cat, possible, pct, basis)
        cat1 = next(iter(possible)) if len(possible) == 1 else None
        return RiskResult(
            "afip_miettinen_2006",
            cat1,
            possible,
            None,
            "size or mitotic rate missing: " + ", ".join(sorted(possible)) + " still possible",
        )

    def nih_risk(
        self, site: str, size_cm: float | None, mitoses: float | None, rupture: bool | None
    ) -> RiskResult:
        if rupture:
            return RiskResult("nih_modified_joensuu_2008", self.nih.rupture_category,
                              frozenset({self.nih.rupture_category}), None, "tumour rupture")
        site_class: Literal["gastric", "non_gastric"] = (
            "gastric" if site in self.nih.gastric_sites else "non_gastric"
        )
        possible = frozenset(
            self.nih.cells[site_class][sb][mb]
            for sb in _band(self.nih.size_bands, size_cm)
            for mb in _band(self.nih.mitotic_bands, mitoses)
        )
        if rupture is None:
            possible = possible | {self.nih.rupture_category}
        cat = next(iter(possible)) if len(possible) == 1 else None
        if cat is not None:
            sb = _band(self.nih.size_bands, size_cm)
            mb = _band(self.nih.mitotic_bands, mitoses)
            basis = (
                f"{site_class.replace('_', '-')} site, size "
                f"{_band_text(sb[0]) if len(sb) == 1 else 'unknown'} cm, "
                f"{_band_text(mb[0]) if len(mb) == 1 else 'unknown'} mitoses per 5 mm2"
            )
        else:
            basis = "not pinned by the facts: " + ", ".join(sorted(possible)) + " still possible"
        return RiskResult("nih_modified_joensuu_2008", cat, possible, None, basis)


def _band_text(band_id: str) -> str:
    """'le2' -> '<= 2', 'gt2_le5' -> '> 2-5', 'gt10' -> '> 10' (band ids follow this pattern)."""
    parts = band_id.split("_")
    if len(parts) == 2:
        return f"> {parts[0][2:]}-{parts[1][2:]}"
    return ("<= " if band_id.startswith("le") else "> ") + band_id[2:]
