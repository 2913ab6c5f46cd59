# shellcheck shell=bash
# Shared helpers of the virtio-netd scripts: logging, package installation, the guest kernel.
# Sourced, never run. Everything logs to stderr so that a script's stdout stays a clean result
# (build-guest prints only the image path).

# The packages the project's build, tests, demo and benchmarks need on Debian 12.
# dpdk-testpmd ships in dpdk-dev, not in dpdk. libvirt-daemon-system pulls libvirt's QEMU driver (LibvirtIT);
# tshark judges the underlay's checksums and openvswitch-switch is the second fabric of TwoHostsVxlanIT; the
# Prometheus text is judged by python3-prometheus-client's parser and by prometheus's promtool (PrometheusScrape).
VND_PACKAGES=(qemu-system-x86 dpdk dpdk-dev iperf3 busybox-static ethtool cpio iproute2
              linux-image-cloud-amd64 tcpdump kmod maven openjdk-17-jdk-headless python3
              python3-prometheus-client prometheus systemd libvirt-daemon-system libvirt-clients tshark
              openvswitch-switch)

VND_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VND_CACHE="${VND_CACHE:-${HOME:-/root}/.cache/virtio-netd}"

# The name in the log lines: the script's file name, unless the script sets VND_LOG_NAME after sourcing this
# (scripts/bench's subcommands log as "bench NAME"). Set here, so that a value in the environment is not inherited.
VND_LOG_NAME=${0##*/}
_vnd_ts() { date +%H:%M:%S; }
log_info() { printf '%s [%s] %s\n' "$(_vnd_ts)" "$VND_LOG_NAME" "$*" >&2; }
log_warn() { printf '%s [%s] WARNING: %s\n' "$(_vnd_ts)" "$VND_LOG_NAME" "$*" >&2; }
die() { printf '%s [%s] ERROR: %s\n' "$(_vnd_ts)" "$VND_LOG_NAME" "$*" >&2; exit 1; }

# print_header FILE: the comment block after FILE's first line (its usage), without the leading "# ".
print_header() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (taps, network namespaces and apt-get need it); uid is $(id -u)"
}

# Is a Debian package installed? (dpkg's status word, not just "known")
package_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

_vnd_apt_updated=
# ensure_packages pkg...: installs only the missing ones, never asks (no stdin needed).
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        package_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}) and not root to install them"
    log_info "installing missing packages: ${missing[*]}"
    if [ -z "$_vnd_apt_updated" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2 || die "apt-get update failed"
        _vnd_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# ensure_project_packages: installs the missing VND_PACKAGES and exports their names in VND_PACKAGES_ENSURED, so
# that a test needing one of them (PrometheusScrape.requireParser) fails under scripts/test instead of skipping.
ensure_project_packages() {
    ensure_packages "${VND_PACKAGES[@]}"
    export VND_PACKAGES_ENSURED="${VND_PACKAGES[*]}"
}

# kernel_version: the newest installed Debian cloud kernel (what the test guest boots), e.g. 6.1.0-56-cloud-amd64.
# The running kernel is irrelevant: the guest runs under QEMU.
kernel_version() {
    local k
    k=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sed 's#^/boot/vmlinuz-##' | sort -V | tail -n 1)
    if [ -z "$k" ]; then
        ensure_packages linux-image-cloud-amd64
        k=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sed 's#^/boot/vmlinuz-##' | sort -V | tail -n 1)
    fi
    [ -n "$k" ] || die "no /boot/vmlinuz-*-cloud-amd64 even after installing linux-image-cloud-amd64"
    [ -d "/lib/modules/$k" ] || die "kernel $k has no /lib/modules/$k"
    printf '%s\n' "$k"
}

# wait_for CMD... with VND_WAIT_TIMEOUT seconds (default 30): polls every 0.2 s, bounded.
wait_for() {
    local deadline=$(( $(date +%s) + ${VND_WAIT_TIMEOUT:-30} ))
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
