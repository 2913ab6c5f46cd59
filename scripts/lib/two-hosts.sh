# shellcheck shell=bash
# scripts/demo --two-hosts: two hosts (network namespaces) joined by a veth underlay (u1 10.90.0.1 -- u2 10.90.0.2,
# MTU 1500); in each a Linux bridge with a VXLAN device (vx0: VNI 42, UDP 4789, outer UDP checksum on) and
# virtio-netd on a tap in the bridge, with --mtu 1450 and QEMU's host_mtu=1450 (the guest's MTU comes from the NIC, VIRTIO_NET_F_MTU:
# 1500 minus the 50 bytes of VXLAN). Guest A (10.90.1.10) on host 1 and guest B (10.90.1.20) on host 2 exchange
# TCP both ways through the tunnel with offloads on. Shown: the features virtio-netd negotiated, each guest's MTU,
# iperf3 each way, the devices' stats, vx0's packets against the underlay's (the guests' GSO frames cross the tunnel
# whole and are cut on the underlay), and the underlay itself: largest frame, IP fragments, and tshark's verdict on
# every IPv4, outer UDP and inner TCP checksum of a sample of each transfer. The same setup is
# vmm-glue/src/test/java/org/virtionetd/glue/it/TwoHostsVxlanIT.java (which explains the underlay's offloads).
# Sourced by scripts/demo after common.sh and guest.sh; uses $json, $secs, $VND_ROOT.

TH_A_IP=10.90.1.10
TH_B_IP=10.90.1.20

two_hosts_main() {
    local r h
    r=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
    TH_NS=("vnd-h1-$r" "vnd-h2-$r")
    TH_WORK=$(mktemp -d /tmp/vnd-demo-hosts.XXXXXX)
    TH_PIDS=()
    TH_GUESTS=()
    trap two_hosts_cleanup EXIT
    trap 'exit 130' INT TERM

    ensure_packages tshark tcpdump
    "$VND_ROOT/scripts/build-guest" >/dev/null || die "building the guest image failed"
    VND_BUILD_ONLY=1 "$VND_ROOT/scripts/virtio-netd" || die "building virtio-netd failed"
    log_info "host 1 ${TH_NS[0]}, host 2 ${TH_NS[1]}, work dir $TH_WORK"
    two_hosts_topology

    local macs=(52:54:00:90:00:0a 52:54:00:90:00:0b)
    for h in 1 2; do
        th_in "$h" "$VND_ROOT/scripts/virtio-netd" --socket "$TH_WORK/h$h.sock" --backend tap:tapv \
            --control "$TH_WORK/h$h.ctl" --mtu 1450 --mac "${macs[h-1]}" >"$TH_WORK/device$h.log" 2>&1 &
        TH_PIDS+=($!)
    done
    for h in 1 2; do
        sock_ready() { [ -S "$TH_WORK/h$1.sock" ] && [ -S "$TH_WORK/h$1.ctl" ]; }
        VND_WAIT_TIMEOUT=60 wait_for sock_ready "$h" || { tail -n 20 "$TH_WORK/device$h.log" >&2; die "virtio-netd on host $h made no sockets within 60 s"; }
    done
    log_info "virtio-netd serves tapv in each host (--mtu 1450)"

    two_hosts_capture_start
    th_snapshot before

    guest_start --log "$TH_WORK/b.serial" --append "$(guest_append "$TH_B_IP/24" "$(two_hosts_cmd_b)")" \
        --vhost-user "$TH_WORK/h2.sock" --mac "${macs[1]}" --mem 384 --device-props host_mtu=1450
    TH_GUESTS+=("$GUEST_PID")
    local pid_b=$GUEST_PID
    guest_start --log "$TH_WORK/a.serial" --append "$(guest_append "$TH_A_IP/24" "$(two_hosts_cmd_a)")" \
        --vhost-user "$TH_WORK/h1.sock" --mac "${macs[0]}" --mem 384 --device-props host_mtu=1450
    TH_GUESTS+=("$GUEST_PID")
    local pid_a=$GUEST_PID
    GUEST_PID=$pid_a GUEST_LOG=$TH_WORK/a.serial guest_wait 'VND-DONE rc=' $((secs * 2 + 300)) \
        || die "guest A's script did not finish"
    GUEST_PID=$pid_b GUEST_LOG=$TH_WORK/b.serial guest_wait 'VND-DONE rc=' 120 || die "guest B's script did not finish"

    for h in 1 2; do
        "$VND_ROOT/scripts/virtio-netd" features --control "$TH_WORK/h$h.ctl" > "$TH_WORK/features$h.txt" 2>&1 || true
        "$VND_ROOT/scripts/virtio-netd" stats --control "$TH_WORK/h$h.ctl" > "$TH_WORK/stats$h.txt" 2>&1 || true
    done
    th_snapshot after
    two_hosts_capture_stop
    two_hosts_report
}

# th_in HOST CMD...: runs CMD in host 1 or 2.
th_in() { local h=$1; shift; ip netns exec "${TH_NS[h-1]}" "$@"; }

two_hosts_cleanup() {
    local rc=$? p ns
    set +e
    for p in "${TH_GUESTS[@]}"; do GUEST_PID=$p; guest_stop; done
    for p in "${TH_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${TH_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    for ns in "${TH_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TH_WORK"
    exit "$rc"
}

# The underlay ends checksum and segment in software and do not merge what they receive: a veth hands its peer
# GSO frames whole, so with offloads on the "wire" (and a capture) would carry 64 KiB frames with unfinished
# checksums; with them off the kernel's UDP-tunnel GSO cuts the VXLAN frames into wire-size packets as a NIC
# without tunnel offloads would make it do.
two_hosts_topology() {
    local h o
    for h in 1 2; do
        ip netns add "${TH_NS[h-1]}"
        th_in "$h" ip link set lo up
        th_in "$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip link add u1 netns "${TH_NS[0]}" type veth peer name u2 netns "${TH_NS[1]}"
    for h in 1 2; do
        o=$((3 - h))
        th_in "$h" ip addr add "10.90.0.$h/24" dev "u$h"
        th_in "$h" ip link set "u$h" mtu 1500 up
        th_in "$h" ethtool -K "u$h" tx off gro off >/dev/null
        th_in "$h" ip link add vx0 type vxlan id 42 local "10.90.0.$h" remote "10.90.0.$o" dstport 4789 dev "u$h" udpcsum
        th_in "$h" ip tuntap add dev tapv mode tap
        th_in "$h" ip link set tapv mtu 1450
        th_in "$h" ip link add br0 type bridge
        th_in "$h" ip link set vx0 master br0
        th_in "$h" ip link set tapv master br0
        for l in vx0 tapv br0; do th_in "$h" ip link set "$l" up; done
    done
    th_in 1 busybox ping -c 2 -W 2 10.90.0.2 >/dev/null || die "host 1 cannot ping host 2 over the underlay"
    log_info "underlay u1 10.90.0.1 -- u2 10.90.0.2 (MTU 1500); in each host br0 = vx0 (VXLAN 42) + tapv (MTU 1450)"
}

# Guest B: two one-shot iperf3 servers (5201: A -> B, 5202: B -> A), bounded; its MTU and TCP counters.
two_hosts_cmd_b() {
    cat <<GUEST
s(){ echo VND-CSUM \$1 \$(vnd-snmp Tcp InCsumErrors) \$(vnd-snmp Tcp InSegs); }
s before
echo VND-MTU \$(cat /sys/class/net/eth0/mtu)
timeout 240 iperf3 -s -1 -p 5201 >/dev/null 2>&1 & x=\$!
timeout 240 iperf3 -s -1 -p 5202 >/dev/null 2>&1 & y=\$!
wait \$x; wait \$y
s after
GUEST
}

# Guest A: waits (bounded) for B, then iperf3 A -> B and B -> A (-R), each retried while B's server is not up yet.
two_hosts_cmd_a() {
    cat <<GUEST
s(){ echo VND-CSUM \$1 \$(vnd-snmp Tcp InCsumErrors) \$(vnd-snmp Tcp InSegs); }
s before
echo VND-MTU \$(cat /sys/class/net/eth0/mtu)
i=0; while ! ping -c 1 -W 1 $TH_B_IP >/dev/null 2>&1 && [ \$i -lt 90 ]; do i=\$((i+1)); done
t(){ n=\$1; shift; k=0
  while :; do iperf3 -t $secs -f g "\$@" >/tmp/o 2>&1; rc=\$?
    [ \$rc -eq 0 ] || ! grep -q refused /tmp/o || [ \$k -ge 15 ] && break; k=\$((k+1)); sleep 1; done
  echo VND-T \$n rc=\$rc \$(grep receiver /tmp/o | tail -n 1)
  [ \$rc -eq 0 ] || sed 's/^/VND-IPERF /' /tmp/o; }
t AB -c $TH_B_IP -p 5201
t BA -c $TH_B_IP -p 5202 -R
s after
GUEST
}

# VXLAN over IPv4 whose inner frame is IPv4 + TCP with port $1 at either end (inner IPv4 header at udp[30]).
th_filter() {
    echo "udp dst port 4789 and udp[28:2] = 0x0800 and udp[39] = 6 and (udp[50:2] = $1 or udp[52:2] = $1)"
}

# On u2 (host 2): a full sample of each transfer for tshark, and a watcher of frames that should not exist
# (longer than 1514 bytes, or IPv4 fragments) for the whole run.
two_hosts_capture_start() {
    local port f
    for port in 5201 5202; do
        th_in 2 tcpdump -i u2 -nn -U -s 0 -B 32768 -c 5000 -w "$TH_WORK/tcp$port.pcap" "$(th_filter $port)" \
            >"$TH_WORK/tcpdump$port.log" 2>&1 &
        TH_PIDS+=($!)
    done
    th_in 2 tcpdump -i u2 -nn -U -s 128 -w "$TH_WORK/bad.pcap" 'greater 1515 or (ip[6:2] & 0x3fff != 0)' \
        >"$TH_WORK/tcpdump-bad.log" 2>&1 &
    TH_PIDS+=($!)
    for f in tcpdump5201 tcpdump5202 tcpdump-bad; do
        VND_WAIT_TIMEOUT=30 wait_for grep -q 'listening on' "$TH_WORK/$f.log" || die "tcpdump ($f) did not start"
    done
}

two_hosts_capture_stop() {
    local p i
    # The samples end by themselves after 5000 frames; the watcher (and a short sample) is stopped here, and
    # each wrote every packet at once (-U).
    for p in "${TH_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null && [ "$(ps -o comm= -p "$p")" = tcpdump ]; then
            kill -TERM "$p" 2>/dev/null || true
            for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        fi
    done
}

# th_snapshot before|after: the underlay's and vx0's counters and the hosts' fragment and UDP checksum counters.
th_snapshot() {
    local h l c
    for h in 1 2; do
        for l in "u$h" vx0; do
            for c in tx_packets rx_packets tx_errors rx_errors; do
                echo "h$h.$l.$c $(th_in "$h" cat "/sys/class/net/$l/statistics/$c")"
            done
        done
        th_in "$h" cat /proc/net/snmp | awk -v h="h$h" '
            $1 == "Ip:" || $1 == "Udp:" { if (!seen[$1]++) { for (i = 2; i <= NF; i++) name[$1, i] = $i; next }
                                          for (i = 2; i <= NF; i++) print h "." $1 name[$1, i], $i }'
    done > "$TH_WORK/counters-$1.txt"
}

two_hosts_report() {
    local port
    for port in 5201 5202; do
        tshark -n -r "$TH_WORK/tcp$port.pcap" -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE \
            -o tcp.check_checksum:TRUE -T fields -e frame.len -e ip.checksum.status -e udp.checksum.status \
            -e tcp.checksum.status -e ip.flags.mf -e ip.frag_offset 2>/dev/null > "$TH_WORK/tcp$port.txt" || true
    done
    tshark -n -r "$TH_WORK/bad.pcap" -T fields -e frame.len 2>/dev/null > "$TH_WORK/bad.txt" || true
    tr -d '\r' < "$TH_WORK/a.serial" > "$TH_WORK/a.txt"
    tr -d '\r' < "$TH_WORK/b.serial" > "$TH_WORK/b.txt"

    echo "==== virtio-netd demo: two hosts, one L2 network over VXLAN ===="
    echo "host 1 ${TH_NS[0]}: guest A $TH_A_IP -- virtio-netd -- tapv -- br0 -- vx0 ~ u1 10.90.0.1"
    echo "host 2 ${TH_NS[1]}: guest B $TH_B_IP -- virtio-netd -- tapv -- br0 -- vx0 ~ u2 10.90.0.2"
    echo "--- virtio-netd features --control (host 1)"
    cat "$TH_WORK/features1.txt"
    local h
    for h in 1 2; do
        echo "--- virtio-netd stats --control (host $h)"
        cat "$TH_WORK/stats$h.txt"
    done
    export VND_WORK=$TH_WORK VND_JSON=$json VND_SECS=$secs
    python3 - <<'PY'
import json, os, re

work = os.environ["VND_WORK"]
def read(name):
    try:
        return open(os.path.join(work, name), errors="replace").read()
    except OSError:
        return ""

def counters(which):
    out = {}
    for line in read("counters-%s.txt" % which).splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out
before, after = counters("before"), counters("after")
added = {k: after[k] - before.get(k, 0) for k in after}

def guest(name):
    text = read(name + ".txt")
    mtu = re.search(r"VND-MTU (\d+)", text)
    c = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(r"VND-CSUM (before|after) (\d+) (\d+)", text)}
    csum = c["after"][0] - c["before"][0] if len(c) == 2 else None
    return {"mtu": int(mtu.group(1)) if mtu else None, "tcp_checksum_errors": csum}, text
a, a_text = guest("a")
b, _ = guest("b")

rates = {}
for m in re.finditer(r"VND-T (AB|BA) rc=(\d+)(.*)", a_text):
    r = re.search(r"([\d.]+) ([GMK]?)bits/sec", m.group(3))
    rates[m.group(1)] = round(float(r.group(1)) * {"G": 1, "M": 1e-3, "K": 1e-6, "": 1e-9}[r.group(2)], 3) \
        if m.group(2) == "0" and r else None

frames, largest, bad, unjudged, frags = 0, 0, 0, 0, 0
for port in ("5201", "5202"):
    for line in read("tcp%s.txt" % port).splitlines():
        f = line.split("\t")
        if not f[0].isdigit():
            continue
        frames += 1
        largest = max(largest, int(f[0]))
        for col in f[1:4]:
            for s in (col.split(",") if col else ["missing"]):
                bad += s == "0"
                unjudged += s not in ("0", "1")
        if any(v in ("1", "True") for v in f[4].split(",")) or any(v not in ("0", "") for v in f[5].split(",")):
            frags += 1
oversize_or_fragments = sum(1 for l in read("bad.txt").splitlines() if l.strip().isdigit())

print("guest MTU (from the device): A %s, B %s" % (a["mtu"], b["mtu"]))
fmt = lambda v: "FAILED" if v is None else "%.3f Gbit/s" % v
print("TCP A -> B (%ss): %s" % (os.environ["VND_SECS"], fmt(rates.get("AB"))))
print("TCP B -> A (%ss): %s" % (os.environ["VND_SECS"], fmt(rates.get("BA"))))
print("TCP InCsumErrors added: guest A %s, guest B %s" % (a["tcp_checksum_errors"], b["tcp_checksum_errors"]))
for h in (1, 2):
    u, v = added.get("h%d.u%d.tx_packets" % (h, h)), added.get("h%d.vx0.tx_packets" % h)
    print("host %d: vx0 sent %s packets, the underlay u%d %s (GSO frames cross the tunnel whole, the underlay "
          "cuts them); link errors added %s" % (h, v, h, u, sum(x for k, x in added.items()
                                                       if k.startswith("h%d." % h) and k.endswith("_errors"))))
    print("host %d: IP FragCreates %s, ReasmReqds %s, UDP InDatagrams %s, UDP InCsumErrors %s" % (h,
          added.get("h%d.Ip:FragCreates" % h), added.get("h%d.Ip:ReasmReqds" % h),
          added.get("h%d.Udp:InDatagrams" % h), added.get("h%d.Udp:InCsumErrors" % h)))
print("underlay sample (tshark, %d VXLAN frames of both transfers): largest frame %d bytes, IP fragments %d, "
      "bad checksums %d (IPv4, outer UDP, inner TCP), not judged %d" % (frames, largest, frags, bad, unjudged))
print("underlay, whole run: frames over 1514 bytes or IP fragments: %d" % oversize_or_fragments)
if os.environ.get("VND_JSON"):
    print(json.dumps({
        "tcp_a_to_b_gbps": rates.get("AB"), "tcp_b_to_a_gbps": rates.get("BA"),
        "guest_mtu": [a["mtu"], b["mtu"]],
        "tcp_checksum_errors": [a["tcp_checksum_errors"], b["tcp_checksum_errors"]],
        "underlay_sampled_frames": frames, "underlay_largest_frame": largest,
        "underlay_ip_fragments": frags,
        "kernel_ip_fragments": sum(added.get("h%d.Ip:%s" % (h, f), 0) for h in (1, 2)
                                   for f in ("FragCreates", "ReasmReqds")),
        "underlay_bad_checksums": bad, "underlay_oversize_or_fragments": oversize_or_fragments,
        "udp_checksum_errors": sum(added.get("h%d.Udp:InCsumErrors" % h, 0) for h in (1, 2)),
    }, separators=(",", ":")))
PY
}
