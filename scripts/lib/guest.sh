# shellcheck shell=bash
# Starting, watching and stopping the test guest (QEMU, TCG) from scripts. Sourced after common.sh.
#
#   append=$(guest_append 10.77.0.2/24 'ping -c 3 10.77.0.1' [MTU] [ETHTOOL=1])
#   guest_start --log LOG --append "$append" --vhost-user SOCK [--reconnect] [--device-props 'mrg_rxbuf=off']
#               [--queues N] [--smp N] [--mem MIB]
#   guest_start --log LOG --append "$append" --tap vnd0 --netns NS
#   guest_wait 'VND-READY' 120 || die ...
#   guest_stop
#
# Why these QEMU options (see the test bed notes): /dev/kvm here is kvm_pvm, on which a Debian kernel never
# boots, hence TCG. vhost-user needs the guest RAM in a shareable memfd. vectors=0 (no MSI-X): QEMU 7.2
# segfaults in msix_set_vector_notifiers when a guest starts a vhost-user NIC under TCG with MSI-X.

GUEST_PID=
GUEST_LOG=
GUEST_MAC_DEFAULT=52:54:00:12:34:56

# guest_append IP CMD [MTU] [ETHTOOL]: the kernel command line for scripts/lib/guest-init.sh.
# The command travels base64-encoded (no spaces); the whole line must stay under 2048 bytes.
guest_append() {
    local ip=$1 cmd=${2:-} mtu=${3:-} ethtool=${4:-}
    # no_timer_check: under TCG on a busy host the kernel's IO-APIC timer check can fail and panic.
    local a="console=ttyS0 quiet panic=-1 no_timer_check vnd.ip=$ip"
    [ -n "$mtu" ] && a="$a vnd.mtu=$mtu"
    [ -n "$ethtool" ] && a="$a vnd.ethtool=$ethtool"
    [ -n "$cmd" ] && a="$a vnd.cmd=$(printf '%s\n' "$cmd" | base64 -w0)"
    [ ${#a} -lt 2000 ] || die "guest kernel command line too long (${#a} bytes; the limit is 2048): shorten the command"
    printf '%s\n' "$a"
}

# guest_start: starts QEMU in the background; sets GUEST_PID and GUEST_LOG (the serial log).
# QEMU's own stderr goes to LOG.qemu.
guest_start() {
    local log= append= sock= reconnect= tap= netns= props= mac=$GUEST_MAC_DEFAULT queues=1 mem=512 smp=1
    while [ $# -gt 0 ]; do
        case "$1" in
            --log) log=$2; shift 2 ;;
            --append) append=$2; shift 2 ;;
            --vhost-user) sock=$2; shift 2 ;;
            --reconnect) reconnect=1; shift ;;
            --tap) tap=$2; shift 2 ;;
            --netns) netns=$2; shift 2 ;;
            --device-props) props=$2; shift 2 ;;
            --mac) mac=$2; shift 2 ;;
            --queues) queues=$2; shift 2 ;;
            --mem) mem=$2; shift 2 ;;
            --smp) smp=$2; shift 2 ;;
            *) die "guest_start: unknown option '$1'" ;;
        esac
    done
    [ -n "$log" ] || die "guest_start: --log is required"
    [ -n "$append" ] || die "guest_start: --append is required"
    [ -n "$sock$tap" ] || die "guest_start: give --vhost-user SOCK or --tap IFNAME"
    [ -z "$sock" ] || [ -z "$tap" ] || die "guest_start: --vhost-user and --tap exclude each other"

    local kernel initrd
    kernel="/boot/vmlinuz-$(kernel_version)"
    initrd=$("$VND_ROOT/scripts/build-guest") || die "building the guest image failed"

    local net=() dev="virtio-net-pci,netdev=n0,mac=$mac,vectors=0"
    if [ -n "$sock" ]; then
        local chardev="socket,id=c0,path=$sock"
        [ -n "$reconnect" ] && chardev="$chardev,reconnect=1"
        net=(-chardev "$chardev" -netdev "vhost-user,id=n0,chardev=c0,queues=$queues")
    else
        net=(-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=off")
    fi
    [ "$queues" -gt 1 ] && dev="$dev,mq=on"
    [ -n "$props" ] && dev="$dev,$props"

    local prefix=()
    [ -n "$netns" ] && prefix=(ip netns exec "$netns")
    : > "$log"
    "${prefix[@]}" qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$smp" -nographic -no-reboot \
        -monitor none -serial "file:$log" \
        -object "memory-backend-memfd,id=mem,size=${mem}M,share=on" -numa node,memdev=mem \
        "${net[@]}" -device "$dev" \
        -kernel "$kernel" -initrd "$initrd" -append "$append" \
        </dev/null >"$log.qemu" 2>&1 &
    GUEST_PID=$!
    GUEST_LOG=$log
    log_info "QEMU pid $GUEST_PID, serial log $log"
}

# guest_wait REGEX [TIMEOUT_S]: waits (bounded, default 120 s) for a serial log line matching REGEX (grep -E).
# Fails early if the guest printed VND-ERROR or QEMU exited; then prints the log tail.
guest_wait() {
    local re=$1 timeout=${2:-120}
    local deadline=$(( $(date +%s) + timeout ))
    while :; do
        if tr -d '\r' < "$GUEST_LOG" | grep -qE -- "$re"; then
            return 0
        fi
        if [[ ! "$re" =~ VND-ERROR ]] && tr -d '\r' < "$GUEST_LOG" | grep -q '^VND-ERROR'; then
            guest_tail "guest reported an error while waiting for /$re/"
            return 1
        fi
        if ! kill -0 "$GUEST_PID" 2>/dev/null; then
            tr -d '\r' < "$GUEST_LOG" | grep -qE -- "$re" && return 0
            guest_tail "QEMU exited before /$re/ appeared"
            return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            guest_tail "no /$re/ within ${timeout}s"
            return 1
        fi
        sleep 0.2
    done
}

# guest_grep REGEX: the serial log lines matching REGEX (without carriage returns).
guest_grep() { tr -d '\r' < "$GUEST_LOG" | grep -E -- "$1"; }

guest_tail() {
    log_warn "$1; serial log tail ($GUEST_LOG):"
    tr -d '\r' < "$GUEST_LOG" | tail -n 30 | sed 's/^/    | /' >&2
    if [ -s "$GUEST_LOG.qemu" ]; then
        log_warn "QEMU stderr:"
        tail -n 10 "$GUEST_LOG.qemu" | sed 's/^/    | /' >&2
    fi
}

# guest_stop: ends QEMU (TERM, then KILL after 5 s) and reaps it.
guest_stop() {
    [ -n "$GUEST_PID" ] || return 0
    if kill -0 "$GUEST_PID" 2>/dev/null; then
        kill -TERM "$GUEST_PID" 2>/dev/null || true
        local i
        for i in $(seq 50); do kill -0 "$GUEST_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$GUEST_PID" 2>/dev/null || true
    fi
    wait "$GUEST_PID" 2>/dev/null || true
    GUEST_PID=
}
