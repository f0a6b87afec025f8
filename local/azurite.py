"""Runs Azurite (the npm package pinned in package.json) in memory on loopback free ports, or
on disk in `location` (so a restart comes back with its data, as the chaos suite needs).

Used by `local.stack` and by the test fixtures; always stopped by its context manager.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from local.procs import free_port, stop_group, tcp_open, wait_until

ROOT = Path(__file__).resolve().parent.parent
KEEP_ALIVE_SECONDS = 240  # idle connections kept open (Azurite's default: 5 s)
# Azurite saves its data at SIGTERM (else only every 5 s): give it time to, on a loaded machine.
STOP_GRACE = 60.0
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft); loopback only.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite:
    """An Azurite process with blob, queue and table services; use it as a context manager."""

    def __init__(
        self, host: str = "127.0.0.1", log: Path | None = None, location: Path | None = None
    ) -> None:
        self.host = host
        self.location = location
        self.ports = {"blob": free_port(host), "queue": free_port(host), "table": free_port(host)}
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        endpoints = ";".join(
            f"{service.capitalize()}Endpoint=http://{self.host}:{port}/{ACCOUNT}"
            for service, port in self.ports.items()
        )
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};{endpoints};"

    def start(self, timeout: float = 30.0, attempts: int = 3) -> Azurite:
        """Start Azurite; if it exits at once (a port chosen free was taken meanwhile by
        another process on this machine), try again on fresh ports."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(timeout)
            except RuntimeError as error:
                if attempt == attempts or "exited with code" not in str(error):
                    raise
                self.ports = {service: free_port(self.host) for service in self.ports}
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Azurite:
        binary = ROOT / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            raise FileNotFoundError(f"{binary} is missing: run `npm ci` in {ROOT}")
        persistence = (
            ["--location", str(self.location)] if self.location else ["--inMemoryPersistence"]
        )
        args = [str(binary), *persistence, "--disableTelemetry", "--skipApiVersionCheck"]
        for service, port in self.ports.items():
            args += [f"--{service}Host", self.host, f"--{service}Port", str(port)]
            # Azurite closes an idle connection after 5 s; a client that reuses it that instant
            # gets a reset, and a POST (a table batch) is not retried. Azure's front ends keep an
            # idle connection for 4 minutes: the same as here.
            args += [f"--{service}KeepAliveTimeout", str(KEEP_ALIVE_SECONDS)]
        output = open(self._log, "ab") if self._log else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            args, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(
                lambda: all(tcp_open(self.host, port) for port in self.ports.values()),
                timeout=timeout,
                what="Azurite",
                process=self._process,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, timeout: float = 30.0) -> None:
        """Stop (SIGTERM: Azurite saves its data) and start again on the same ports, so clients
        keep their connection string. Only meaningful with a `location`."""
        if self.location is None:
            raise ValueError("an in-memory Azurite loses its data on restart; give it a location")
        if self.stop():
            raise RuntimeError(
                f"Azurite did not stop within {STOP_GRACE:.0f} s of SIGTERM and was killed: "
                "the writes of its last autosave interval (5 s) may be lost"
            )
        self._start(timeout)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Azurite stopped with SIGSTOP for the block: the kernel still accepts connections and
        nobody answers, as with a storage account that hangs. Always continued on the way out."""
        if self._process is None:
            raise RuntimeError("Azurite is not running")
        os.killpg(self._process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self._process.pid, signal.SIGCONT)

    def stop(self) -> bool:
        """Stop Azurite (it saves its data at SIGTERM); True when it had to be killed."""
        killed = False
        if self._process is not None:
            killed = stop_group(self._process, grace=STOP_GRACE)
            self._process = None
        return killed

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
