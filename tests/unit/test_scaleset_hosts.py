"""The Compute client's requests go to the ARM endpoint and nowhere else."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shared.adapters.scaleset import UntrustedRequest, _only_to

ARM = "https://management.azure.com"


def _request(url: str) -> SimpleNamespace:
    return SimpleNamespace(http_request=SimpleNamespace(url=url))


@pytest.mark.parametrize(
    "url",
    [
        f"{ARM}/subscriptions/s/providers/Microsoft.Compute/locations/w/operations/1",
        "https://MANAGEMENT.azure.com:443/subscriptions/s?api-version=2024-07-01",
    ],
)
def test_requests_for_the_endpoint_pass(url: str) -> None:
    _only_to(ARM)(_request(url))


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/subscriptions/s/operations/1",
        "http://management.azure.com/subscriptions/s",  # not TLS
        "https://management.azure.com:8443/subscriptions/s",  # another port
        "https://management.azure.com.attacker.example/subscriptions/s",
    ],
)
def test_requests_for_any_other_origin_are_refused_naming_it(url: str) -> None:
    with pytest.raises(UntrustedRequest, match="is not the ARM endpoint"):
        _only_to(ARM)(_request(url))
