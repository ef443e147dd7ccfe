#!/bin/sh
# Hydra's "ssh" for simulated nodes (launch/netns.py): mpiexec -launcher ssh -launcher-exec THIS.
# Called as ssh would be: [options] HOST COMMAND...; enters the network namespace that
# NXPAR_NETNS_MAP ("10.77.0.1=ns-a,10.77.0.2=ns-b") names for HOST and runs COMMAND there with a
# shell, as sshd would.
while [ "${1#-}" != "$1" ]; do shift; done
host=$1
shift
ns=$(printf '%s\n' "$NXPAR_NETNS_MAP" | tr ',' '\n' | sed -n "s/^$host=//p")
if [ -z "$ns" ]; then
    echo "netns_ssh: no network namespace for host $host in NXPAR_NETNS_MAP=$NXPAR_NETNS_MAP" >&2
    exit 255
fi
exec ip netns exec "$ns" sh -c "$*"
