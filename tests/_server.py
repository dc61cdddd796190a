"""Starts ``knnkit serve`` in a subprocess on a free loopback port, for the server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HAS_SERVER = all(
    __import__("importlib").util.find_spec(m) is not None
    for m in ("fastapi", "uvicorn", "prometheus_client")
)
needs_server = pytest.mark.skipif(
    not HAS_SERVER,
    reason="knnkit serve needs the server extra (fastapi, uvicorn, prometheus-client)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``knnkit serve --path PATH`` on 127.0.0.1 at a free port; ``url``, ``stop()``, ``kill()``."""

    def __init__(self, path: Path, *extra: str, port: int | None = None, log: Path | None = None):
        self.path = path
        self.extra = extra
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or path.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Server:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        cmd = [
            sys.executable,
            "-m",
            "knnkit.cli",
            "serve",
            "--path",
            str(self.path),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *self.extra,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"knnkit serve exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"knnkit serve did not get ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL to the whole process group (uvicorn's workers too)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
