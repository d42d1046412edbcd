"""AJCC 8th edition staging for trunk/extremity and retroperitoneal sarcoma, from table data.

The table (``kb/data/tables/ajcc8.yaml``) is compiled once into a lookup over every
combination of T, N, M and G -- including "not known" -- so that a patient with
missing facts gets the set of stage groups still possible, never a guessed one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

T_VALUES = ("T1", "T2", "T3", "T4")
N_VALUES = ("N0", "N1")
M_VALUES = ("M0", "M1")
G_VALUES = ("G1", "G2", "G3")
StageGroup = Literal["IA", "IB", "II", "IIIA", "IIIB", "IV"]


class _T(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TBand(_T):
    t: Literal["T1", "T2", "T3", "T4"]
    max_cm: float | None = None


class StageRow(_T):
    t: tuple[str, ...] = T_VALUES
    n: tuple[str, ...] = N_VALUES
    m: tuple[str, ...] = M_VALUES
    g: tuple[str, ...] = G_VALUES
    group: StageGroup


class StagingSystem(_T):
    id: str
    name: Literal["AJCC8 trunk and extremities", "AJCC8 retroperitoneum"]
    sites: tuple[str, ...]
    t_bands: tuple[TBand, ...] = Field(min_length=1)
    stage_groups: tuple[StageRow, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> StagingSystem:
        bounds = [b.max_cm for b in self.t_bands]
        if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
            raise ValueError("t_bands: every band but the last needs max_cm; the last has none")
        if bounds[:-1] != sorted(b for b in bounds[:-1] if b is not None):
            raise ValueError("t_bands: max_cm must increase")
        for combo in itertools.product(T_VALUES, N_VALUES, M_VALUES, G_VALUES):
            if _first_group(self.stage_groups, *combo) is None:
                raise ValueError(f"stage_groups: no row covers T/N/M/G {combo}")
        return self


class AjccTables(_T):
    source: str
    systems: tuple[StagingSystem, ...]
    grade_map: dict[str, Literal["G1", "G2", "G3"]]
    grade_label: dict[str, str]
    node_map: dict[str, Literal["N0", "N1"]]


def _first_group(rows: tuple[StageRow, ...], t: str, n: str, m: str, g: str) -> str | None:
    for r in rows:
        if t in r.t and n in r.n and m in r.m and g in r.g:
            return r.group
    return None


@dataclass(frozen=True, slots=True)
class StageResult:
    system: str
    t: str | None
    n: str | None
    m: str | None
    g: str | None
    group: str | None
    possible: frozenset[str]


class Stager:
    """Compiled AJCC 8 tables: site -> system, size -> T, (T,N,M,G) -> possible stage groups."""

    def __init__(self, tables: AjccTables) -> None:
        self.tables = tables
        self._by_site = {s: sys for sys in tables.systems for s in sys.sites}
        self._possible: dict[tuple[str, tuple[str | None, ...]], frozenset[str]] = {}
        for sys in tables.systems:
            for key in itertools.product(
                (*T_VALUES, None), (*N_VALUES, None), (*M_VALUES, None), (*G_VALUES, None)
            ):
                choices = [
                    (v,) if v is not None else allv
                    for v, allv in zip(key, (T_VALUES, N_VALUES, M_VALUES, G_VALUES), strict=True)
                ]
                self._possible[(sys.id, key)] = frozenset(
                    g for combo in itertools.product(*choices)
                    if (g := _first_group(sys.stage_groups, *combo)) is not None
                )

    def system_for(self, site: str) -> StagingSystem | None:
        return self._by_site.get(site)

    @staticmethod
    def t_category(sys: StagingSystem, size_cm: float | None) -> str | None:
        if size_cm is None:
            return None
        for b in sys.t_bands:
            if b.max_cm is None or size_cm <= b.max_cm:
                return b.t
        return None  # unreachable: the last band is open

    def stage(
        self, site: str, size_cm: float | None, nodes: str | None, metastasis: str | None,
        grade: str | None,
    ) -> StageResult | None:
        sys = self._by_site.get(site)
        if sys is None:
            return None
        t = self.t_category(sys, size_cm)
        n = self.tables.node_map[nodes] if nodes is not None else None
        g = self.tables.grade_map[grade] if grade is not None else None
        possible = self._possible[(sys.id, (t, n, metastasis, g))]
        group = next(iter(possible)) if len(possible) == 1 else None
        return StageResult(
            system=sys.name,
            t=t,
            n=nodes,
            m=metastasis,
            g=self.tables.grade_label[grade] if grade is not None else None,
            group=group,
            possible=possible,
        )
