"""When a delete's outcome is known (invariant 12): each victim is gone, going, or back — and a
victim that looks back soon after a lost answer may only look so. Pure; the scale-in's `settle`
step asks `settle` on each full re-read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta

from shared.decide.claims import SETTLE_QUIET
from shared.decide.counting import InstanceState


@dataclass(frozen=True)
class Settlement:
    deleted: list[str]  # gone
    survivors: list[str]  # back in a steady state, and that is known
    unsettled: list[str]  # still `Deleting`, or steady too soon after a lost answer
    doubtful: list[str]  # steady long after a lost answer, never seen going: ask again


def settle(
    victims: list[str],
    states: Mapping[str, InstanceState | None],
    *,
    definitive: bool,
    seen_going: Collection[str],
    since_sent: timedelta,
) -> Settlement:
    """Sort the victims of a delete by what a fresh read says of them. Pure.

    `states` has None for a victim that is gone. `definitive`: Azure answered (the operation
    ended, or the request was refused). `seen_going`: victims an earlier read saw `Deleting`
    after the send — the request reached them, so once steady they are back for good.
    """
    deleted, survivors, unsettled, doubtful = [], [], [], []
    for victim in victims:
        state = states.get(victim)
        if state is None:
            deleted.append(victim)
        elif state is InstanceState.DELETING:
            unsettled.append(victim)
        elif definitive or victim in seen_going:
            survivors.append(victim)
        elif since_sent < SETTLE_QUIET:
            unsettled.append(victim)
        else:
            doubtful.append(victim)
    return Settlement(deleted, survivors, unsettled, doubtful)
