#!/bin/sh
# vnd-snmp PROTO [FIELD] (installed in the test guest as /usr/bin/vnd-snmp; also usable on the host).
# Without FIELD: prints the PROTO lines of /proc/net/snmp prefixed "VND-SNMP ".
# With FIELD: prints the counter's value (e.g. `vnd-snmp Tcp InCsumErrors`), exit 1 if there is no such counter.
proto=$1
field=$2
[ -n "$proto" ] || { echo "usage: vnd-snmp PROTO [FIELD]" >&2; exit 2; }
if [ -z "$field" ]; then
    grep "^$proto:" /proc/net/snmp | sed 's/^/VND-SNMP /'
    exit 0
fi
awk -v p="$proto:" -v f="$field" '
    $1 == p { if (!h) { for (i = 2; i <= NF; i++) if ($i == f) c = i; h = 1; next }
              if (c) { print $c; found = 1 } }
    END { if (!found) exit 1 }' /proc/net/snmp
