#!/bin/bash
# Poolkeeper patch check: what this node runs and what it needs. Changes nothing (apt-get -s only
# simulates). Output: sections "== name" followed by their lines, "== done" last. Azure keeps
# only the last 4 KB of a run command's output, so the long list of updates comes first and the
# short facts after it: a cut can only shorten the list.
set -eu
echo "== upgrades"
apt-get -qq update
apt-get -s -qq dist-upgrade
echo "== kernel"
uname -r
echo "== boot"
cat /proc/sys/kernel/random/boot_id
echo "== reboot"
[ -f /var/run/reboot-required ] && echo required || echo not-required
echo "== done"
