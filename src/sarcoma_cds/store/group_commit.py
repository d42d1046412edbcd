"""Group commit of audit records: many requests' rows in one transaction, each answered only
after the transaction holding its row has committed (issue 13).

A request builds its row (``AuditStore.build_record``) and hands it to the process's one
:class:`GroupCommitWriter`; a writer thread takes every row waiting, writes them in one
transaction and commits, then resolves each request's future with its row id. While one
transaction commits (the fsync is the cost), the rows of the next requests gather, so the batch
grows with the load and a lone request waits for nothing but its own commit (no timer).

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

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from sarcoma_cds.store.models import AuditRecord, CdsCard

log = logging.getLogger("sarcoma_cds.store")

#: Most rows in one transaction (bounds a transaction's size and its time to commit).
MAX_BATCH = 256


class AuditWriteFailed(Exception):
    """The transaction holding this audit record did not commit: the request must not be
    answered as served (the service answers 503)."""


@dataclass
class _Pending:
    row: AuditRecord
    card_uuids: Sequence[str]
    service_id: str | None
    future: Future[str] = field(default_factory=Future)


_STOP = object()


class GroupCommitWriter:
    """One writer thread per process that commits queued audit rows in batches."""

    def __init__(self, sessions: sessionmaker[Session], *, max_batch: int = MAX_BATCH) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: transactions committed and rows written (for the benchmark and the tests)
        self.batches = 0
        self.rows = 0

    # ------------------------------------------------------------------ callers
    def submit(self, row: AuditRecord, card_uuids: Sequence[str] = (),
               service_id: str | None = None) -> Future[str]:
        """Queue a row (and its CDS card uuids); the future gives the row id once committed, or
        raises :class:`AuditWriteFailed`."""
        item = _Pending(row, tuple(card_uuids), service_id)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-group-commit",
                                                daemon=True)
                self._thread.start()
            self._queue.put(item)
        return item.future

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
            self.write_batch([(p.row, p.card_uuids, p.service_id) for p in batch])
        except Exception as e:  # the whole transaction is rolled back: fail exactly these
            log.error("audit group commit of %d records failed: %s", len(batch),
                      type(e).__name__)
            for p in batch:
                failed = AuditWriteFailed(f"the audit record was not written ({type(e).__name__})")
                failed.__cause__ = e  # (the database's error, for the operator's log)
                with contextlib.suppress(InvalidStateError):
                    p.future.set_exception(failed)
            return
        self.batches += 1
        self.rows += len(batch)
        for p in batch:
            with contextlib.suppress(InvalidStateError):  # its caller went away (cancelled)
                p.future.set_result(p.row.id)

    def write_batch(self, items: Sequence[tuple[AuditRecord, Sequence[str], str | None]]) -> None:
        """Write rows and their cards in one transaction; returns after the commit."""
        with self.sessions.begin() as s:
            s.add_all([row for row, _, _ in items])
            s.flush()  # the rows before the cards that point at them
            s.add_all([CdsCard(uuid=cu, audit_id=row.id, service_id=sid or "",
                               created_at=row.created_at)
                       for row, cards, sid in items for cu in cards])
