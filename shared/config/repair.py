"""A pool's `repair` section (docs/repair.md): whether Poolkeeper repairs the pool's nodes on its
own, the deadlines after which drift is repaired, and the brakes.

Part of the pool configuration (`shared.config.Pool.repair`); every field is optional, and
`"repair": "off"` is short for `{"enabled": false}`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

# What each field accepts, in the words the error messages use.
REPAIR_ALLOWED = {
    "enabled": 'true or false (default true; "repair": "off" is short for enabled false)',
    "not_ready_minutes": "a whole number of minutes from 1 to 1440 (default 10: NotReady this "
    "long, or a live instance with no node this long, starts the restart-reimage-replace ladder)",
    "stuck_minutes": "a whole number of minutes from 5 to 1440 (default 20: Creating or Deleting "
    "this long is deleted once, by force)",
    "ready_timeout_minutes": "a whole number of minutes from 2 to 240 (default 10: how long each "
    "rung waits for the node to come back Ready)",
    "max_unhealthy_share": "a fraction above 0 and at most 1 (default 0.34: more of the pool or "
    "of the cluster unhealthy at once is an outage, not a node to repair)",
    "max_repairs_per_node_per_day": "a whole number from 1 to 20 (default 3: one more and the "
    "node is quarantined)",
    "delete_orphan_nodes": "true or false (default false: a node object whose instance is gone "
    "is only reported)",
    "orphan_node_minutes": "a whole number of minutes from 5 to 10080 (default 60)",
}


class RepairSettings(BaseModel):
    """A pool's repair section; the defaults repair like AKS's node auto-repair, with brakes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = True
    not_ready_minutes: Annotated[StrictInt, Field(ge=1, le=1440)] = 10
    stuck_minutes: Annotated[StrictInt, Field(ge=5, le=1440)] = 20
    ready_timeout_minutes: Annotated[StrictInt, Field(ge=2, le=240)] = 10
    max_unhealthy_share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.34
    max_repairs_per_node_per_day: Annotated[StrictInt, Field(ge=1, le=20)] = 3
    delete_orphan_nodes: StrictBool = False
    orphan_node_minutes: Annotated[StrictInt, Field(ge=5, le=10080)] = 60

    @model_validator(mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # The short form an operator reaches for first.
        return {"enabled": False} if value == "off" else value
