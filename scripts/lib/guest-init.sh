#!/bin/sh
# /init of the virtio-netd test guest (busybox ash, PID 1 in an initramfs).
# Protocol on ttyS0, one marker per line, for the host harness (GuestVm, scripts/lib/guest.sh):
#   VND-FEATURES <64 chars of 0/1, bit 0 first>   negotiated features of the net device's virtio device
#   VND-ETHTOOL-BEGIN / ... / VND-ETHTOOL-END     `ethtool -k eth0`, only with vnd.ethtool=1
#   VND-READY                                     eth0 is configured and up
#   ... output of the command from vnd.cmd=<base64> ...
#   VND-DONE rc=<exit code of the command>
#   VND-ERROR <what went wrong>                   then the guest powers off
# Kernel parameters: vnd.ip=10.77.0.2/24 (required for READY), vnd.mtu=N, vnd.ethtool=1, vnd.cmd=BASE64,
# vnd.wait=SECONDS (how long to wait for eth0, default 60).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run /root
mount -t tmpfs tmpfs /tmp
# Only errors on the console: the markers must start their own lines.
echo 3 > /proc/sys/kernel/printk

if [ -c /dev/ttyS0 ]; then
    exec </dev/null >/dev/ttyS0 2>&1
else
    exec </dev/null >/dev/console 2>&1
fi
# Firmware and the kernel leave escape sequences without a newline: start the markers on a fresh line.
echo

finish() {
    sync
    poweroff -f
    # poweroff -f does not return; if it does, exiting PID 1 panics and panic=-1 + -no-reboot ends QEMU.
    exit "$1"
}

fail() {
    echo "VND-ERROR $*"
    echo "VND-ERROR-CONTEXT interfaces: $(ls /sys/class/net 2>/dev/null | tr '\n' ' ')"
    dmesg 2>/dev/null | tail -n 20 | sed 's/^/VND-DMESG /'
    echo "VND-DONE rc=125"
    finish 125
}

VND_IP=
VND_MTU=
VND_ETHTOOL=
VND_CMD=
VND_WAIT=60
for word in $(cat /proc/cmdline); do
    case "$word" in
        vnd.ip=*) VND_IP=${word#vnd.ip=} ;;
        vnd.mtu=*) VND_MTU=${word#vnd.mtu=} ;;
        vnd.ethtool=*) VND_ETHTOOL=${word#vnd.ethtool=} ;;
        vnd.cmd=*) VND_CMD=${word#vnd.cmd=} ;;
        vnd.wait=*) VND_WAIT=${word#vnd.wait=} ;;
    esac
done

# The cloud kernel builds virtio as modules; /etc/vnd-modules lists them in dependency order.
while read -r mod; do
    [ -n "$mod" ] || continue
    [ -f "/lib/modules/$mod.ko" ] || fail "module $mod missing from the initramfs (/lib/modules/$mod.ko)"
    out=$(insmod "/lib/modules/$mod.ko" 2>&1) || fail "insmod $mod failed: $out"
done < /etc/vnd-modules

# Wait (bounded) for the driver to probe the device and register eth0.
i=0
while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1))
    [ "$i" -le $((VND_WAIT * 10)) ] || fail "no eth0 after ${VND_WAIT}s (no virtio-net device, or the driver did not probe)"
    usleep 100000
done

features=$(cat /sys/class/net/eth0/device/features 2>/dev/null) \
    || fail "cannot read /sys/class/net/eth0/device/features"
echo "VND-FEATURES $features"

[ -n "$VND_IP" ] || fail "no vnd.ip= on the kernel command line"
ip link set lo up
if [ -n "$VND_MTU" ]; then
    out=$(ip link set eth0 mtu "$VND_MTU" 2>&1) || fail "ip link set eth0 mtu $VND_MTU failed: $out"
fi
out=$(ip addr add "$VND_IP" dev eth0 2>&1) || fail "ip addr add $VND_IP dev eth0 failed: $out"
out=$(ip link set eth0 up 2>&1) || fail "ip link set eth0 up failed: $out"

if [ "$VND_ETHTOOL" = 1 ]; then
    echo "VND-ETHTOOL-BEGIN"
    ethtool -k eth0
    echo "VND-ETHTOOL-END"
fi

echo "VND-READY"

rc=0
if [ -n "$VND_CMD" ]; then
    if echo "$VND_CMD" | base64 -d > /tmp/vnd-cmd.sh 2>/tmp/vnd-cmd.err; then
        cd /root
        sh /tmp/vnd-cmd.sh
        rc=$?
        cd /
    else
        echo "VND-ERROR vnd.cmd is not valid base64: $(cat /tmp/vnd-cmd.err)"
        rc=124
    fi
fi
echo "VND-DONE rc=$rc"
finish "$rc"
