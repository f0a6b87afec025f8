"""A pool's status record in Table storage holds a large pool: split over properties, read back
whole, and a shorter record after it leaves no stale parts behind."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.adapters.ledger import StateTooLarge, Tables
from shared.adapters.storage import StorageAccount


def _record(instances: int) -> dict[str, Any]:
    """About what read_truth records per instance (the heaviest fields filled)."""
    return {
        "pool": "workers",
        "counts": {"live": instances},
        "instances": {
            str(i): {
                "computer_name": f"aks-workers-12345678-vmss{i:06d}",
                "state": "live",
                "node": f"aks-workers-12345678-vmss{i:06d}",
                "kernel": "6.8.0-1017-azure",
                "last_patched": "2026-11-30T02:14:07.123456+00:00",
                "ready": True,
                "cordoned": False,
                "latest_model": True,
                "image": "2026.1130.24207",
                "zone": "2",
                "failure": None,
            }
            for i in range(instances)
        },
        "observations": {
            str(i): {"state": "live", "since": "2026-11-30T02:14:07.123456+00:00"}
            for i in range(instances)
        },
    }


def test_a_thousand_instance_pool_record_fits_and_reads_back_whole(azurite: Any) -> None:
    tables = Tables(StorageAccount(connection_string=azurite.connection_string))
    pool = f"big-{uuid.uuid4().hex[:6]}"
    big = _record(1000)  # Azure's ceiling for one scale set
    tables.put_pool_status(pool, big)
    assert tables.pool_status(pool) == big
    small = _record(3)
    tables.put_pool_status(pool, small)  # the parts the big one needed are gone
    assert tables.pool_status(pool) == small


def test_a_record_beyond_a_row_is_refused_with_its_size(azurite: Any) -> None:
    tables = Tables(StorageAccount(connection_string=azurite.connection_string))
    with pytest.raises(StateTooLarge, match=r"status is \d+ characters"):
        tables.put_pool_status("huge", {"blob": "x" * 500_000})
