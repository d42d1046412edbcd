"""A real ``sarcoma-cds serve`` process on loopback, for the tests that need one (group commit
under SIGKILL, two replicas on one database). Import explicitly; not a conftest plugin."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

EXE = Path(sys.executable).parent / "sarcoma-cds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``sarcoma-cds serve`` in its own process group; ``kill()`` sends SIGKILL to all of it."""

    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                 base_url: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        full = {k: v for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "SARCOMA_CDS_WORKERS")}
        full.update(SARCOMA_CDS_DATA_DIR=str(data_dir), **(env or {}))
        if base_url:
            full["SARCOMA_CDS_BASE_URL"] = self.url
        self.log = (data_dir / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [str(EXE), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers)],
            env=full, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
