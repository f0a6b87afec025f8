"""The product's Kubernetes adapter against the simulator's API server: every call is bounded."""

from __future__ import annotations

import time

import pytest
import requests
from kubernetes import config

from shared.adapters.kube import Kube
from tests.simulator import Simulator


def test_a_hung_api_server_ends_a_call_instead_of_holding_the_worker(sim: Simulator) -> None:
    sim.post("kube/faults", {"kind": "timeout", "verbs": ["get", "list", "patch"], "seconds": 300})
    kube = Kube(config.new_client_from_config(config_file=sim.info["kubeconfig"]), timeout=(2, 2))
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match=r"(?i)read timed out"):
            kube.nodes()
        with pytest.raises(Exception, match=r"(?i)read timed out"):
            kube.annotate("any-node", {"poolkeeper.io/test": "x"})
    finally:
        requests.delete(f"{sim.admin}/kube/faults", timeout=10)
    # The fault holds each request 300 s: ending well before that proves the client gave up.
    assert time.monotonic() - started < 200
