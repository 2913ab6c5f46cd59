package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testsupport.Cmd;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.IntFunction;
import java.util.function.Supplier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Two hosts, one L2 network: guest A on host 1 and guest B on host 2 ({@link TwoHosts}: two namespaces joined by
 * a veth underlay), each on virtio-netd on a tap in its host's fabric, which carries their frames over VXLAN:
 *
 * <pre>
 *          host 1 (u1 10.90.0.1)                                   host 2 (u2 10.90.0.2)
 *   guest A -- virtio-netd -------- tapv --+                    +-- tapv -------- virtio-netd -- guest B
 *                                           br0 - vx0 ~~~~~~~ vx0 - br0          (VXLAN 42 over u1 == u2)
 *   guest A' -- QEMU's virtio-net -- tapq --+                    +-- tapq -- QEMU's virtio-net -- guest B'
 * </pre>
 *
 * TCP both ways with offloads on ({@link GuestPairTraffic}). The NIC gives the guests the MTU (VIRTIO_NET_F_MTU,
 * 1500 minus the 50 bytes of VXLAN: QEMU's {@code host_mtu=1450}, which it also sends the back-end as
 * VHOST_USER_NET_SET_MTU, and virtio-netd's {@code --mtu 1450}), so nothing is fragmented on the
 * underlay; the guests' 64 KiB TSO frames cross the VXLAN device whole and the underlay's UDP-tunnel GSO cuts them.
 * The underlay is judged by tshark (every IPv4, outer UDP and inner TCP checksum of a sample of each transfer,
 * {@link UnderlayCapture}) and by the kernels (the hosts' IP fragment and UDP checksum counters, the links'
 * errors, the guests' TcpInCsumErrors). Then the same two hosts carry QEMU's own virtio-net (tapq, vhost=off,
 * {@code host_mtu=1450}) in a second pair of guests, for the throughput ratio (logged, not asserted: TCG guests).
 *
 * <p>The Open vSwitch variant puts Debian's openvswitch-switch in each host instead of the bridge (see
 * {@link OpenVswitch}); if OVS cannot run here, it is skipped with what was tried and what failed.
 */
@Tag("integration")
class TwoHostsVxlanIT {
    private static final System.Logger LOG = System.getLogger(TwoHostsVxlanIT.class.getName());
    private static final int SECONDS = 3;
    /** Frames kept per transfer for tshark: a few seconds of TCG guest traffic is ~10^5 frames. */
    private static final int SAMPLE_FRAMES = 8000;
    private static final Duration STEP = Duration.ofSeconds(120);
    private static final String MTU = Integer.toString(TwoHosts.GUEST_MTU);
    private static final String[] MACS = {"52:54:00:90:00:0a", "52:54:00:90:00:0b"};
    private static final String[] QEMU_MACS = {"52:54:00:90:01:0a", "52:54:00:90:01:0b"};
    private static final String[] IPS = {GuestPairTraffic.A_IP, GuestPairTraffic.B_IP};
    private static final List<String> ALL_OFFLOADS = List.of("VIRTIO_NET_F_MTU", "VIRTIO_NET_F_CSUM",
            "VIRTIO_NET_F_GUEST_CSUM", "VIRTIO_NET_F_HOST_TSO4", "VIRTIO_NET_F_GUEST_TSO4");

    /** What one pair of guests did across the hosts; per-host lists are host 1 then host 2. */
    private record Run(GuestPairTraffic.Result traffic, UnderlayCapture.Verdict underlay, String captureSummary,
                       List<Map<String, Long>> links, List<Map<String, Long>> ipUdp,
                       List<Map<String, Object>> deviceStats, List<String> negotiated) {
    }

    @Test
    @Timeout(value = 6, unit = TimeUnit.MINUTES)
    void guestsOnTwoHostsExchangeTcpOverVxlanThroughLinuxBridges() {
        requirePackages("tshark");
        try (TwoHosts t = TwoHosts.create()) {
            LOG.log(System.Logger.Level.INFO, "{0}", t);
            t.linuxBridge("tapv", "tapq");
            t.assertUnderlayPings();
            Run ours = virtioNetdRun(t, List.of("--mtu", MTU), ALL_OFFLOADS, new String[] {"u", "vx0", "tapv"},
                    () -> "");
            LOG.log(System.Logger.Level.INFO, "linux bridge, virtio-netd: {0}", describe(ours));
            assertClean("linux bridge, virtio-netd", ours, true);
            assertThat(ours.negotiated()).as("features virtio-netd negotiated (virtio-netd features)")
                    .containsAll(ALL_OFFLOADS);
            for (int h = 1; h <= 2; h++) {
                // The VXLAN device sent the guests' GSO frames whole; the underlay carried their segments.
                Map<String, Long> l = ours.links().get(h - 1);
                assertThat(l.get("u.tx_packets") - l.get("vx0.tx_packets"))
                        .as("host %d: packets the underlay sent beyond those vx0 handed it (GSO across the tunnel;"
                                + " %s)", h, l).isGreaterThan(1000);
            }

            // QEMU opens its tap by name, so it runs in the tap's namespace; host_mtu offers VIRTIO_NET_F_MTU.
            Run qemu = run(t, h -> GuestVm.builder().tap("tapq").netns(t.host(h)).mac(QEMU_MACS[h - 1])
                            .deviceProperties("host_mtu=" + MTU), ALL_OFFLOADS, new String[] {"u", "vx0", "tapq"},
                    List.of(), false, () -> "");
            LOG.log(System.Logger.Level.INFO, "linux bridge, QEMU''s own virtio-net: {0}", describe(qemu));
            assertClean("linux bridge, QEMU's own virtio-net", qemu, false);
            GuestPairTraffic.Result o = ours.traffic();
            GuestPairTraffic.Result q = qemu.traffic();
            LOG.log(System.Logger.Level.INFO, String.format("TwoHostsVxlanIT over VXLAN: virtio-netd A -> B %.3f"
                            + " Gbit/s, B -> A %.3f Gbit/s; QEMU's own virtio-net A -> B %.3f, B -> A %.3f;"
                            + " virtio-netd / QEMU: A -> B %.2f, B -> A %.2f (TCG guests: a ratio, not a speed)",
                    o.abGbps(), o.baGbps(), q.abGbps(), q.baGbps(), o.abGbps() / q.abGbps(), o.baGbps() / q.baGbps()));
        }
    }

    /**
     * Open vSwitch 3.1's userspace datapath (the one this kernel allows) cannot carry the tap's offloads over its
     * VXLAN ports, as tried here by hand with offloading senders: without {@code other_config:userspace-tso-enable}
     * it reads a port with a plain packet socket, so a 64 KiB GSO frame does not fit and is dropped and a partial
     * checksum goes out unfinished (tshark: bad TCP checksums on the underlay); with it, OVS drops every offloaded
     * packet at the VXLAN port ("vxlan_sys_4789: Tunneling packets with HW offload flags is not supported: packet
     * dropped"). So here the device completes the offloads ({@code --software-offload}, the tap without a vnet
     * header): the guest still hands over its TSO frames and partial checksums, and OVS gets wire-size frames.
     * The hosts' kernels do not see the VXLAN packets here (OVS takes them off the underlay port itself): the outer
     * checksums are judged by tshark on the underlay, the inner ones by it and the guests.
     */
    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void guestsOnTwoHostsExchangeTcpOverVxlanThroughOpenVswitch() {
        requirePackages("tshark");
        Cmd.Result install = TwoHosts.ensurePackages("openvswitch-switch");
        assumeTrue(install.ok(), () -> "Open vSwitch cannot run here: installing Debian's openvswitch-switch failed"
                + " (exit " + install.exitCode() + "):\n" + Cmd.tail(install.output(), 20));
        try (TwoHosts t = TwoHosts.create()) {
            LOG.log(System.Logger.Level.INFO, "{0}", t);
            List<OpenVswitch> switches = new ArrayList<>();
            try {
                for (int h = 1; h <= 2; h++) {
                    t.host(h).addTap("tapv", null);
                    t.host(h).setMtu("tapv", TwoHosts.GUEST_MTU);
                    OpenVswitch ovs = OpenVswitch.start(t.host(h));
                    switches.add(ovs);
                    ovs.underlayBridge(t.underlay(h), t.underlayIp(h) + "/24");
                    ovs.vxlanBridge(t.underlayIp(h), t.underlayIp(TwoHosts.peer(h)), TwoHosts.VNI,
                            TwoHosts.VXLAN_PORT, "tapv");
                }
            } catch (OpenVswitch.CannotRun e) {
                switches.forEach(OpenVswitch::close);
                assumeTrue(false, "Open vSwitch cannot run here (ovsdb-server and ovs-vswitchd started by hand in "
                        + "each host namespace, bridges with datapath_type=netdev as this kernel has no openvswitch "
                        + "module): " + e.getMessage());
            }
            try {
                // Also fills OVS's tunnel neighbour cache: it learns the peer's MAC from the ARP reply on br-phy.
                t.assertUnderlayPings();
                Supplier<String> context = () -> switches.stream().map(OpenVswitch::describe)
                        .reduce("", String::concat);
                Run ours = virtioNetdRun(t, List.of("--mtu", MTU, "--software-offload"), List.of("VIRTIO_NET_F_MTU",
                        "VIRTIO_NET_F_CSUM", "VIRTIO_NET_F_HOST_TSO4"), new String[] {"u", "tapv"}, context);
                LOG.log(System.Logger.Level.INFO, "Open vSwitch (userspace datapath), virtio-netd --software-offload:"
                        + " {0}; OVS tunnel neighbours on host 1: {1}", describe(ours),
                        switches.get(0).appctl("tnl/neigh/show").strip());
                assertClean("Open vSwitch, virtio-netd", ours, true);
                for (int h = 1; h <= 2; h++) {
                    assertThat(switches.get(h - 1).dropWarnings()).as("drops in ovs-vswitchd's log on host %d", h)
                            .isEmpty();
                }
            } finally {
                switches.forEach(OpenVswitch::close);
            }
        }
    }

    /** One virtio-netd per host on tapv ({@code options} plus the guest's MAC), a guest on each. */
    private static Run virtioNetdRun(TwoHosts t, List<String> options, List<String> features, String[] links,
                                     Supplier<String> context) {
        List<VirtioNetd> devices = new ArrayList<>();
        try {
            for (int h = 1; h <= 2; h++) {
                List<String> args = new ArrayList<>(options);
                args.addAll(List.of("--mac", MACS[h - 1]));
                devices.add(VirtioNetd.start(t.host(h), "tapv", args.toArray(String[]::new)));
            }
            // QEMU offers a vhost-user NIC's VIRTIO_NET_F_MTU only with host_mtu=, and then tells the back-end
            // (VHOST_USER_NET_SET_MTU, vhost-user.rst); virtio-netd's --mtu is the same 1450.
            return run(t, h -> GuestVm.builder().vhostUser(devices.get(h - 1).socket()).mac(MACS[h - 1])
                            .deviceProperties("host_mtu=" + MTU), features,
                    links, devices, true, context);
        } finally {
            devices.forEach(VirtioNetd::close);
        }
    }

    /**
     * Boots guest A on host 1 and guest B on host 2 at once ({@code guest} gives each its NIC), runs the traffic,
     * and gathers what the guests, the devices (if any), the kernels and (with {@code capture}) the underlay saw.
     * Links named "u" are the host's underlay end.
     */
    private static Run run(TwoHosts t, IntFunction<GuestVm.Builder> guest, List<String> features, String[] links,
                           List<VirtioNetd> devices, boolean capture, Supplier<String> context) {
        List<Map<String, Long>> linksBefore = new ArrayList<>();
        List<Map<String, Long>> ipUdpBefore = new ArrayList<>();
        for (int h = 1; h <= 2; h++) {
            linksBefore.add(linkCounters(t, h, links));
            ipUdpBefore.add(t.ipUdpCounters(h));
        }
        Object[] seen = new Object[3];
        try (UnderlayCapture cap = capture ? UnderlayCapture.start(t.host(2), t.underlay(2), SAMPLE_FRAMES,
                GuestPairTraffic.PORT_AB, GuestPairTraffic.PORT_BA) : null) {
            try (GuestVm a = guest.apply(1).ip(IPS[0] + "/24").memoryMiB(384)
                    .command(GuestPairTraffic.commandA(SECONDS)).start();
                 GuestVm b = guest.apply(2).ip(IPS[1] + "/24").memoryMiB(384)
                         .command(GuestPairTraffic.commandB()).start()) {
                Failures.withContext(() -> describe(devices, a, b) + context.get()
                        + (cap == null ? "" : cap.summary()), () -> {
                    for (GuestVm vm : List.of(a, b)) {
                        String bits = vm.awaitFeatures(GuestVm.BOOT_TIMEOUT);
                        assertThat(VirtioNetFeature.names(GuestVm.featureBits(bits)))
                                .as("features guest %s negotiated (%s)", vm == a ? "A" : "B", bits)
                                .containsAll(features);
                    }
                    // While the drivers run: a guest powers off when its script ends, and its device resets.
                    seen[2] = devices.isEmpty() ? List.of() : JsonText.strings(devices.get(0).features(), "negotiated");
                    seen[0] = GuestPairTraffic.await(a, b, GuestVm.BOOT_TIMEOUT.plus(STEP));
                    seen[1] = devices.stream().map(VirtioNetd::stats).toList();
                });
            }
            UnderlayCapture.Verdict verdict = cap == null ? null : cap.finish();
            List<Map<String, Long>> linksAdded = new ArrayList<>();
            List<Map<String, Long>> ipUdpAdded = new ArrayList<>();
            for (int h = 1; h <= 2; h++) {
                linksAdded.add(TwoHosts.added(linksBefore.get(h - 1), linkCounters(t, h, links)));
                ipUdpAdded.add(TwoHosts.added(ipUdpBefore.get(h - 1), t.ipUdpCounters(h)));
            }
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> stats = (List<Map<String, Object>>) seen[1];
            @SuppressWarnings("unchecked")
            List<String> negotiated = (List<String>) seen[2];
            return new Run((GuestPairTraffic.Result) seen[0], verdict, cap == null ? "" : cap.summary(), linksAdded,
                    ipUdpAdded, stats, negotiated);
        }
    }

    /** {@link TwoHosts#linkCounters} with "u" for the host's underlay end, keyed "u." as well. */
    private static Map<String, Long> linkCounters(TwoHosts t, int h, String[] links) {
        String[] devs = new String[links.length];
        for (int i = 0; i < links.length; i++) {
            devs[i] = links[i].equals("u") ? t.underlay(h) : links[i];
        }
        Map<String, Long> raw = t.linkCounters(h, devs);
        Map<String, Long> named = new java.util.LinkedHashMap<>();
        raw.forEach((k, v) -> named.put(k.startsWith(t.underlay(h) + ".") ? "u" + k.substring(t.underlay(h).length())
                : k, v));
        return named;
    }

    /** What must hold for any pair: the device's MTU in both guests, clean TCP, clean underlay, clean kernels. */
    private static void assertClean(String what, Run r, boolean device) {
        GuestPairTraffic.Result tr = r.traffic();
        String seen = what + ": " + describe(r);
        for (GuestPairTraffic.Guest g : List.of(tr.a(), tr.b())) {
            assertThat(g.mtu()).as("a guest's eth0 MTU, from its device (%s)", seen).isEqualTo(TwoHosts.GUEST_MTU);
            assertThat(g.csumErrorsAdded()).as("TcpInCsumErrors added in a guest (%s)", seen).isZero();
            assertThat(g.inSegsAdded()).as("TcpInSegs added in a guest (%s)", seen).isGreaterThan(1000);
        }
        assertThat(tr.abGbps()).as("A -> B throughput (%s)", seen).isPositive();
        assertThat(tr.baGbps()).as("B -> A throughput (%s)", seen).isPositive();
        for (int h = 1; h <= 2; h++) {
            Map<String, Long> l = r.links().get(h - 1);
            Map<String, Long> k = r.ipUdp().get(h - 1);
            l.forEach((name, v) -> {
                if (name.endsWith("_errors")) {
                    assertThat(v).as("%s added in the host (%s)", name, seen).isZero();
                }
            });
            assertThat(k.get("Ip.FragCreates")).as("IPv4 fragments made in a host (%s)", seen).isZero();
            assertThat(k.get("Ip.FragFails")).as("IPv4 datagrams a host could not fragment (%s)", seen).isZero();
            assertThat(k.get("Ip.ReasmReqds")).as("IPv4 fragments a host received (%s)", seen).isZero();
            assertThat(k.get("Udp.InCsumErrors")).as("UDP checksum errors in a host (%s)", seen).isZero();
        }
        if (r.underlay() != null) {
            UnderlayCapture.Verdict v = r.underlay();
            assertThat(v.framesByPort().values()).as("frames in each transfer's sample (%s)", seen)
                    .allMatch(n -> n > 1000);
            assertThat(v.badChecksums()).as("bad checksums tshark found on the underlay (%s)", seen).isZero();
            assertThat(v.unjudgedChecksums()).as("checksums tshark could not judge (%s)", seen).isZero();
            assertThat(v.largestFrame()).as("largest underlay frame (%s)", seen)
                    .isLessThanOrEqualTo(TwoHosts.LARGEST_UNDERLAY_FRAME);
            assertThat(v.wireSizeFrames()).as("full-size underlay frames: TCP filled the MTU (%s)", seen)
                    .isGreaterThan(1000);
            assertThat(v.fragments()).as("IP fragments in the samples (%s)", seen).isZero();
            assertThat(v.oversizeOrFragments()).as("oversize frames or IP fragments during the run (%s)", seen)
                    .isZero();
        }
        if (device) {
            for (Map<String, Object> s : r.deviceStats()) {
                // The guest handed its device TSO frames: on average more than one MTU-sized frame each.
                assertThat(VirtioNetd.counter(s, "tx_bytes") / Math.max(1, VirtioNetd.counter(s, "tx_packets")))
                        .as("average guest -> device frame, bytes (%s)", seen).isGreaterThan(TwoHosts.GUEST_MTU + 14L);
                assertThat(VirtioNetd.counter(s, "rx_bad_offload")).as("rx_bad_offload (%s)", seen).isZero();
            }
        }
    }

    private static String describe(Run r) {
        StringBuilder b = new StringBuilder(r.traffic().toString());
        if (r.underlay() != null) {
            b.append("; underlay: ").append(r.underlay()).append(" (").append(r.captureSummary()).append(')');
        }
        for (int h = 1; h <= 2; h++) {
            b.append("; host ").append(h).append(" added: ").append(r.links().get(h - 1)).append(' ')
                    .append(r.ipUdp().get(h - 1));
        }
        for (Map<String, Object> s : r.deviceStats()) {
            long tx = VirtioNetd.counter(s, "tx_packets");
            long rx = VirtioNetd.counter(s, "rx_packets");
            b.append("; device ").append(s.get("device")).append(": guest -> device ").append(tx).append(" frames, ")
                    .append(VirtioNetd.counter(s, "tx_bytes") / Math.max(1, tx)).append(" bytes average; device -> "
                            + "guest ").append(rx).append(" frames, ").append(VirtioNetd.counter(s, "rx_bytes")
                            / Math.max(1, rx)).append(" bytes average");
        }
        if (!r.negotiated().isEmpty()) {
            b.append("; negotiated (host 1) ").append(r.negotiated());
        }
        return b.toString();
    }

    private static String describe(List<VirtioNetd> devices, GuestVm a, GuestVm b) {
        if (devices.isEmpty()) {
            return "guest A serial tail:\n" + Cmd.indent(Cmd.tail(a.output(), 30)) + "guest B serial tail:\n"
                    + Cmd.indent(Cmd.tail(b.output(), 30));
        }
        return "--- host 1:\n" + devices.get(0).describe(a) + "\n--- host 2:\n" + devices.get(1).describe(b) + "\n";
    }

    /** Installs what the test needs the way the project's scripts do; fails with apt's output otherwise. */
    private static void requirePackages(String... packages) {
        Cmd.Result r = TwoHosts.ensurePackages(packages);
        assertThat(r.exitCode()).as("installing %s with scripts/lib/common.sh's ensure_packages:%n%s",
                List.of(packages), r.output()).isZero();
    }
}
