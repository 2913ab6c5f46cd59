#!/usr/bin/env bash
# scripts/bench offload (scripts/bench tso is the same benchmark): guest TCP through virtio-netd with offloads on,
# done in software, and off, against QEMU's own virtio-net on the same tap, in ONE run with the same guest kernel and
# the same machine state (TCG bounds absolute numbers: only the ratios mean something). Two directions:
#   g2h  guest -> host: the guest runs `iperf3 -c 10.77.0.1`; its TSO/CSUM frames go from the guest to the tap
#   h2g  host -> guest: the guest runs `iperf3 -c 10.77.0.1 -R`, the host's server sends; frames go from the tap
#        into the guest (GUEST_TSO/GUEST_CSUM: the tap hands the device large, partly checksummed frames)
#   modes:  offload   virtio-netd default: the guest's TSO/CSUM frames go to the tap untouched (IFF_VNET_HDR)
#           software  --software-offload: the device offers the offloads and segments/checksums in software
#           none      --no-offload: no offload offered, the guest segments and checksums itself
#           builtin   the anchor: QEMU's own virtio-net on the same tap (vhost=off), same guest kernel
#           builtin_none  the anchor with every offload off (csum=off, host_tso4=off ...): how much offloads give
#                     the same guest on QEMU's own device, i.e. what the guest (TCG here) bounds offload/none to
# For each mode: a namespace with tap vnd0 (10.77.0.1/24) and an iperf3 server, virtio-netd on the tap, one guest
# (10.77.0.2) that runs RUNS rounds of S-second iperf3 runs, one per direction in each round (the directions
# alternate, so both see the same moments); the median of a direction's runs is the mode's figure for it.
# Prints Gbit/s per mode and direction, per direction the ratios offload/none, software/none, offload/builtin and
# builtin/builtin_none, and the guest's and the namespace's TCP InCsumErrors added during each mode (must be 0).
# Usage: scripts/bench offload [--direction g2h|h2g|both] [--time S] [--runs N] [--json]
#   --direction  g2h, h2g or both (default both)
#   --time S     seconds per iperf3 run (default 5)
#   --runs N     iperf3 runs per mode and direction, median reported (default 3)
#   --json       the last line of stdout is one JSON object: time_s, runs, directions, load_before (the 1-minute
#                load average when the run started: other guests skew the figures), other_qemus,
#                modes{offload,software,none,builtin,builtin_none}{g2h,h2g{gbps, runs_gbps}, negotiated_offloads,
#                tcp_csum_errors{guest,host_netns}},
#                ratios{g2h,h2g{offload_vs_none, software_vs_none, offload_vs_builtin, builtin_vs_builtin_none}}
#   VND_DEVICE_ARGS="..."  extra virtio-netd options for every virtio-netd mode (e.g. --busy-poll-us 0)
# Progress lines go to stderr. Everything it creates (namespaces, taps, processes, temp files) is removed on exit.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/guest.sh"
VND_LOG_NAME="bench offload"

json=
secs=5
runs=3
direction=both
while [ $# -gt 0 ]; do
    case "$1" in
        --json) json=1 ;;
        --time|--runs|--direction)
            [ $# -ge 2 ] || die "$1 wants a value (see --help)"
            case "$1" in
                --time) secs=$2 ;;
                --runs) runs=$2 ;;
                --direction) direction=$2 ;;
            esac
            shift ;;
        -h|--help) print_header "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] || die "--time wants whole seconds >= 1, got '$secs'"
[[ "$runs" =~ ^[0-9]+$ ]] && [ "$runs" -ge 1 ] && [ "$runs" -le 20 ] || die "--runs wants 1..20, got '$runs'"
case "$direction" in
    g2h|h2g) directions=$direction ;;
    both) directions="g2h h2g" ;;
    *) die "--direction wants g2h, h2g or both, got '$direction'" ;;
esac
exec </dev/null

need_root
ensure_packages qemu-system-x86 iperf3 busybox-static iproute2 python3 cpio
host_ip=10.77.0.1
guest_ip=10.77.0.2
work=$(mktemp -d /tmp/vnd-bench.XXXXXX)
ns=
device_pid=
server_pid=

stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

teardown_mode() {
    guest_stop
    stop_pid "$server_pid"; server_pid=
    stop_pid "$device_pid"; device_pid=
    [ -z "$ns" ] || ip netns del "$ns" 2>/dev/null || true
    ns=
}

cleanup() {
    local rc=$?
    set +e
    teardown_mode
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inns() { ip netns exec "$ns" "$@"; }
host_csum() { inns cat /proc/net/snmp | awk '$1 == "Tcp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "InCsumErrors") c = i; h = 1 } else print $c }'; }

load_before=$(cut -d' ' -f1 /proc/loadavg)
others=$(pgrep -c -f qemu-system-x86_64 || true)
[ "${others:-0}" -eq 0 ] || log_warn "$others other QEMU process(es) running: the figures below share the CPUs with them"
log_info "load average before the run: $load_before"

"$VND_ROOT/scripts/build-guest" >/dev/null || die "building the guest image failed"
VND_BUILD_ONLY=1 "$VND_ROOT/scripts/virtio-netd" || die "building virtio-netd failed"

# The guest's part: RUNS rounds, in each one iperf3 run per direction (h2g: -R, the host's server sends), each
# result on a marker line; TCP InCsumErrors around them.
guest_cmd=$(cat <<GUEST
echo VND-CSUM-BEFORE \$(vnd-snmp Tcp InCsumErrors)
cat /sys/class/net/eth0/device/features | sed 's/^/VND-NEGOTIATED /'
i=0; while ! ping -c 1 -W 1 $host_ip >/dev/null 2>&1 && [ \$i -lt 30 ]; do i=\$((i+1)); done
r=1
while [ \$r -le $runs ]; do
  for d in $directions; do
    rev=; [ \$d = h2g ] && rev=-R
    iperf3 -c $host_ip -t $secs -f g \$rev > /tmp/out 2>&1; rc=\$?
    echo VND-RUN \$d \$r rc=\$rc \$(grep receiver /tmp/out | tail -n 1)
    [ \$rc -eq 0 ] || sed 's/^/VND-IPERF /' /tmp/out
  done
  r=\$((r+1))
done
echo VND-CSUM-AFTER \$(vnd-snmp Tcp InCsumErrors)
GUEST
)
append="$(guest_append "$guest_ip/24" "$guest_cmd")"

# run_mode NAME [device options...]: one namespace, device and guest; writes $work/NAME.{serial,csum}.
run_mode() {
    local mode=$1; shift
    ns="vnd-bench-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    local sock="$work/$mode.sock"
    if [ "${mode#builtin}" = "$mode" ]; then
        log_info "mode $mode: namespace $ns, virtio-netd${*:+ $*}, directions $directions"
    else
        log_info "mode $mode: namespace $ns, QEMU's own virtio-net, directions $directions"
    fi
    ip netns add "$ns"
    inns ip link set lo up
    inns ip tuntap add dev vnd0 mode tap
    inns ip addr add "$host_ip/24" dev vnd0
    inns ip link set vnd0 up
    if [ "${mode#builtin}" = "$mode" ]; then
        # shellcheck disable=SC2086
        ip netns exec "$ns" "$VND_ROOT/scripts/virtio-netd" --socket "$sock" --backend tap:vnd0 "$@" ${VND_DEVICE_ARGS:-} \
            >"$work/$mode.device.log" 2>&1 &
        device_pid=$!
        sock_ready() { [ -S "$sock" ] || { kill -0 "$device_pid" 2>/dev/null || return 0; return 1; }; }
        VND_WAIT_TIMEOUT=60 wait_for sock_ready || die "virtio-netd ($mode) made no socket $sock within 60 s"
        [ -S "$sock" ] || { tail -n 20 "$work/$mode.device.log" >&2; die "virtio-netd ($mode) exited before making its socket"; }
    fi
    # A server that stays for all runs of this mode; -1 would end it after the first.
    inns iperf3 -s >"$work/$mode.server.log" 2>&1 &
    server_pid=$!
    local before
    before=$(host_csum)
    if [ "$mode" = builtin ]; then
        guest_start --log "$work/$mode.serial" --append "$append" --tap vnd0 --netns "$ns" --mem 512
    elif [ "$mode" = builtin_none ]; then
        # QEMU 7.2 keeps offering TSO without CSUM (Linux then ignores it): switch every offload off by name.
        guest_start --log "$work/$mode.serial" --append "$append" --tap vnd0 --netns "$ns" --mem 512 \
            --device-props csum=off,guest_csum=off,host_tso4=off,host_tso6=off,host_ufo=off,guest_tso4=off,guest_tso6=off,guest_ufo=off
    else
        guest_start --log "$work/$mode.serial" --append "$append" --vhost-user "$sock" --mem 512
    fi
    guest_wait 'VND-READY' 180 || die "the guest ($mode) did not come up"
    local ndirs
    ndirs=$(wc -w <<<"$directions")
    guest_wait 'VND-DONE rc=' $(( runs * ndirs * (secs + 60) + 60 )) || die "the guest ($mode) did not finish its runs"
    local line
    while read -r line; do log_info "mode $mode: $line"; done < <(guest_grep '^VND-RUN ')
    echo "$before $(host_csum)" > "$work/$mode.csum"
    teardown_mode
}

run_mode offload
run_mode software --software-offload
run_mode none --no-offload
run_mode builtin
run_mode builtin_none

export VND_WORK=$work VND_JSON=$json VND_SECS=$secs VND_RUNS=$runs VND_LOAD=$load_before VND_OTHERS=${others:-0} \
    VND_DIRECTIONS=$directions
python3 - <<'PY'
import json, os, re, statistics

work = os.environ["VND_WORK"]
directions = os.environ["VND_DIRECTIONS"].split()
# virtio 1.2 5.1.3: the offload bits worth showing.
OFFLOADS = {0: "CSUM", 1: "GUEST_CSUM", 7: "GUEST_TSO4", 8: "GUEST_TSO6", 10: "GUEST_UFO", 11: "HOST_TSO4",
            12: "HOST_TSO6", 14: "HOST_UFO", 54: "GUEST_USO4", 55: "GUEST_USO6", 56: "HOST_USO"}
UNIT = {"G": 1.0, "M": 1e-3, "K": 1e-6, "": 1e-9}
MODES = (("offload", "offloads to the tap (default)"), ("software", "--software-offload"),
         ("none", "--no-offload"), ("builtin", "QEMU's own virtio-net (anchor)"),
         ("builtin_none", "QEMU's own, offloads off"))
LABELS = {"g2h": "guest -> host", "h2g": "host -> guest"}
modes = {}
for mode, _ in MODES:
    serial = open(os.path.join(work, mode + ".serial"), errors="replace").read().replace("\r", "")
    feats = re.search(r"VND-NEGOTIATED ([01]+)", serial)
    bits = feats.group(1) if feats else ""
    before = re.search(r"VND-CSUM-BEFORE (\d+)", serial)
    after = re.search(r"VND-CSUM-AFTER (\d+)", serial)
    host = open(os.path.join(work, mode + ".csum")).read().split()
    modes[mode] = {
        "negotiated_offloads": [n for b, n in sorted(OFFLOADS.items()) if b < len(bits) and bits[b] == "1"],
        "tcp_csum_errors": {"guest": int(after.group(1)) - int(before.group(1)) if before and after else None,
                            "host_netns": int(host[1]) - int(host[0]) if len(host) == 2 else None},
    }
    for d in directions:
        runs = []
        for m in re.finditer(r"VND-RUN %s (\d+) rc=(\d+)(.*)" % d, serial):
            v = re.search(r"([\d.]+) ([GMK]?)bits/sec", m.group(3))
            runs.append(round(float(v.group(1)) * UNIT[v.group(2)], 3) if m.group(2) == "0" and v else None)
        ok = [r for r in runs if r is not None]
        modes[mode][d] = {"gbps": round(statistics.median(ok), 3) if ok else None, "runs_gbps": runs}

def ratio(d, a, b):
    x, y = modes[a][d]["gbps"], modes[b][d]["gbps"]
    return round(x / y, 2) if x and y else None

ratios = {d: {"offload_vs_none": ratio(d, "offload", "none"), "software_vs_none": ratio(d, "software", "none"),
              "offload_vs_builtin": ratio(d, "offload", "builtin"),
              "builtin_vs_builtin_none": ratio(d, "builtin", "builtin_none")} for d in directions}
result = {
    "time_s": int(os.environ["VND_SECS"]), "runs": int(os.environ["VND_RUNS"]), "directions": directions,
    "load_before": float(os.environ["VND_LOAD"]), "other_qemus": int(os.environ["VND_OTHERS"]),
    "modes": modes, "ratios": ratios,
}
print("==== virtio-netd offload benchmark: guest TCP, %d x %d s per mode and direction, median ====" % (
    result["runs"], result["time_s"]))
for d in directions:
    print("-- %s (%s)" % (LABELS[d], d))
    for mode, label in MODES:
        m = modes[mode]
        print("%-32s %s Gbit/s   runs %s" % (
            label, "FAILED" if m[d]["gbps"] is None else "%.3f" % m[d]["gbps"], m[d]["runs_gbps"]))
    r = ratios[d]
    print("%s ratio offload/none: %s   software/none: %s   offload/builtin: %s   QEMU's own offload/none: %s" % (
        d, r["offload_vs_none"], r["software_vs_none"], r["offload_vs_builtin"], r["builtin_vs_builtin_none"]))
for mode, label in MODES:
    m = modes[mode]
    print("%-32s offloads %s   TCP InCsumErrors added: guest %s, host %s" % (
        label, ",".join(m["negotiated_offloads"]) or "-", m["tcp_csum_errors"]["guest"],
        m["tcp_csum_errors"]["host_netns"]))
print("(load average before: %s, other QEMUs: %s)" % (result["load_before"], result["other_qemus"]))
if os.environ.get("VND_JSON"):
    print(json.dumps(result, separators=(",", ":")))
PY
