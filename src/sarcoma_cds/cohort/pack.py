"""Exact packing of small integer columns into a few wide integer words.

Equal words <=> equal values in every packed column (NULL included), so one hash of a word
replaces a hash of many columns: the key of the "once per distinct value" steps (the Polars
evaluator's stage 2, the decoder's strings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_BITS = 63  # per Int64 word (the sign bit stays clear)


def pack(df: Any, cols: list[str], wide: bool = False) -> tuple[list[Any], Callable[[Any], Any]]:
    """Expressions packing the integer columns ``cols`` of ``df`` exactly into as few words as
    their observed ranges allow (``_w0``, ``_w1``, ...), and a function adding the columns
    back to a frame of words. Words are Int64; with ``wide``, pairs of them are joined into
    Int128 words: one 128-bit key joins and de-duplicates faster than two 64-bit ones (the
    arithmetic is done in 64 bits, which is faster)."""
    import polars as pl

    stats = df.select([pl.col(c).min().alias(f"lo{i}") for i, c in enumerate(cols)]
                      + [pl.col(c).max().alias(f"hi{i}") for i, c in enumerate(cols)]).row(0)
    words: list[list[Any]] = []
    fields: list[Any] = []
    used = _BITS
    for i, c in enumerate(cols):
        lo, hi = stats[i], stats[len(cols) + i]
        lo = 0 if lo is None else lo
        hi = lo if hi is None else hi
        bits = (hi - lo + 1).bit_length()  # values 1..hi-lo+1, 0 for null
        if bits > _BITS:
            raise ValueError(f"column {c} spans more than {_BITS} bits")
        if used + bits > _BITS:
            words.append([])
            used = 0
        v = (pl.col(c) - lo + 1).fill_null(0)
        words[-1].append(v * (1 << used) if used else v)
        field = (pl.col(f"_w{len(words) - 1}") // (1 << used)) % (1 << bits)
        fields.append(
            pl.when(field == 0).then(None).otherwise(field - 1 + lo).cast(pl.Int64).alias(c)
        )
        used += bits
    narrow = [pl.sum_horizontal(w).cast(pl.Int64).alias(f"_w{k}") for k, w in enumerate(words)]
    if not wide or len(narrow) < 2:
        return narrow, lambda frame: frame.with_columns(fields)
    i128, shift = pl.Int128, pl.lit(1 << _BITS, pl.Int128)
    pairs = [narrow[k:k + 2] for k in range(0, len(narrow), 2)]
    joined = [
        (p[0].cast(i128) + p[1].cast(i128) * shift if len(p) == 2 else p[0].cast(i128)).alias(
            f"_k{k}"
        )
        for k, p in enumerate(pairs)
    ]
    split = []
    for k, p in enumerate(pairs):
        split.append((pl.col(f"_k{k}") % shift).cast(pl.Int64).alias(f"_w{2 * k}"))
        if len(p) == 2:
            split.append((pl.col(f"_k{k}") // shift).cast(pl.Int64).alias(f"_w{2 * k + 1}"))
    return joined, lambda frame: frame.with_columns(split).with_columns(fields)
