"""The simulator shows an instance's last run command in its instance view, as Azure does (the
RunCommandLinux extension's status): how a caller that lost the operation's token finds out
whether the script ran, and what it printed. Through the real SDK."""

from __future__ import annotations

from pathlib import Path

from shared.adapters.instances import Instances
from shared.adapters.scaleset import ScaleSets
from shared.clock import FileClock
from tests.simulator import RG, STOPPED, Simulator, scale_set, scenario
from tests.truth_support import vmss_id_of

VMSS = "aks-workers-11111111-vmss"


def test_the_instance_view_shows_the_last_run_command_while_it_runs_and_after(
    sim: Simulator,
) -> None:
    sim.load(scenario(scale_set(VMSS, 2), speed=STOPPED))
    vms = sim.compute().virtual_machine_scale_set_vms

    def extensions(instance: str) -> list[object]:
        view = vms.get(RG, VMSS, instance, expand="instanceView").properties.instance_view
        return list(view.extensions or [])

    assert extensions("1") == []  # nothing has run yet
    body = {"commandId": "RunShellScript", "script": ["hostname"]}
    poller = vms.begin_run_command(RG, VMSS, "1", body)
    (running,) = extensions("1")
    assert running.type == "Microsoft.CPlat.Core.RunCommandLinux"
    assert running.statuses[0].code == "ProvisioningState/transitioning"
    sent_at = running.statuses[0].time
    sim.advance(21)
    poller.result()
    (ran,) = vms.get_instance_view(RG, VMSS, "1").extensions
    assert ran.statuses[0].code == "ProvisioningState/succeeded"
    assert "[stdout]\naks-workers-11111111-vmss000001\n" in ran.statuses[0].message
    assert ran.statuses[0].time > sent_at
    assert extensions("0") == []  # another instance's view shows only its own

    # The product's adapter reads it the same way.
    settings = {
        "POOLKEEPER_ARM_ENDPOINT": sim.info["arm"],
        "POOLKEEPER_CA_BUNDLE": sim.info["ca_cert"],
    }
    scale_sets = ScaleSets.from_settings(settings, clock=FileClock(Path(sim.info["clock_file"])))
    try:
        look = Instances(scale_sets).look(vmss_id_of(VMSS), "1")
    finally:
        scale_sets.close()
    assert look.last_script is not None and look.last_script.state == "succeeded"
    assert look.last_script.stdout.strip() == "aks-workers-11111111-vmss000001"
    assert look.instance.provisioning == "Succeeded" and look.instance.latest_model
