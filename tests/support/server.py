"""``mailbeacon serve`` as a real process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(
        self, data: Path, db: str, secret: str | None, env: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data / "serve.log"
        data.mkdir(parents=True, exist_ok=True)
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MAILBEACON_")},
            "MAILBEACON_DATA": str(data),
            "MAILBEACON_DB": db,
            "MAILBEACON_LISTEN": f"127.0.0.1:{self.port}",
        }
        if secret is not None:
            environ["MAILBEACON_SECRET"] = secret
        environ.update(env or {})  # more settings, e.g. MAILBEACON_SMTP_LISTEN
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailbeacon", "serve"],
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"serve did not start: {self.log.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # Where it is stuck: serve writes every thread's stack to its log on SIGUSR1.
            os.kill(self.process.pid, signal.SIGUSR1)
            time.sleep(1)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            raise AssertionError(f"serve did not stop:\n{self.log.read_text()[-20000:]}") from None
