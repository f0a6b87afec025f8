"""The instance OS: pure rules (versions, the archive by date, boots) and the world's boot path
(restart, in-guest reboot, boot faults, a kernel that breaks) seen by the cluster, no HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from local.sim import guest
from local.sim.kube.model import Cluster
from local.sim.kube.objects import condition, node_ready
from local.sim.scenario import BaseOs, Fault, OsUpdate, parse_scenario
from local.sim.world import World
from tests.unit.test_sim_kube_cluster import SUB, T0, WORKERS, StoppedClock, vmss


def test_versions_and_kernels_order_like_apt() -> None:
    assert guest.bump("3.0.13-0ubuntu3.4", 2) == "3.0.13-0ubuntu3.6"
    assert guest.bump("1.9.15p5-3ubuntu5", 1) == "1.9.15p5-3ubuntu6"
    kernels = ["6.8.0-1017-azure", "6.8.0-1009-azure", "6.11.0-1002-azure"]
    assert sorted(kernels, key=guest.kernel_key)[-1] == "6.11.0-1002-azure"
    assert guest.resolve("/var/run//reboot-required/") == "/run/reboot-required"


def test_the_archive_holds_only_what_is_published_by_now() -> None:
    base = BaseOs()
    updates = [
        OsUpdate(date=T0 + timedelta(days=2), kernel="6.8.0-1019-azure", packages=1),
        OsUpdate(date=T0 + timedelta(days=1), kernel="6.8.0-1017-azure", packages=1),
    ]
    assert guest.repo(base, list(updates), T0).kernel() is None
    archive = guest.repo(base, list(updates), T0 + timedelta(days=1))
    assert archive.kernel() is updates[1]
    assert archive.newest() == {"containerd": ("1.7.12-0ubuntu4.2", False)}
    later = guest.repo(base, list(updates), T0 + timedelta(days=3))
    assert later.kernel() is updates[0] and later.newest()["containerd"][0] == "1.7.12-0ubuntu4.3"


def test_an_emptied_machine_id_is_written_anew_at_boot_and_run_is_a_tmpfs() -> None:
    disk = guest.base_disk(BaseOs(), (), "vm")
    running = guest.Guest()
    assert disk.machine_id() == "", "a generalized image has no machine-id"
    guest.boot(disk, running, boot_id="b1", hostname="h1", machine_id="first")
    running.run[guest.SENTINEL] = "x"
    guest.shut_down(running)
    assert not running.up and running.run == {} and running.boot_id == "b1"
    disk.files[guest.MACHINE_ID] = ""
    guest.boot(disk, running, boot_id="b2", hostname="h1", machine_id="second")
    assert disk.machine_id() == "second" and running.boots == 2


class Sim:
    def __init__(self, **extra: Any) -> None:
        data = {
            "subscription": SUB,
            "clock": {"start": T0.isoformat()},
            "scale_sets": [vmss(WORKERS, 3, "workers")],
            "latencies": {"reboot": 90, "run_command": 20},
        } | extra
        self.clock = StoppedClock()
        self.world = World(parse_scenario(data, source="test"), self.clock)
        self.cluster = Cluster(self.world, {})
        self.scale_set = next(iter(self.world.scale_sets.values()))

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.cluster.sync()

    def node(self, n: int) -> dict[str, Any]:
        return self.cluster.get("nodes", "", self.scale_set.instances[n].computer_name)

    def run(self, n: int, script: str) -> Any:
        op = self.world.run_command(
            self.scale_set,
            self.scale_set.instances[n],
            "RunShellScript",
            script.split("\n"),
            fault=None,
            operation="VirtualMachineScaleSetVMs_RunCommand",
        )
        self.advance(20)
        assert op.status == "Succeeded"
        return op.result


def test_install_then_restart_boots_the_new_kernel_and_ready_is_stamped_when_it_happened() -> None:
    sim = Sim(os_updates=[{"date": T0.isoformat(), "kernel": "6.8.0-1017-azure", "packages": 2}])
    before = sim.node(1)["status"]["nodeInfo"]
    assert (
        before["kernelVersion"] == "6.8.0-1015-azure" and before["osImage"] == "Ubuntu 24.04.1 LTS"
    )
    machine_ids = {sim.node(n)["status"]["nodeInfo"]["machineID"] for n in range(3)}
    assert len(machine_ids) == 3 and all(len(m) == 32 for m in machine_ids)
    result = sim.run(
        1, "apt-get -y -q dist-upgrade\n[ -f /var/run/reboot-required ] && echo required"
    )
    assert result["value"][0]["message"].endswith("required\n\n[stderr]\n\n")
    sim.world.instance_action(
        sim.scale_set, "restart", ["1"], fault=None, operation="VirtualMachineScaleSetVMs_Restart"
    )
    restarted = sim.clock.now()
    assert sim.scale_set.instances[1].power == "running", "Azure shows running during the reboot"
    sim.advance(200)  # one sync, long after the reboot: the transitions keep their own times
    node = sim.node(1)
    info = node["status"]["nodeInfo"]
    assert info["kernelVersion"] == "6.8.0-1017-azure" and info["bootID"] != before["bootID"]
    assert info["machineID"] == before["machineID"]
    ready = condition(node, "Ready")
    assert ready is not None and ready["status"] == "True"
    assert ready["lastTransitionTime"] == (restarted + timedelta(seconds=90)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert not sim.scale_set.instances[1].guest.reboot_required


def test_a_reboot_between_two_reads_still_shows_not_ready_at_its_time() -> None:
    sim = Sim()
    seen: list[tuple[datetime, bool]] = []
    sim.world.observers.append(lambda: seen.append((sim.world.now(), node_ready(sim.node(1)))))
    sim.run(1, "systemctl reboot")
    sim.advance(500)
    assert (T0 + timedelta(seconds=20), False) in seen
    assert (T0 + timedelta(seconds=110), True) in seen


def test_a_boot_fault_or_a_breaking_kernel_leaves_the_node_never_ready() -> None:
    sim = Sim(
        os_updates=[
            {"date": T0.isoformat(), "kernel": "6.8.0-1017-azure", "breaks": True, "packages": 0}
        ]
    )
    sim.world.add_fault(
        Fault(operation="Boot", kind="never_ready", scale_set=WORKERS, instance="2")
    )
    assert node_ready(sim.node(2)), "a fault waits for the next boot"
    sim.run(0, "apt-get -y dist-upgrade")
    for n in (0, 2):
        sim.world.instance_action(
            sim.scale_set, "restart", [str(n)], fault=None, operation="restart"
        )
    sim.advance(3600)
    assert not node_ready(sim.node(0)) and not node_ready(sim.node(2))
    assert node_ready(sim.node(1))
    assert sim.scale_set.instances[0].guest.up, "the VM is up; only its node never gets Ready"
