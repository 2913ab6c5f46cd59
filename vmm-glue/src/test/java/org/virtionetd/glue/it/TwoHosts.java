package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Two hosts on one underlay, for the overlay tests: two network namespaces (host 1, host 2, without IPv6 so that
 * the underlay carries only what the test sends) joined by a veth pair, {@code u1} 10.90.0.1/24 in host 1 and
 * {@code u2} 10.90.0.2/24 in host 2, MTU 1500. A fabric in each host (a Linux bridge with a VXLAN device here, or
 * {@link OpenVswitch}) joins the host's taps to VXLAN network {@value #VNI} over the underlay.
 *
 * <p>Both underlay ends checksum and segment in software ({@code ethtool -K tx off}) and do not merge what they
 * receive ({@code gro off}). A veth hands its peer a GSO frame whole: with its offloads on, the "wire" would carry
 * the 64 KiB frames the VXLAN device sends, their checksums unfinished, and a capture would see nothing a real
 * link carries. With them off the veth is a NIC without tunnel offloads: the kernel's UDP-tunnel GSO cuts each
 * 64 KiB VXLAN frame into wire-size packets and fills in the outer UDP and the inner TCP checksums when the frame
 * is sent (validate_xmit_skb, before the packet taps see it), so a capture on either end, sending or receiving,
 * sees what went over the wire. The VXLAN device itself still takes the GSO frames whole: its packet counter
 * against the underlay's shows it ({@link #linkCounters}).
 */
public final class TwoHosts implements AutoCloseable {
    public static final int VNI = 42;
    public static final int VXLAN_PORT = 4789;
    public static final int UNDERLAY_MTU = 1500;
    /** Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (the inner Ethernet header counts against the underlay MTU). */
    public static final int VXLAN_OVERHEAD = 50;
    /** The MTU the guests get from their device: nothing they send needs fragmenting on the underlay. */
    public static final int GUEST_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD;
    /** The largest frame the underlay may carry: its MTU plus the Ethernet header. */
    public static final int LARGEST_UNDERLAY_FRAME = UNDERLAY_MTU + 14;

    private final List<NetNs> hosts;

    private TwoHosts(List<NetNs> hosts) {
        this.hosts = hosts;
    }

    /** Both hosts and the underlay between them, up; the underlay's offloads off (see the class comment). */
    public static TwoHosts create() {
        List<NetNs> hosts = new ArrayList<>();
        try {
            hosts.add(NetNs.createWithoutIpv6());
            hosts.add(NetNs.createWithoutIpv6());
            TwoHosts t = new TwoHosts(hosts);
            t.host(1).addVethTo(t.underlay(1), t.host(2), t.underlay(2));
            for (int h = 1; h <= 2; h++) {
                t.host(h).setMtu(t.underlay(h), UNDERLAY_MTU);
                t.host(h).exec("ethtool", "-K", t.underlay(h), "tx", "off", "gro", "off");
            }
            return t;
        } catch (RuntimeException | Error e) {
            for (NetNs ns : hosts) {
                try {
                    ns.close();
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
    }

    /** Host 1 or 2. */
    public NetNs host(int h) {
        return hosts.get(index(h));
    }

    /** The underlay veth end in host {@code h}: u1 or u2. */
    public String underlay(int h) {
        return "u" + (index(h) + 1);
    }

    /** Host {@code h}'s underlay address: 10.90.0.1 or 10.90.0.2. */
    public String underlayIp(int h) {
        return "10.90.0." + (index(h) + 1);
    }

    /** The other host's number. */
    public static int peer(int h) {
        return 3 - h;
    }

    private static int index(int h) {
        if (h != 1 && h != 2) {
            throw new IllegalArgumentException("host " + h + ": there are hosts 1 and 2");
        }
        return h - 1;
    }

    /** Underlay addresses on the veth ends (the Linux-bridge fabric routes VXLAN straight over them). */
    public void addressUnderlay() {
        for (int h = 1; h <= 2; h++) {
            host(h).addAddress(underlay(h), underlayIp(h) + "/24");
        }
    }

    /**
     * The Linux-bridge fabric: in each host {@code ip link add vx0 type vxlan id 42 local A remote B dstport 4789
     * dev UNDERLAY udpcsum} (the outer UDP checksum on, so that the receiver checks it) and bridge {@code br0} with
     * vx0 and the given taps, which get the guests' MTU (the bridge's MTU follows its smallest port).
     */
    public void linuxBridge(String... taps) {
        addressUnderlay();
        for (int h = 1; h <= 2; h++) {
            NetNs ns = host(h);
            ns.exec("ip", "link", "add", "vx0", "type", "vxlan", "id", Integer.toString(VNI), "local", underlayIp(h),
                    "remote", underlayIp(peer(h)), "dstport", Integer.toString(VXLAN_PORT), "dev", underlay(h),
                    "udpcsum");
            List<String> ports = new ArrayList<>(List.of("vx0"));
            for (String tap : taps) {
                ns.addTap(tap, null);
                ns.setMtu(tap, GUEST_MTU);
                ports.add(tap);
            }
            ns.addBridge("br0", ports.toArray(String[]::new));
            ns.up("vx0");
        }
    }

    /** Both hosts answer each other's underlay address (the fabric's next hop is there). */
    public void assertUnderlayPings() {
        for (int h = 1; h <= 2; h++) {
            Cmd.Result r = host(h).ping(underlayIp(peer(h)), 2);
            if (!r.ok()) {
                throw new AssertionError("host " + h + " (" + host(h).name() + ") cannot ping " + underlayIp(peer(h))
                        + " over the underlay: exit " + r.exitCode() + "\n" + Cmd.indent(r.output()));
            }
        }
    }

    /**
     * The kernel's counters of links in host {@code h} ({@code ip -s link}: /sys/class/net/DEV/statistics, which
     * {@code ip netns exec} shows for the namespace), by {@code DEV.counter}: packets, errors and drops both ways.
     */
    public Map<String, Long> linkCounters(int h, String... devices) {
        String[] names = {"rx_packets", "tx_packets", "rx_errors", "tx_errors", "rx_dropped", "tx_dropped"};
        List<String> argv = new ArrayList<>(List.of("cat"));
        for (String d : devices) {
            for (String n : names) {
                argv.add("/sys/class/net/" + d + "/statistics/" + n);
            }
        }
        List<String> values = host(h).exec(Duration.ofSeconds(20), argv.toArray(String[]::new)).strip().lines()
                .toList();
        if (values.size() != devices.length * names.length) {
            throw new AssertionError("host " + h + ": " + argv + " printed " + values);
        }
        Map<String, Long> m = new LinkedHashMap<>();
        int i = 0;
        for (String d : devices) {
            for (String n : names) {
                m.put(d + "." + n, Long.parseLong(values.get(i++).strip()));
            }
        }
        return m;
    }

    /** The kernel's IPv4 fragmentation and UDP checksum counters of host {@code h} (/proc/net/snmp). */
    public Map<String, Long> ipUdpCounters(int h) {
        Map<String, Long> m = new LinkedHashMap<>();
        for (String f : List.of("FragCreates", "FragFails", "ReasmReqds")) {
            m.put("Ip." + f, host(h).snmp("Ip", f));
        }
        for (String f : List.of("InDatagrams", "InErrors", "InCsumErrors")) {
            m.put("Udp." + f, host(h).snmp("Udp", f));
        }
        return m;
    }

    /** {@code after - before} for each key of {@code after}. */
    public static Map<String, Long> added(Map<String, Long> before, Map<String, Long> after) {
        Map<String, Long> d = new LinkedHashMap<>();
        after.forEach((k, v) -> d.put(k, v - before.getOrDefault(k, 0L)));
        return d;
    }

    /**
     * Installs Debian packages the way the project's scripts do ({@code ensure_packages} of scripts/lib/common.sh:
     * only the missing ones, never asking); returns what it did, exit code included.
     */
    public static Cmd.Result ensurePackages(String... packages) {
        List<String> argv = new ArrayList<>(List.of("bash", "-c", ". \"$1/scripts/lib/common.sh\" && shift && "
                + "ensure_packages \"$@\"", "ensure_packages", GuestVm.projectRoot().toString()));
        argv.addAll(List.of(packages));
        return Cmd.run(Duration.ofMinutes(10), argv);
    }

    @Override
    public void close() {
        RuntimeException first = null;
        for (int i = hosts.size() - 1; i >= 0; i--) {
            try {
                hosts.get(i).close();
            } catch (RuntimeException e) {
                if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    @Override
    public String toString() {
        return "two hosts: host 1 " + host(1).name() + ", host 2 " + host(2).name();
    }
}
