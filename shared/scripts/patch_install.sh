#!/bin/bash
# Poolkeeper patch install: every pending update, non-interactively, keeping local config files.
# The node is drained before this runs; the reboot is Azure's restart afterwards. "== done" last.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get -qq update
apt-get -y -q -o Dpkg::Options::=--force-confold dist-upgrade
echo "== reboot"
[ -f /var/run/reboot-required ] && echo required || echo not-required
echo "== done"
