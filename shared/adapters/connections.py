"""One Kubernetes connection per cluster, built on first use from the configuration: a listed
cluster (`shared.config.clusters`) with its secrets from Key Vault, or `default` from the
single-cluster settings. A connection is rebuilt after MAX_AGE_SECONDS, so a rotated client
certificate or CA is picked up without a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.adapters.kube import REQUEST_TIMEOUT, Kube
from shared.config import Config
from shared.config.clusters import DEFAULT_CLUSTER

MAX_AGE_SECONDS = 600.0


class Connections:
    """The clusters' Kube adapters; thread-safe."""

    def __init__(
        self,
        config: Config,
        settings: Mapping[str, str],
        secrets: Callable[[], Any],
        *,
        one_attempt: bool = False,
        read_timeout: float | None = None,
    ) -> None:
        self._config, self._settings, self._secrets = config, settings, secrets
        self._one_attempt, self._read_timeout = one_attempt, read_timeout
        self._built: dict[str, tuple[Kube, float]] = {}
        self._lock = threading.Lock()

    def kube(self, cluster: str = DEFAULT_CLUSTER) -> Kube:
        """The connection to `cluster` (built now if it is new or old)."""
        with self._lock:
            found = self._built.get(cluster)
        if found is not None and time.monotonic() < found[1]:
            return found[0]
        kube = self._connect(cluster)
        with self._lock:
            self._built[cluster] = (kube, time.monotonic() + MAX_AGE_SECONDS)
        return kube

    def _connect(self, name: str) -> Kube:
        listed = self._config.cluster(name)
        if listed is not None:
            return Kube.for_cluster(
                listed,
                self._secrets(),
                self._settings,
                one_attempt=self._one_attempt,
                read_timeout=self._read_timeout,
            )
        read = min(self._read_timeout or REQUEST_TIMEOUT[1], REQUEST_TIMEOUT[1])
        return Kube.from_settings(
            self._settings,
            timeout=(min(REQUEST_TIMEOUT[0], read), read),
            one_attempt=self._one_attempt,
        )
