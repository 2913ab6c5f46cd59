#!/usr/bin/env bash
# scripts/bench mq: multiqueue throughput: the same guest (TCG, -smp 2) on virtio-netd with 1 queue pair, then
# with 2 (--queues 2, IFF_MULTI_QUEUE tap, QEMU vhost-user queues=2 + mq=on, `ethtool -L eth0 combined 2` in the
# guest), in one run.
# Each way runs four TCP streams as two iperf3 processes of two streams, pinned to vCPU 0 and vCPU 1 (-A), so that
# with 2 pairs the guest's driver sends on both TX queues (XPS) and the tap steers the flows back to both.
# Usage: scripts/bench mq [--json] [--time SECONDS] [--rounds N]
#   --time    seconds per iperf3 direction (default 8)
#   --rounds  alternated rounds of (1 pair, 2 pairs); the best of each is reported (default 1)
#   --json    the last line of stdout is a JSON object: pairs_1 and pairs_2 (tcp_guest_to_host_gbps,
#             tcp_host_to_guest_gbps, per-pair packets, host CPU busy share and CPU seconds of QEMU and of
#             virtio-netd's pair threads during guest -> host), ratio_guest_to_host, ratio_host_to_guest,
#             tcp_checksum_errors, bound (what limits the ratio here)
# Progress lines go to stderr. Everything it creates (namespaces, taps, processes, temp files) is removed on exit.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/guest.sh"
VND_LOG_NAME="bench mq"

json=
secs=8
rounds=1
while [ $# -gt 0 ]; do
    case "$1" in
        --json) json=1 ;;
        --time|--rounds)
            [ $# -ge 2 ] || die "$1 wants a value (see --help)"
            if [ "$1" = --time ]; then secs=$2; else rounds=$2; fi
            shift ;;
        -h|--help) print_header "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] || die "--time wants whole seconds >= 1, got '$secs'"
[[ "$rounds" =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] || die "--rounds wants a whole number >= 1, got '$rounds'"
exec </dev/null

need_root
ensure_packages qemu-system-x86 iperf3 busybox-static iproute2 python3 cpio ethtool
host_ip=10.77.0.1
guest_ip=10.77.0.2
work=$(mktemp -d /tmp/vnd-bench-mq.XXXXXX)
ns=
device_pid=
bg_pids=()

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

teardown_run() {
    set +e
    guest_stop
    for pid in "${bg_pids[@]}"; do stop_pid "$pid"; done
    bg_pids=()
    [ -n "$device_pid" ] && stop_pid "$device_pid"
    device_pid=
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null
    ns=
    set -e
}

cleanup() {
    local rc=$?
    teardown_run
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inns() { ip netns exec "$ns" "$@"; }
host_csum() { inns cat /proc/net/snmp | awk '$1 == "Tcp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "InCsumErrors") c = i; h = 1 } else print $c }'; }

# cpu_snapshot QEMU_PID DEVICE_PID: one JSON line: host /proc/stat busy and total ticks, the CPU ticks of QEMU (all its
# threads: the vCPUs are unnamed without debug-threads) and of virtio-netd's queue-pair threads (in the process tree
# under DEVICE_PID: the launcher script runs the JVM as a child).
cpu_snapshot() {
    python3 - "$1" "$2" <<'PY'
import glob, json, os, sys
def children():
    kids = {}
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            f = open(st).read().rsplit(")", 1)[1].split()
            kids.setdefault(f[1], []).append(st.split("/")[2])
        except OSError:
            pass
    return kids
def tree(pid, kids):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out
def ticks(pids, pattern):
    t = 0
    for pid in pids:
        for d in glob.glob("/proc/%s/task/*" % pid):
            try:
                if pattern is None or pattern in open(d + "/comm").read():
                    f = open(d + "/stat").read().rsplit(")", 1)[1].split()
                    t += int(f[11]) + int(f[12])
            except OSError:
                pass
    return t
kids = children()
cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
idle = cpu[3] + cpu[4]
import time
print(json.dumps({"wall": time.time(), "busy": sum(cpu) - idle, "total": sum(cpu), "vcpu": ticks([sys.argv[1]], None),
                  "pairs": ticks(tree(sys.argv[2], kids), "virtio-net-pair")}))
PY
}

# run_one PAIRS ROUND: one guest on virtio-netd with PAIRS queue pairs; appends a JSON line to results.jsonl.
run_one() {
    local pairs=$1 round=$2
    local dir="$work/p$pairs-r$round"
    mkdir -p "$dir"
    ns="vnd-bmq-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    ip netns add "$ns"
    inns ip link set lo up
    if [ "$pairs" -gt 1 ]; then
        inns ip tuntap add dev vnd0 mode tap multi_queue
    else
        inns ip tuntap add dev vnd0 mode tap
    fi
    inns ip addr add "$host_ip/24" dev vnd0
    inns ip link set vnd0 up
    local sock="$dir/vnd.sock" ctl="$dir/vnd.ctl"
    # Not through the inns function: a backgrounded function is a subshell, and $! would not be the device.
    ip netns exec "$ns" "$VND_ROOT/scripts/virtio-netd" --socket "$sock" --backend tap:vnd0 --control "$ctl" \
        --queues "$pairs" >"$dir/device.log" 2>&1 &
    device_pid=$!
    sock_ready() { [ -S "$sock" ] && [ -S "$ctl" ] || { kill -0 "$device_pid" 2>/dev/null || return 0; return 1; }; }
    VND_WAIT_TIMEOUT=60 wait_for sock_ready || die "virtio-netd made no socket within 60 s: $(tail -n 5 "$dir/device.log")"
    [ -S "$sock" ] || die "virtio-netd exited: $(tail -n 20 "$dir/device.log")"
    local p
    for p in 5201 5202; do
        ip netns exec "$ns" iperf3 -s -1 -J -p "$p" --logfile "$dir/up-$p.json" >/dev/null 2>&1 &
        bg_pids+=($!)
    done
    servers_up() { inns ss -ltn | grep -q ':5201 ' && inns ss -ltn | grep -q ':5202 '; }
    VND_WAIT_TIMEOUT=30 wait_for servers_up || die "the host's iperf3 servers did not start"

    local client="iperf3 -c $host_ip -t $secs -P 2 -f m --connect-timeout 10000"
    local guest_cmd
    guest_cmd=$(cat <<GUEST
echo VND-CSUM-BEFORE \$(vnd-snmp Tcp InCsumErrors)
[ $pairs -gt 1 ] && { ethtool -L eth0 combined $pairs; echo VND-ETHTOOL rc=\$?; }
echo VND-CHANNELS \$(ethtool -l eth0 | awk '/Combined/{v=\$2} END{print v}')
ping -c 3 -W 5 $host_ip; echo VND-PING rc=\$?
$client -p 5201 -A 0 > /tmp/c0 2>&1 & p=\$!; $client -p 5202 -A 1 > /tmp/c1 2>&1; r1=\$?; wait \$p; echo VND-UP rc=\$?\$r1
iperf3 -s -1 -D -p 5201 -A 0; iperf3 -s -1 -D -p 5202 -A 1
i=0; while [ \$(netstat -ltn | grep -c ':520[12] ') -lt 2 ] && [ \$i -lt 100 ]; do usleep 100000; i=\$((i+1)); done
echo VND-IPERF-SERVER-READY
i=0; while pidof iperf3 >/dev/null && [ \$i -lt $(( (secs + 90) * 10 )) ]; do usleep 100000; i=\$((i+1)); done
echo VND-QSTATS \$(ethtool -S eth0 | awk '/_queue_[0-9]+_packets/{printf "%s%s ", \$1, \$2}')
echo VND-CSUM-AFTER \$(vnd-snmp Tcp InCsumErrors)
GUEST
)
    local append csum_before
    append=$(guest_append "$guest_ip/24" "$guest_cmd")
    csum_before=$(host_csum)
    guest_start --log "$dir/serial.log" --append "$append" --vhost-user "$sock" --queues "$pairs" --smp 2
    guest_wait 'VND-READY' 180 || die "the guest ($pairs pairs) did not come up"
    guest_wait 'VND-PING rc=' 60 || die "the guest's ping did not finish"
    guest_grep 'VND-PING rc=0' >/dev/null || die "the guest could not ping the host ($pairs pairs)"
    if [ "$pairs" -gt 1 ]; then
        guest_grep "VND-CHANNELS $pairs" >/dev/null || die "the guest did not get $pairs channels: $(guest_grep 'VND-ETHTOOL|VND-CHANNELS' | tr '\n' ' ')"
    fi
    cpu_snapshot "$GUEST_PID" "$device_pid" > "$dir/cpu-before.json"
    guest_wait 'VND-UP rc=' $((secs + 120)) || die "guest -> host iperf3 did not finish"
    cpu_snapshot "$GUEST_PID" "$device_pid" > "$dir/cpu-after.json"
    for pid in "${bg_pids[@]}"; do
        VND_WAIT_TIMEOUT=30 wait_for eval "! kill -0 $pid 2>/dev/null" || log_warn "an iperf3 server did not exit"
    done
    guest_wait 'VND-IPERF-SERVER-READY' 30 || die "the guest's iperf3 servers did not start"
    local c=()
    for p in 5201 5202; do
        ip netns exec "$ns" timeout $((secs + 60)) iperf3 -c "$guest_ip" -p "$p" -t "$secs" -P 2 -J \
            > "$dir/down-$p.json" 2>&1 &
        c+=($!)
    done
    for pid in "${c[@]}"; do wait "$pid" || log_warn "a host -> guest iperf3 client failed"; done
    guest_wait 'VND-DONE rc=' 120 || die "the guest command did not finish"
    local stats csum_after
    stats=$("$VND_ROOT/scripts/virtio-netd" stats --control "$ctl" --json 2>&1 | tail -n 1) || stats='{}'
    csum_after=$(host_csum)
    tr -d '\r' < "$dir/serial.log" > "$dir/serial.txt"
    VND_DIR=$dir VND_PAIRS=$pairs VND_ROUND=$round VND_STATS=$stats VND_HOST_CSUM=$((csum_after - csum_before)) \
        python3 - >> "$work/results.jsonl" <<'PY'
import json, os, re
d = os.environ["VND_DIR"]
def received(path):
    try:
        text = open(path).read()
        return json.loads(text[text.index("{"):])["end"]["sum_received"]["bits_per_second"]
    except (OSError, ValueError, KeyError):
        return None
def total(paths):
    v = [received(p) for p in paths]
    return None if any(x is None for x in v) else sum(v) / 1e9
serial = open(d + "/serial.txt").read()
def marker(name):
    m = re.search(name + r" (\d+)", serial)
    return int(m.group(1)) if m else None
b, a = json.load(open(d + "/cpu-before.json")), json.load(open(d + "/cpu-after.json"))
hz = os.sysconf("SC_CLK_TCK")
stats = json.loads(os.environ["VND_STATS"] or "{}")
pairs = [{"pair": q.get("pair"), "tx_packets": q.get("tx_packets"), "rx_packets": q.get("rx_packets")}
         for q in stats.get("queue_pairs", [])]
gb, ga = marker("VND-CSUM-BEFORE"), marker("VND-CSUM-AFTER")
qs = re.search(r"VND-QSTATS (.*)", serial)
print(json.dumps({
    "pairs": int(os.environ["VND_PAIRS"]), "round": int(os.environ["VND_ROUND"]),
    "tcp_guest_to_host_gbps": total([d + "/up-5201.json", d + "/up-5202.json"]),
    "tcp_host_to_guest_gbps": total([d + "/down-5201.json", d + "/down-5202.json"]),
    "device_pairs": pairs, "guest_queue_stats": qs.group(1).strip() if qs else None,
    "host_cpu_busy": round((a["busy"] - b["busy"]) / max(1, a["total"] - b["total"]), 3),
    "window_s": round(a["wall"] - b["wall"], 2), "qemu_cpu_s": round((a["vcpu"] - b["vcpu"]) / hz, 2), "device_pair_threads_cpu_s": round((a["pairs"] - b["pairs"]) / hz, 2),
    "tcp_checksum_errors": {"guest": None if gb is None or ga is None else ga - gb, "host": int(os.environ["VND_HOST_CSUM"])},
}))
PY
    log_info "$pairs pair(s), round $round: $(tail -n 1 "$work/results.jsonl")"
    teardown_run
}

"$VND_ROOT/scripts/build-guest" >/dev/null || die "building the guest image failed"
VND_BUILD_ONLY=1 "$VND_ROOT/scripts/virtio-netd" || die "building virtio-netd failed"
for r in $(seq "$rounds"); do
    run_one 1 "$r"
    run_one 2 "$r"
done

VND_JSON=$json VND_SECS=$secs python3 - "$work/results.jsonl" <<'PY'
import json, os, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def best(p, key):
    v = [r[key] for r in runs if r["pairs"] == p and r[key] is not None]
    return max(v) if v else None
def pick(p):
    rs = [r for r in runs if r["pairs"] == p]
    b = max(rs, key=lambda r: r["tcp_guest_to_host_gbps"] or 0)
    return {"tcp_guest_to_host_gbps": best(p, "tcp_guest_to_host_gbps"),
            "tcp_host_to_guest_gbps": best(p, "tcp_host_to_guest_gbps"),
            "device_pairs": b["device_pairs"], "guest_queue_stats": b["guest_queue_stats"],
            "host_cpu_busy": b["host_cpu_busy"], "window_s": b["window_s"], "qemu_cpu_s": b["qemu_cpu_s"],
            "device_pair_threads_cpu_s": b["device_pair_threads_cpu_s"]}
one, two = pick(1), pick(2)
def ratio(k):
    return round(two[k] / one[k], 3) if one[k] and two[k] else None
errors = sum((r["tcp_checksum_errors"]["guest"] or 0) + r["tcp_checksum_errors"]["host"] for r in runs)
def cores(r, key):
    return round(r[key] / r["window_s"], 2) if r.get("window_s") else None
bound = ("2 host cores run everything: QEMU's 2 TCG vCPUs (the guest's TCP/IP and driver, emulated), virtio-netd's "
         "pair threads, the host kernel's TCP stack and tap, and iperf3. During guest->host the cores were %s (1 pair) "
         "and %s (2 pairs) busy; QEMU alone used %s and %s cores, virtio-netd's pair threads %s and %s. With the cores "
         "saturated a second pair adds no CPU: it only lets each vCPU drive its own queue (no shared ring, no "
         "cross-vCPU wake-ups), so the ratio stays near 1 here; on a host with a core per vCPU and per pair thread "
         "it would be bounded by the vCPUs instead"
         % (one["host_cpu_busy"], two["host_cpu_busy"], cores(one, "qemu_cpu_s"), cores(two, "qemu_cpu_s"),
            cores(one, "device_pair_threads_cpu_s"), cores(two, "device_pair_threads_cpu_s")))
out = {"time_s": int(os.environ["VND_SECS"]), "rounds": max(r["round"] for r in runs), "pairs_1": one, "pairs_2": two,
       "ratio_guest_to_host": ratio("tcp_guest_to_host_gbps"), "ratio_host_to_guest": ratio("tcp_host_to_guest_gbps"),
       "tcp_checksum_errors": errors, "bound": bound, "runs": runs}
print("==== virtio-netd multiqueue: 1 pair vs 2 pairs, same guest (TCG, -smp 2), same run ====")
for name, r in (("1 pair ", one), ("2 pairs", two)):
    print("%s: guest->host %.2f Gbit/s, host->guest %.2f Gbit/s; during guest->host: host CPU busy %s, QEMU %s CPU s, "
          "virtio-netd pair threads %s CPU s; device pairs %s" % (name, r["tcp_guest_to_host_gbps"] or 0,
          r["tcp_host_to_guest_gbps"] or 0, r["host_cpu_busy"], r["qemu_cpu_s"], r["device_pair_threads_cpu_s"],
          r["device_pairs"]))
print("ratio 2/1: guest->host %s, host->guest %s; TCP checksum errors %d" % (out["ratio_guest_to_host"],
      out["ratio_host_to_guest"], errors))
print("bound: " + bound)
if os.environ.get("VND_JSON"):
    print(json.dumps(out))
PY
