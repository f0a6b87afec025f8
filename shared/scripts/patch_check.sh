#!/bin/bash
# Poolkeeper patch check: what this node runs and what it needs. Changes nothing (apt-get -s only
# simulates). Output: sections "== name" followed by their lines; "== done" last, so a script
# cut short can be told from one that finished.
set -eu
echo "== kernel"
uname -r
echo "== boot"
cat /proc/sys/kernel/random/boot_id
echo "== reboot"
[ -f /var/run/reboot-required ] && echo required || echo not-required
echo "== upgrades"
apt-get -qq update
apt-get -s -q dist-upgrade
echo "== done"
