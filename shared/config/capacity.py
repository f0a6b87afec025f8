"""A pool's `capacity` section (docs/capacity.md): the P1/P2 thresholds, what a P2 does, whether
downscale reviews act, and the cooldown between scale-ups."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False, strict=False)]

# What each capacity field accepts, in the words the error messages use.
CAPACITY_ALLOWED = {
    "p1_cpu": "a percentage above 0 and at most 100 (default 95: node or group CPU over 1 h)",
    "p1_memory": "a percentage above 0 and at most 100 (default 85: memory over 1 h)",
    "p2_cpu": "a percentage above 0 and at most 100 (default 75: group CPU over 24 h)",
    "p2_memory": "a percentage above 0 and at most 100 (default 75: group memory over 24 h)",
    "auto_scale_up_on_p2": "true or false (default false: a P2 only notifies)",
    "execute_downscale": "true or false (default false: downscale reviews only recommend)",
    "cooldown_minutes": "a whole number of minutes from 1 to 1440 (default 30)",
}


class CapacitySettings(BaseModel):
    """A pool's capacity-management section (docs/capacity.md); every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p1_cpu: Percent = 95.0
    p1_memory: Percent = 85.0
    p2_cpu: Percent = 75.0
    p2_memory: Percent = 75.0
    auto_scale_up_on_p2: StrictBool = False
    execute_downscale: StrictBool = False
    cooldown_minutes: Annotated[StrictInt, Field(ge=1, le=1440)] = 30
