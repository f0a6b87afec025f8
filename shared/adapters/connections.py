"""One Kubernetes connection per cluster, built on first use from the configuration: a listed
cluster (`shared.config.clusters`) with its secrets from Key Vault, or `default` from the
single-cluster settings. A connection is rebuilt after MAX_AGE_SECONDS, so a rotated client
certificate or CA is picked up without a restart. Every call to a cluster passes its breaker
(shared.decide.breaker), kept across rebuilds: a cluster that stops answering is given up on fast,
so it cannot hold the workers the other clusters' jobs need."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.adapters.kube import REQUEST_TIMEOUT, ClusterUnavailable, Kube
from shared.config import Config
from shared.config.clusters import DEFAULT_CLUSTER
from shared.decide.breaker import Breaker, admit, after_failure, after_success, retry_in

log = logging.getLogger("poolkeeper.clusters")

MAX_AGE_SECONDS = 600.0

# Told when a cluster's breaker opens or closes (the status page's record of it).
BreakerChanged = Callable[[str, Breaker], None]


def _server_error(answer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The API server's 5xx, as the breaker counts it; None for any other answer. The eviction
    API's 500 for a pod under two budgets is a fixed answer about that pod, not an outage."""
    status = getattr(answer, "status", None)
    if not isinstance(status, int) or status < 500:
        return None
    method, url = [*args, kwargs.get("method", ""), kwargs.get("url", "")][:2]
    if str(method).upper() == "POST" and str(url).rstrip("/").endswith("/eviction"):
        return None
    return f"HTTP {status} {getattr(answer, 'reason', '') or ''}".strip()


class Gate:
    """One cluster's breaker around its calls; thread-safe. A call that gets no answer raises
    ClusterUnavailable (chained to what the client raised), so jobs wait it out as a temporary
    error from the first failure on, not only once the breaker is open."""

    def __init__(
        self,
        cluster: str,
        changed: BreakerChanged | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster, self._changed, self._clock = cluster, changed, clock
        self._breaker = Breaker()
        self._lock = threading.Lock()
        # The page's record follows the breaker in order: one notifier at a time, each telling
        # the state as it is then, not as it was when its change happened.
        self._notify_lock = threading.Lock()
        self._told_open = False

    @property
    def breaker(self) -> Breaker:
        return self._breaker

    def call(self, send: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`send(*args, **kwargs)` if the breaker lets it, else ClusterUnavailable at once. The
        body is read here, so a server that stalls mid-answer counts as not answering."""
        now = self._clock()
        with self._lock:
            go, self._breaker = admit(self._breaker, now)
            held = self._breaker
        if not go:
            raise ClusterUnavailable(self.cluster, held.last_error, retry_in(held, now))
        try:
            answer = send(*args, **kwargs)
            read = getattr(answer, "read", None)
            if callable(read):
                read()  # the REST response caches it for the client
        except Exception as error:
            status = getattr(error, "status", None)
            if isinstance(status, int) and 0 < status < 500:  # an answer, raised as it was
                self._settle(after_success)
                raise
            text = f"{type(error).__name__}: {error}"
            after = self._settle(lambda b: after_failure(b, self._clock(), text))
            raise ClusterUnavailable(
                self.cluster, text, retry_in(after, self._clock()), held=after.open
            ) from error
        failed = _server_error(answer, args, kwargs)
        if failed is None:
            self._settle(after_success)
        else:
            self._settle(lambda b: after_failure(b, self._clock(), failed))
        return answer

    def _settle(self, change: Callable[[Breaker], Breaker]) -> Breaker:
        with self._lock:
            before = self._breaker
            self._breaker = after = change(before)
        if before.open != after.open:
            if after.open:
                log.warning(
                    "Cluster %s: %d calls in a row got no answer; calls are held back for %.0f s "
                    "(last error: %s)",
                    self.cluster,
                    after.failures,
                    retry_in(after, self._clock()),
                    after.last_error,
                )
            else:
                log.warning("Cluster %s answers again; calls go through", self.cluster)
            self._tell()
        return after

    def _tell(self) -> None:
        if self._changed is None:
            return
        with self._notify_lock:
            now = self._breaker
            if now.open == self._told_open:
                return
            try:
                self._changed(self.cluster, now)
                self._told_open = now.open
            except Exception as error:  # noqa: BLE001 - the record is for the page; calls go on
                log.warning("Cluster %s: breaker change not recorded: %s", self.cluster, error)


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
        breaker_changed: BreakerChanged | None = None,
    ) -> None:
        self._config, self._settings, self._secrets = config, settings, secrets
        self._one_attempt, self._read_timeout = one_attempt, read_timeout
        self._changed = breaker_changed
        self._built: dict[str, tuple[Kube, float]] = {}
        self._gates: dict[str, Gate] = {}
        self._lock = threading.Lock()

    def gate(self, cluster: str = DEFAULT_CLUSTER) -> Gate:
        """The cluster's breaker (one per cluster for the life of this object)."""
        with self._lock:
            found = self._gates.get(cluster)
            if found is None:
                found = self._gates[cluster] = Gate(cluster, self._changed)
            return found

    def kube(self, cluster: str = DEFAULT_CLUSTER) -> Kube:
        """The connection to `cluster` (built now if it is new or old)."""
        with self._lock:
            found = self._built.get(cluster)
        if found is not None and time.monotonic() < found[1]:
            return found[0]
        kube = self._connect(cluster).guarded_by(self.gate(cluster))
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
