# shellcheck shell=bash
# scripts/demo --two-guests: two guests on one in-process switch of one virtio-netd (switch:sw0), then, in the
# same run, the same two guests as two virtio-netd devices on two taps in a Linux bridge (the anchor).
# Each run: ping both ways, iperf3 guest A -> guest B, TCP InCsumErrors in both guests.
# Sourced by scripts/demo after common.sh and guest.sh; uses $json, $secs, $VND_ROOT.

two_guests_main() {
    local ip_a=10.77.0.2 ip_b=10.77.0.3
    TG_NS="vnd-demo2-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    TG_WORK=$(mktemp -d /tmp/vnd-demo2.XXXXXX)
    TG_DAEMON=
    TG_PID_A=
    TG_PID_B=
    trap two_guests_cleanup EXIT
    trap 'exit 130' INT TERM

    "$VND_ROOT/scripts/build-guest" >/dev/null || die "building the guest image failed"
    VND_BUILD_ONLY=1 "$VND_ROOT/scripts/virtio-netd" || die "building virtio-netd failed"
    ip netns add "$TG_NS"
    ip netns exec "$TG_NS" ip link set lo up
    log_info "namespace $TG_NS, work dir $TG_WORK"

    # Alternated rounds: other load on the machine only ever lowers a throughput, so the best of each is compared.
    local r
    for r in $(seq "${VND_ROUNDS:-2}"); do
        two_guests_run switch $ip_a $ip_b "$r"
        two_guests_run bridge $ip_a $ip_b "$r"
    done

    export VND_JSON=$json VND_WORK=$TG_WORK VND_SECS=$secs
    python3 "$VND_ROOT/scripts/lib/two-guests-report.py"
}

two_guests_cleanup() {
    local rc=$?
    set +e
    two_guests_stop
    ip netns del "$TG_NS" 2>/dev/null
    rm -rf "$TG_WORK"
    exit "$rc"
}

# two_guests_stop: both guests and the daemon of the current run.
two_guests_stop() {
    local p
    for p in $TG_PID_A $TG_PID_B; do GUEST_PID=$p; guest_stop; done
    TG_PID_A=
    TG_PID_B=
    if [ -n "$TG_DAEMON" ]; then
        kill -TERM "$TG_DAEMON" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$TG_DAEMON" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$TG_DAEMON" 2>/dev/null || true
        wait "$TG_DAEMON" 2>/dev/null || true
        TG_DAEMON=
    fi
}

# two_guests_wait A|B REGEX TIMEOUT
two_guests_wait() {
    local who=$1
    if [ "$who" = A ]; then GUEST_PID=$TG_PID_A; GUEST_LOG=$TG_DIR/a.serial; else GUEST_PID=$TG_PID_B; GUEST_LOG=$TG_DIR/b.serial; fi
    guest_wait "$2" "$3"
}

# two_guests_run switch|bridge IP_A IP_B ROUND: one measurement; results in $TG_WORK/MODE-ROUND/.
two_guests_run() {
    local mode=$1 ip_a=$2 ip_b=$3 round=$4
    TG_DIR="$TG_WORK/$mode-$round"
    mkdir -p "$TG_DIR"
    local sa="$TG_DIR/a.sock" sb="$TG_DIR/b.sock" ca="$TG_DIR/a.ctl" cb="$TG_DIR/b.ctl" ba bb
    ip netns exec "$TG_NS" ip link del br0 2>/dev/null || true
    ip netns exec "$TG_NS" ip link del vnda 2>/dev/null || true
    ip netns exec "$TG_NS" ip link del vndb 2>/dev/null || true
    if [ "$mode" = switch ]; then
        ba="switch:sw0,port=a"
        bb="switch:sw0,port=b"
    else
        local t
        for t in vnda vndb; do
            ip netns exec "$TG_NS" ip tuntap add dev $t mode tap
        done
        ip netns exec "$TG_NS" ip link add br0 type bridge
        for t in vnda vndb; do
            ip netns exec "$TG_NS" ip link set $t master br0
            ip netns exec "$TG_NS" ip link set $t up
        done
        ip netns exec "$TG_NS" ip link set br0 up
        ba="tap:vnda"
        bb="tap:vndb"
    fi
    ip netns exec "$TG_NS" "$VND_ROOT/scripts/virtio-netd" \
        --device "socket=$sa,backend=$ba,control=$ca" --device "socket=$sb,backend=$bb,control=$cb" \
        >"$TG_DIR/device.log" 2>&1 &
    TG_DAEMON=$!
    socks_ready() { [ -S "$sa" ] && [ -S "$sb" ] || { kill -0 "$TG_DAEMON" 2>/dev/null || return 0; return 1; }; }
    VND_WAIT_TIMEOUT=60 wait_for socks_ready || die "virtio-netd made no sockets within 60 s ($mode)"
    [ -S "$sa" ] && [ -S "$sb" ] || { tail -n 20 "$TG_DIR/device.log" >&2; die "virtio-netd exited ($mode)"; }
    log_info "$mode: virtio-netd (pid $TG_DAEMON) serves $sa ($ba) and $sb ($bb)"

    local csum_b='echo VND-CSUM-BEFORE $(vnd-snmp Tcp InCsumErrors)'
    local csum_a='echo VND-CSUM-AFTER $(vnd-snmp Tcp InCsumErrors)'
    local cmd_b cmd_a
    cmd_b=$(cat <<GUEST
$csum_b
iperf3 -s -1 -D
i=0; until ping -c 1 -W 2 $ip_a >/dev/null; do i=\$((i+1)); [ \$i -ge 60 ] && break; done
ping -c 3 -W 5 $ip_a; echo VND-PING rc=\$?
i=0; while ! netstat -tn | grep -q ':5201 .*ESTABLISHED' && [ \$i -lt 1800 ]; do usleep 100000; i=\$((i+1)); done
i=0; while pidof iperf3 >/dev/null && [ \$i -lt $(( (secs + 60) * 10 )) ]; do usleep 100000; i=\$((i+1)); done
$csum_a
GUEST
)
    cmd_a=$(cat <<GUEST
$csum_b
i=0; until ping -c 1 -W 2 $ip_b >/dev/null; do i=\$((i+1)); [ \$i -ge 60 ] && break; done
ping -c 3 -W 5 $ip_b; echo VND-PING rc=\$?
i=0; until iperf3 -c $ip_b -t $secs -f g >/tmp/ip.txt 2>&1; do i=\$((i+1)); [ \$i -ge 30 ] && break; sleep 2; done
cat /tmp/ip.txt; echo VND-IPERF-DONE
$csum_a
GUEST
)
    local start
    start=$(date +%s.%N)
    guest_start --log "$TG_DIR/b.serial" --append "$(guest_append "$ip_b/24" "$cmd_b")" --vhost-user "$sb" \
        --mac 52:54:00:00:00:0b --mem 448
    TG_PID_B=$GUEST_PID
    guest_start --log "$TG_DIR/a.serial" --append "$(guest_append "$ip_a/24" "$cmd_a")" --vhost-user "$sa" \
        --mac 52:54:00:00:00:0a --mem 448
    TG_PID_A=$GUEST_PID
    two_guests_wait A 'VND-READY' 180 || die "$mode: guest A did not come up"
    python3 -c "print(round($(date +%s.%N) - $start, 2))" > "$TG_DIR/ready_s"
    two_guests_wait B 'VND-READY' 180 || die "$mode: guest B did not come up"
    "$VND_ROOT/scripts/virtio-netd" features --control "$ca" --json > "$TG_DIR/features.json" 2>&1 || true
    "$VND_ROOT/scripts/virtio-netd" features --control "$ca" > "$TG_DIR/features.txt" 2>&1 || true
    two_guests_wait A 'VND-IPERF-DONE' $((secs + 180)) || die "$mode: iperf3 A -> B did not finish"
    two_guests_wait A 'VND-DONE rc=' 60 || die "$mode: guest A's command did not finish"
    two_guests_wait B 'VND-DONE rc=' $((secs + 90)) || die "$mode: guest B's command did not finish"
    "$VND_ROOT/scripts/virtio-netd" stats --control "$cb" --json > "$TG_DIR/stats-b.json" 2>&1 || true
    tr -d '\r' < "$TG_DIR/a.serial" > "$TG_DIR/a.txt"
    tr -d '\r' < "$TG_DIR/b.serial" > "$TG_DIR/b.txt"
    two_guests_stop
    log_info "$mode round $round: $(grep -E 'Gbits/sec.*receiver' "$TG_DIR/a.txt" | tail -n 1)"
}
