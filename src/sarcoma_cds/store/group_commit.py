"""Group commit of audit records: many requests' rows in one transaction, each answered only
after the transaction holding its row has committed (issue 13).

A request builds its row (``AuditStore.build_record``) and hands it to the process's one
:class:`GroupCommitWriter`; a writer thread takes every row waiting, writes them in one
transaction and commits, then resolves each request's future with its row id. While one
transaction commits (the fsync is the cost), the rows of the next requests gather, so the batch
grows with the load and a lone request waits for nothing but its own commit (no timer).

JWT ids (the CDS Hooks replay store, ``seen_jti``) go through the same writer: each is inserted
with ``ON CONFLICT DO NOTHING`` in the batch's transaction, so a token id is accepted once
(``True``) and refused on every replay (``False``), within one batch, across batches and across
workers and replicas on one database, at the cost of no extra fsync per request. Expired ids
are purged once a minute, in a batch.

A CDS Hooks call hands its token id *and* its audit row over together (:meth:`submit_async`
with ``jti``): the batch inserts the token ids first and then only the rows whose token id was
new, so a call waits for one commit, not two in a row, and a replayed token leaves no audit
record (its future gives None: the route answers 401, no cards).

Guarantees:

* A future is resolved with an id only after the commit of the transaction holding that row
  returned: an answered request's record is durable (SQLite ``synchronous=FULL`` in WAL mode,
  PostgreSQL ``synchronous_commit=on``; see docs/service.md, "Durability").
* A batch whose transaction fails fails exactly the futures of its rows (:class:`AuditWriteFailed`);
  rows of earlier batches are committed and untouched, later batches are tried afresh.
* A process killed between batches loses only rows whose requests were not answered.

The writer thread starts on the first row (so tests, the CLI and every worker process get one
without set-up) and :meth:`GroupCommitWriter.close` writes what is queued, then stops it (the
app's shutdown calls it; a later row starts a new thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, delete, insert, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from sarcoma_cds.store.models import AuditRecord, CdsCard, SeenJti

log = logging.getLogger("sarcoma_cds.store")

#: Most rows in one transaction (bounds a transaction's size and its time to commit).
MAX_BATCH = 256
#: Seconds between two purges of expired JWT ids.
JTI_PURGE_EVERY_S = 60.0


class AuditWriteFailed(Exception):
    """The transaction holding this audit record did not commit: the request must not be
    answered as served (the service answers 503)."""


@dataclass
class _Pending:
    row: AuditRecord | None  # an audit row with its cards, or
    card_uuids: Sequence[str]
    service_id: str | None
    jti: tuple[str, str, datetime] | None = None  # a JWT id to remember (iss, jti, expires_at)
    #: a thread's future, or (``submit_async``) an asyncio future with its event loop
    future: Future[Any] | asyncio.Future[Any] = field(default_factory=Future)
    loop: asyncio.AbstractEventLoop | None = None


def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """On an event loop: resolve the asyncio futures of a batch (one wake-up for all)."""
    for fut, value, exc in results:
        if fut.done():  # its request was cancelled (the client went away)
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


_STOP = object()


def _values(row: AuditRecord) -> dict[str, Any]:
    """The column values of a row built by ``AuditStore.build_record`` (whatever columns it
    fills), for a Core multi-row INSERT: a fraction of the ORM's per-object cost."""
    out: dict[str, Any] = {}
    for prop in _COLUMNS:
        value = getattr(row, prop.key)
        col = prop.columns[0]
        if value is None and (col.primary_key or col.default is not None):
            continue  # autoincrement key, or the column's default
        out[col.name] = value
    return out


_COLUMNS = list(inspect(AuditRecord).column_attrs)
_AUDIT = cast(Table, AuditRecord.__table__)
_CARDS = cast(Table, CdsCard.__table__)


class GroupCommitWriter:
    """One writer thread per process that commits queued audit rows in batches."""

    def __init__(self, sessions: sessionmaker[Session], *, max_batch: int = MAX_BATCH,
                 lock_path: Path | None = None) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        #: SQLite: the writers of every worker process take turns through this file lock. A
        #: writer waiting for it is woken the moment it is free, where SQLite's own busy handler
        #: would poll with sleeps of up to 100 ms (long tails under load).
        self.lock_path = lock_path
        self._lock_fd: int | None = None
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: transactions committed and rows written (for the benchmark and the tests)
        self.batches = 0
        self.rows = 0
        self._purged_at = 0.0

    # ------------------------------------------------------------------ callers
    def submit(self, row: AuditRecord, card_uuids: Sequence[str] = (),
               service_id: str | None = None) -> Future[str]:
        """Queue a row (and its CDS card uuids); the future gives the row id once committed, or
        raises :class:`AuditWriteFailed`."""
        fut: Future[str] = Future()
        self._put(_Pending(row, tuple(card_uuids), service_id, future=fut))
        return fut

    def submit_async(self, row: AuditRecord, card_uuids: Sequence[str] = (),
                     service_id: str | None = None, *,
                     jti: tuple[str, str, datetime] | None = None) -> asyncio.Future[Any]:
        """:meth:`submit` for a coroutine (call it on the event loop): the writer resolves the
        futures of one loop in a batch with a single wake-up of that loop.

        With ``jti`` (iss, token id, expires_at) the token id is stored in the same transaction,
        before the row, and the row is written only when the id is new: the future gives the
        row's id, or None for a replayed token id (then nothing of the row is written)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._put(_Pending(row, tuple(card_uuids), service_id, jti=_jti(jti), future=fut,
                           loop=loop))
        return fut

    def remember_jti_async(self, iss: str, jti: str,
                           expires_at: datetime) -> asyncio.Future[bool]:
        """:meth:`remember_jti` for a coroutine: the future gives True the first time, False on
        a replay."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._put(_Pending(None, (), None, jti=_jti((iss, jti, expires_at)), future=fut,
                           loop=loop))
        return fut

    def remember_jti(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Store a JWT id in the next batch and wait for its commit: True the first time it is
        seen, False on a replay. Raises :class:`AuditWriteFailed` when the batch failed."""
        fut: Future[bool] = Future()
        self._put(_Pending(None, (), None, jti=_jti((iss, jti, expires_at)), future=fut))
        return bool(fut.result())

    def _put(self, item: _Pending) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-group-commit",
                                                daemon=True)
                self._thread.start()
            self._queue.put(item)

    def write(self, row: AuditRecord, card_uuids: Sequence[str] = (),
              service_id: str | None = None) -> str:
        """Queue a row and wait until its transaction committed; returns its id."""
        return self.submit(row, card_uuids, service_id).result()

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the thread (a later submit starts a new one)."""
        with self._lock:  # held throughout: no row is queued behind the stop mark
            thread, self._thread = self._thread, None
            if thread is not None and thread.is_alive():
                self._queue.put(_STOP)
                thread.join(timeout)
            if self._lock_fd is not None and (thread is None or not thread.is_alive()):
                os.close(self._lock_fd)
                self._lock_fd = None

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Pending] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._process_turn():
                outcomes_ok = self._write(batch)
        except Exception as e:  # the whole transaction is rolled back: fail exactly these
            log.error("audit group commit of %d records failed: %s", len(batch),
                      type(e).__name__)
            outcomes: list[tuple[_Pending, Any, BaseException | None]] = []
            for p in batch:
                failed = AuditWriteFailed(f"the audit record was not written ({type(e).__name__})")
                failed.__cause__ = e  # (the database's error, for the operator's log)
                outcomes.append((p, None, failed))
            self._answer(outcomes)
            return
        self.batches += 1
        self.rows += len(batch)
        self._answer([(p, value, None) for p, value in zip(batch, outcomes_ok, strict=True)])

    @staticmethod
    def _answer(outcomes: list[tuple[_Pending, Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop,
                      list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for p, value, exc in outcomes:
            if p.loop is not None:
                by_loop.setdefault(p.loop, []).append(
                    (p.future, value, exc))  # type: ignore[arg-type]
                continue
            fut: Future[Any] = p.future  # type: ignore[assignment]
            with contextlib.suppress(InvalidStateError):  # its caller went away (cancelled)
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(value)
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, results)

    @contextlib.contextmanager
    def _process_turn(self) -> Iterator[None]:
        if self.lock_path is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def write_batch(self, items: Sequence[tuple[AuditRecord, Sequence[str], str | None]],
                    jtis: Sequence[tuple[str, str, datetime]] = ()) -> list[bool]:
        """Write rows with their cards, and JWT ids, in one transaction; returns after the
        commit, with True for each JWT id seen for the first time (False: a replay)."""
        batch = [_Pending(row, uuids, sid) for row, uuids, sid in items]
        batch += [_Pending(None, (), None, jti=_jti(j)) for j in jtis]
        return [bool(v) for p, v in zip(batch, self._write(batch), strict=True)
                if p.jti is not None]

    def _write(self, batch: Sequence[_Pending]) -> list[Any]:
        """One transaction for a batch: its JWT ids first (``ON CONFLICT DO NOTHING
        RETURNING``), then the audit rows (and their cards) of the items without a JWT id or
        whose id was new. Returns after the commit, for each item: its row's id, or None when
        its JWT id was a replay (the row was not written); for an item with no row, True when
        its JWT id was new, else False."""
        fresh: list[bool | None] = [None] * len(batch)
        with self.sessions.begin() as s:
            jtis = [(i, p.jti) for i, p in enumerate(batch) if p.jti is not None]
            if jtis:
                now = time.monotonic()
                if now - self._purged_at > JTI_PURGE_EVERY_S:
                    s.execute(delete(SeenJti).where(SeenJti.expires_at < datetime.now(UTC)))
                    self._purged_at = now
                conn = s.connection()
                ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
                first: dict[tuple[str, str], datetime] = {}
                for _, (iss, jti, exp) in jtis:  # (one id twice in a batch: the second is a
                    first.setdefault((iss, jti), exp)  # replay)
                # one statement, compiled once and cached (executemany with RETURNING)
                stmt = ins(SeenJti).on_conflict_do_nothing().returning(SeenJti.iss, SeenJti.jti)
                rows = conn.execute(stmt, [{"iss": i, "jti": j, "expires_at": e}
                                           for (i, j), e in first.items()])
                new = {(r.iss, r.jti) for r in rows}  # only the ids not seen before
                for i, (iss, jti, _) in jtis:
                    fresh[i] = (iss, jti) in new
                    new.discard((iss, jti))
            items = [p for i, p in enumerate(batch)
                     if p.row is not None and fresh[i] is not False]
            if items:  # one multi-row INSERT for the rows, then one for their cards
                conn = s.connection()
                conn.execute(insert(_AUDIT), [_values(p.row) for p in items if p.row])
                cards = [{"uuid": cu, "audit_id": p.row.id, "service_id": p.service_id or "",
                          "created_at": p.row.created_at}
                         for p in items if p.row is not None for cu in p.card_uuids]
                if cards:
                    conn.execute(insert(_CARDS), cards)
        out: list[Any] = []
        for p, ok in zip(batch, fresh, strict=True):
            if p.row is not None:
                out.append(None if ok is False else p.row.id)
            else:
                out.append(bool(ok))
        return out


def _jti(jti: tuple[str, str, datetime] | None) -> tuple[str, str, datetime] | None:
    """A JWT id to store, its issuer and id cut to their columns' sizes."""
    if jti is None:
        return None
    iss, value, expires_at = jti
    return iss[:300], value[:200], expires_at
