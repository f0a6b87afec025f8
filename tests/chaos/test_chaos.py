"""The chaos suite (issue 12): three local hosts consume the same queues while rounds of jobs of
every kind arrive and faults strike (5xx and 429 storms, failed, partial and lost deletes and
writes, nodes going NotReady, PDBs that refuse evictions, host SIGKILLs, Azurite restarts).
Issue 18 adds workers killed right after an Azure send, an operator's cordon mid-rollout and
node image, manual upgrades that never end, Kubernetes API outages and pools grown under the
repair brake. After each round: the recorded counts equal the truth, no instance went while
schedulable or with pods left, no pool went below min_nodes, no node is left cordoned without a
claim or a reason, every accepted job ended done or failed with a reason, and no message was
poisoned; and (tests/chaos/effects.py) no instance was restarted or reimaged twice for one job
step, no Ready node was deleted by a repair, no image job left its snapshot or failed version,
an operator's cordon was kept, and no repair acted through the brake.

`pytest tests/chaos` runs the small run (8 schedules, 1 round); `make chaos` the large one. A
failure prints the round's seed and schedule: `--chaos-seed SEED` plays that round again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.chaos.driver import Driver
from tests.chaos.invariants import check_round, known_issue
from tests.chaos.plugin import TALLY
from tests.chaos.report import Tally
from tests.chaos.rig import Rig, open_rig
from tests.chaos.schedules import POOLS, plan_round

pytestmark = pytest.mark.integration


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" not in metafunc.fixturenames:
        return
    options = metafunc.config.option
    if options.chaos_seed is not None:
        seeds = [options.chaos_seed]
    else:
        rounds = max(1, math.ceil(options.chaos_schedules / options.chaos_pools))
        seeds = list(range(options.chaos_first_seed, options.chaos_first_seed + rounds))
    metafunc.parametrize("seed", seeds)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with ExitStack() as running:
        yield open_rig(tmp_path_factory.mktemp("chaos"), running)


@pytest.fixture(scope="module")
def driver(rig: Rig) -> Driver:
    return Driver(rig)


@pytest.fixture(scope="module", autouse=True)
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """The run's figures, printed at the end of the session; written with --chaos-report."""
    tally = request.config.stash.setdefault(TALLY, Tally())
    yield tally
    path = request.config.option.chaos_report
    if path:
        option = request.config.option
        command = (
            f"pytest tests/chaos --chaos-schedules {option.chaos_schedules} "
            f"--chaos-pools {option.chaos_pools} --chaos-first-seed {option.chaos_first_seed}"
        )
        tally.write(Path(path), command)


def test_chaos_round_keeps_every_invariant(
    seed: int, rig: Rig, driver: Driver, tally: Tally, request: pytest.FixtureRequest
) -> None:
    pools = request.config.option.chaos_pools
    rnd = plan_round(seed, POOLS[:pools])
    result = driver.run(rnd)
    found = check_round(rig, result)
    tally.add(result, found)
    violations = [v for v in found if known_issue(v) is None]
    assert not violations, (
        f"replay with --chaos-seed {seed} --chaos-pools {pools}\n{rnd.describe()}\n"
        + "what the driver did:\n  "
        + "\n  ".join(result.done)
        + "\nviolations:\n  "
        + "\n  ".join(violations)
    )
