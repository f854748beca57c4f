#!/usr/bin/env bash
# Start Janus (Debian package `janus`, 1.1.x) with the config in this folder.
#   usage: ./run-janus.sh [HTTP_PORT] [extra janus flags, e.g. -d 4]
#          ./run-janus.sh teardown      # remove the jlo0 / 127.0.0.2 setup
#   env:   JANUS_HTTP_PORT (default 8088), JANUS_LOG (log file; default stdout)
# Runs in the foreground; SIGINT or SIGTERM stops Janus cleanly.
# Needs root (CAP_NET_ADMIN) the first time, to set up 127.0.0.2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ "${1:-}" = teardown ]; then
	ip link del jlo0 2>/dev/null || true
	ip addr del 127.0.0.2/32 dev lo 2>/dev/null || true
	exit 0
fi
port="${1:-${JANUS_HTTP_PORT:-8088}}"
shift || true

# Janus never gathers ICE candidates on a LOOPBACK-flagged interface, so
# 127.0.0.2 goes on a veth (jlo0, which janus.jcfg enforces) for Janus to see,
# and on lo as well: libnice pins each socket to the first interface holding
# its address (IP_UNICAST_IF), which must be lo or every send fails (EINVAL).
# Media therefore flows 127.0.0.1 <-> 127.0.0.2 over loopback only.
if ! ip link show jlo0 >/dev/null 2>&1; then
	ip link add jlo0 type veth peer name jlo0p
	sysctl -qw net.ipv6.conf.jlo0.disable_ipv6=1 net.ipv6.conf.jlo0p.disable_ipv6=1 || true
	ip link set jlo0p up
	ip link set jlo0 up
fi
ip -4 addr show dev lo | grep -q 'inet 127.0.0.2/32' || ip addr add 127.0.0.2/32 dev lo
ip -4 addr show dev jlo0 | grep -q 'inet 127.0.0.2/32' || ip addr add 127.0.0.2/32 dev jlo0

# The HTTP port lives only in janus.transport.http.jcfg, so use a per-run copy.
conf="$(mktemp -d /tmp/janus-conf.XXXXXX)"
trap 'rm -rf "$conf"' EXIT
cp "$here"/*.jcfg "$conf"/
sed -i "s/^\(\s*port\s*=\s*\).*/\1$port/" "$conf/janus.transport.http.jcfg"

log=()
[ -n "${JANUS_LOG:-}" ] && log=(--log-file="$JANUS_LOG")
# Not exec'd, so the EXIT trap can remove the temp folder; pass signals on.
janus --configs-folder="$conf" --disable-colors "${log[@]}" "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null' INT TERM
wait $pid || true
wait $pid 2>/dev/null || true
