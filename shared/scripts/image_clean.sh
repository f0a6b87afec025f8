#!/bin/bash
# Poolkeeper image clean-up, run by run command on the drained donor right before its OS disk is
# captured: removes what makes this VM this node, so every VM booted from the image gets its own
# identity (Kamino's vmss-prototype; kamino#22: clones sharing a machine-id), then powers off from
# inside so nothing writes a new identity before the snapshot. "== done" last: run command reports
# success whatever the exit code, so only the marker says the script got to its end.
set -eu

echo "== agent"
# The Azure Linux agent keeps running until the power-off: it reports this script's answer.
# Without its provisioned marker it provisions the next VM afresh; history and events are this VM's.
rm -f /var/lib/waagent/provisioned
rm -rf /var/lib/waagent/history/* /var/lib/waagent/events/*

echo "== cloud-init"
# Per-instance state, logs and seed: the next boot runs cloud-init as a new instance, which sets
# the hostname Azure gives and writes the per-instance state for that VM.
cloud-init clean --logs --seed

echo "== hostname"
rm -f /etc/hostname

echo "== machine-id"
# Emptied, not deleted: systemd generates a new id at the next boot only for an empty file, and
# would take the D-Bus copy if one were left.
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id

echo "== journal"
journalctl --rotate
journalctl --vacuum-time=1s
sync

echo "== poweroff"
# In 5 s, so that run command answers first; Azure then shows the VM stopped (not deallocated).
systemd-run --on-active=5 --quiet /usr/bin/systemctl poweroff
echo "== done"
