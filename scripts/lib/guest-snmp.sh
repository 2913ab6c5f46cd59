#!/bin/sh
# vnd-snmp PROTO [FIELD] (installed in the test guest as /usr/bin/vnd-snmp; also usable on the host).
# PROTO is a group of /proc/net/snmp (Tcp, Udp, Icmp...) or /proc/net/netstat (TcpExt, IpExt).
# Without FIELD: prints the PROTO lines prefixed "VND-SNMP ".
# With FIELD: prints the counter's value (e.g. `vnd-snmp Tcp InCsumErrors`, `vnd-snmp TcpExt PAWSEstab`), exit 1
# if there is no such counter.
proto=$1
field=$2
[ -n "$proto" ] || { echo "usage: vnd-snmp PROTO [FIELD]" >&2; exit 2; }
if [ -z "$field" ]; then
    grep -h "^$proto:" /proc/net/snmp /proc/net/netstat | sed 's/^/VND-SNMP /'
    exit 0
fi
awk -v p="$proto:" -v f="$field" '
    $1 == p { if (!h) { for (i = 2; i <= NF; i++) if ($i == f) c = i; h = 1; next }
              if (c) { print $c; found = 1 } }
    END { if (!found) exit 1 }' /proc/net/snmp /proc/net/netstat
