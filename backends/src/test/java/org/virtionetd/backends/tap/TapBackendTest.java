package org.virtionetd.backends.tap;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.virtionetd.backends.tap.uapi.IfTun;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Predicate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.backends.tap.Frames.ETH_HLEN;
import static org.virtionetd.backends.tap.Frames.IP_HLEN;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_CSUM;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_ECN;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_TSO4;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_TSO6;

/**
 * TapBackend against the real kernel (root): a tap created here, moved into a namespace created here, with the
 * kernel on the far side as the judge. Each test takes well under a second or two.
 */
class TapBackendTest {
    static final String NS_MAC = "02:00:00:00:00:01";
    static final String OUR_MAC = "02:00:00:00:00:02";
    static final String NS_IP = "10.77.0.1";
    static final String OUR_IP = "10.77.0.2";
    static final Duration WAIT = Duration.ofSeconds(5);

    /** A tap backend whose interface lives in a fresh namespace, with a static neighbour entry for us. */
    static final class Rig implements AutoCloseable {
        final String tap = NetNs.uniqueLinkName("vnt");
        final TapBackend backend;
        final NetNs ns;

        Rig(boolean offload) throws IOException {
            backend = TapBackend.open(tap, offload);
            NetNs n = null;
            try {
                n = NetNs.createWithoutIpv6();
                n.adopt(tap, NS_MAC, NS_IP + "/24");
                n.neighbour(OUR_IP, OUR_MAC, tap);
            } catch (RuntimeException e) {
                backend.close();
                if (n != null) {
                    n.close();
                }
                throw e;
            }
            ns = n;
        }

        @Override
        public void close() {
            backend.close();
            ns.close();
        }
    }

    /** A received frame: the vnet header bytes and the Ethernet frame. */
    static final class Received {
        final byte[] header;
        final byte[] frame;

        Received(byte[] header, byte[] frame) {
            this.header = header;
            this.frame = frame;
        }

        VirtioNetHeader vnet() {
            return new VirtioNetHeader(ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN), 0);
        }
    }

    /** Polls receive() into scattered slices until a frame matches; fails listing what was seen. */
    static Received awaitFrame(TapBackend b, Predicate<byte[]> match, String what) throws IOException {
        ByteBuffer[] slices = {ByteBuffer.allocateDirect(7), ByteBuffer.allocateDirect(100),
            ByteBuffer.allocateDirect(StagedFrame.CAPACITY)};
        List<String> seen = new ArrayList<>();
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (System.nanoTime() < deadline) {
            for (ByteBuffer s : slices) {
                s.clear();
            }
            int peek = b.peekLength();
            int n = b.receive(slices, slices.length);
            if (n == 0) {
                LockSupport.parkNanos(2_000_000);
                continue;
            }
            assertThat(n).as("receive length equals peekLength").isEqualTo(peek);
            byte[] all = new byte[n];
            int at = 0;
            for (ByteBuffer s : slices) {
                s.flip();
                int k = s.remaining();
                s.get(all, at, k);
                at += k;
            }
            assertThat(at).isEqualTo(n);
            int h = b.headerLength();
            byte[] header = java.util.Arrays.copyOfRange(all, 0, h);
            byte[] frame = java.util.Arrays.copyOfRange(all, h, n);
            if (match.test(frame)) {
                return new Received(header, frame);
            }
            seen.add(Frames.describe(frame));
        }
        throw new AssertionError("no " + what + " from " + b.name() + " within " + WAIT + "; frames seen: " + seen);
    }

    /** A packet as the device hands it: zeroed header of {@code hdrLen}, frame in three scattered slices. */
    static Packet packet(int hdrLen, byte[] frame) {
        Packet p = new Packet(8);
        p.reset(hdrLen);
        int[] cuts = {0, Math.min(5, frame.length), Math.min(40, frame.length), frame.length};
        for (int i = 0; i + 1 < cuts.length; i++) {
            int len = cuts[i + 1] - cuts[i];
            if (len == 0) {
                continue;
            }
            ByteBuffer s = ByteBuffer.allocateDirect(len + 16);
            s.position(8); // not at offset 0 of its buffer, as guest memory views are not
            s.put(frame, cuts[i], len);
            s.flip().position(8);
            p.add(s.slice());
        }
        return p;
    }

    static byte[] echoRequest(int id) {
        byte[] icmp = Frames.icmpEcho(8, id, 1, "virtio-netd tap test".getBytes(StandardCharsets.US_ASCII));
        return Frames.ether(Frames.mac(NS_MAC), Frames.mac(OUR_MAC),
                Frames.ipv4(Frames.ip(OUR_IP), Frames.ip(NS_IP), Frames.PROTO_ICMP, icmp, id));
    }

    static Predicate<byte[]> echoReply(int id) {
        return f -> Frames.isIpv4(f, Frames.PROTO_ICMP) && (f[ETH_HLEN + IP_HLEN] & 0xff) == 0
                && Frames.u16(f, ETH_HLEN + IP_HLEN + 4) == id;
    }

    @Test
    void openProbesTheKernelAndStartsWithNoOffloads() throws IOException {
        String name = NetNs.uniqueLinkName("vnt");
        try (TapBackend b = TapBackend.open(name, true)) {
            assertThat(b.name()).isEqualTo("tap:" + name);
            assertThat(b.device().kernelFlags() & 0xffff)
                    .isEqualTo(IfTun.IFF_TAP | IfTun.IFF_NO_PI | IfTun.IFF_VNET_HDR);
            assertThat(b.device().vnetHeaderSize()).isEqualTo(VirtioNetHeader.LENGTH_MRG);
            // Checksum and TCP offloads are as old as IFF_VNET_HDR (2.6.27): every kernel takes them.
            int base = IfTun.TUN_F_CSUM | IfTun.TUN_F_TSO4 | IfTun.TUN_F_TSO6 | IfTun.TUN_F_TSO_ECN;
            assertThat(b.probedFlags() & base).isEqualTo(base);
            assertThat(b.capabilities()).isEqualTo(
                    TunOffloads.hostFeatures(b.probedFlags()) | TunOffloads.guestFeatures(b.probedFlags()));
            assertThat(b.programmedFlags()).isZero();
            assertThat(b.programmedOffloads()).isEmpty();
            assertThat(b.receiveReadyFd()).isEqualTo(b.device().fd()).isPositive();
            System.out.println("kernel " + System.getProperty("os.version") + " accepted "
                    + TunOffloads.names(b.probedFlags()) + "; capabilities "
                    + VirtioNetFeature.names(b.capabilities()));
        }
        assertThat(Cmd.run("ip", "link", "show", name).exitCode())
                .as("a tap we created disappears when closed").isNotZero();
    }

    @Test
    void noOffloadMeansNoVnetHeaderAndNoCapabilities() throws IOException {
        try (TapBackend b = TapBackend.open(NetNs.uniqueLinkName("vnt"), false)) {
            assertThat(b.vnetHeader()).isFalse();
            assertThat(b.device().kernelFlags() & IfTun.IFF_VNET_HDR).isZero();
            assertThat(b.capabilities()).isZero();
            b.configure(VirtioNetFeature.GUEST_OFFLOADS, VirtioNetHeader.LENGTH_LEGACY);
            assertThat(b.programmedOffloads()).isEmpty();
            assertThat(b.headerLength()).isEqualTo(VirtioNetHeader.LENGTH_LEGACY);
        }
    }

    private static Map<String, Boolean> ethtoolK(String tap) {
        Map<String, Boolean> m = new HashMap<>();
        for (String line : Cmd.check("ethtool", "-k", tap).split("\n")) {
            int c = line.indexOf(':');
            if (c > 0) {
                String v = line.substring(c + 1).trim();
                m.put(line.substring(0, c).trim(), v.startsWith("on"));
            }
        }
        return m;
    }

    private static void assertEthtool(String tap, boolean csum, boolean tso4, boolean tso6, boolean ecn,
            Boolean uso) {
        Map<String, Boolean> k = ethtoolK(tap);
        assertThat(k.get("tx-checksum-ip-generic")).as("tx-checksum-ip-generic " + k).isEqualTo(csum);
        assertThat(k.get("tx-tcp-segmentation")).as("tx-tcp-segmentation").isEqualTo(tso4);
        assertThat(k.get("tx-tcp6-segmentation")).as("tx-tcp6-segmentation").isEqualTo(tso6);
        assertThat(k.get("tx-tcp-ecn-segmentation")).as("tx-tcp-ecn-segmentation").isEqualTo(ecn);
        if (uso != null) {
            assertThat(k.get("tx-udp-segmentation")).as("tx-udp-segmentation").isEqualTo(uso);
        }
    }

    @Test
    void configureProgramsTheTunFlagsTheKernelShows() throws IOException {
        String name = NetNs.uniqueLinkName("vnt");
        try (TapBackend b = TapBackend.open(name, true)) {
            boolean uso = (b.probedFlags() & IfTun.TUN_F_USO4) != 0;
            assertEthtool(name, false, false, false, false, uso ? false : null);

            long csum = VirtioNetFeature.bits(GUEST_CSUM);
            b.configure(csum | VirtioNetFeature.bits(VirtioNetFeature.MRG_RXBUF), 12);
            assertThat(b.programmedOffloads()).containsExactly("TUN_F_CSUM");
            assertEthtool(name, true, false, false, false, uso ? false : null);

            b.configure(csum | VirtioNetFeature.bits(GUEST_TSO4), 12);
            assertThat(b.programmedFlags()).isEqualTo(IfTun.TUN_F_CSUM | IfTun.TUN_F_TSO4);
            assertEthtool(name, true, true, false, false, uso ? false : null);

            b.configure(csum | VirtioNetFeature.bits(GUEST_TSO4, GUEST_TSO6, GUEST_ECN), 10);
            assertThat(b.device().vnetHeaderSize()).isEqualTo(10);
            assertThat(b.programmedOffloads())
                    .containsExactly("TUN_F_CSUM", "TUN_F_TSO4", "TUN_F_TSO6", "TUN_F_TSO_ECN");
            assertEthtool(name, true, true, true, true, uso ? false : null);

            b.configure(VirtioNetFeature.bits(GUEST_TSO4, GUEST_TSO6), 12);
            assertThat(b.programmedFlags()).as("no TSO without GUEST_CSUM").isZero();
            assertEthtool(name, false, false, false, false, uso ? false : null);

            b.configure(VirtioNetFeature.GUEST_OFFLOADS, 12);
            assertThat(b.programmedFlags()).isEqualTo(b.probedFlags());
            assertEthtool(name, true, true, true, true, uso ? true : null);

            b.setGuestOffloads(csum); // VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET
            assertThat(b.programmedOffloads()).containsExactly("TUN_F_CSUM");
            assertEthtool(name, true, false, false, false, uso ? false : null);

            b.setGuestOffloads(0);
            assertThat(b.programmedOffloads()).isEmpty();
            assertEthtool(name, false, false, false, false, uso ? false : null);
        }
    }

    @ParameterizedTest(name = "vnet header {0}")
    @ValueSource(booleans = {true, false})
    void echoRequestSentThroughTheTapIsAnswered(boolean offload) throws IOException {
        try (Rig rig = new Rig(offload)) {
            rig.backend.configure(VirtioNetFeature.bits(VirtioNetFeature.MRG_RXBUF), 12);
            int id = 0x4242;
            assertThat(rig.backend.send(packet(12, echoRequest(id)))).isTrue();
            Received r = awaitFrame(rig.backend, echoReply(id), "ICMP echo reply id " + id);
            assertThat(Frames.l4ChecksumValid(r.frame)).as("ICMP checksum of the reply").isTrue();
            assertThat(r.header).as("no offload acked: zero header (no NEEDS_CSUM, no GSO)")
                    .containsOnly(0);
            assertThat(java.util.Arrays.copyOfRange(r.frame, 0, 6)).isEqualTo(Frames.mac(OUR_MAC));
        }
    }

    @ParameterizedTest(name = "vnet header {0}")
    @ValueSource(booleans = {true, false})
    @SuppressWarnings("try") // the ping process only has to run while we wait
    void pingFromTheNamespaceIsReceived(boolean offload) throws IOException {
        try (Rig rig = new Rig(offload);
             Spawned ping = rig.ns.spawn("ping", "busybox", "ping", "-c", "5", OUR_IP)) {
            rig.backend.configure(0, 10);
            Received r = awaitFrame(rig.backend, f -> Frames.isIpv4(f, Frames.PROTO_ICMP)
                    && (f[ETH_HLEN + IP_HLEN] & 0xff) == 8, "ICMP echo request from ping in " + rig.ns.name());
            assertThat(r.header).hasSize(10).containsOnly(0);
            assertThat(Frames.l4ChecksumValid(r.frame)).isTrue();
            assertThat(java.util.Arrays.copyOfRange(r.frame, ETH_HLEN + 12, ETH_HLEN + 20))
                    .isEqualTo(concat(Frames.ip(NS_IP), Frames.ip(OUR_IP)));
        }
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] r = new byte[a.length + b.length];
        System.arraycopy(a, 0, r, 0, a.length);
        System.arraycopy(b, 0, r, a.length, b.length);
        return r;
    }

    private static final String UDP_LISTENER = String.join("\n",
            "import socket, sys",
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
            "s.bind((sys.argv[1], int(sys.argv[2])))",
            "s.settimeout(5)",
            "print('ready', flush=True)",
            "try:",
            "    while True:",
            "        d, a = s.recvfrom(65535)",
            "        print('got ' + d.decode(errors='replace'), flush=True)",
            "        if d.startswith(b'good'):",
            "            break",
            "except socket.timeout:",
            "    print('timeout', flush=True)");

    @Test
    void kernelCompletesAPartialUdpChecksumAndDropsABadOne() throws IOException {
        try (Rig rig = new Rig(true);
             Spawned listener = rig.ns.spawn("udp-listener", "python3", "-c", UDP_LISTENER, NS_IP, "9000")) {
            rig.backend.configure(VirtioNetFeature.bits(VirtioNetFeature.CSUM, VirtioNetFeature.MRG_RXBUF), 12);
            listener.next("ready"::equals, "ready line", WAIT);
            byte[] src = Frames.ip(OUR_IP);
            byte[] dst = Frames.ip(NS_IP);

            // Control: a wrong checksum without NEEDS_CSUM must be dropped by the kernel.
            byte[] bad = Frames.udp(src, dst, 40000, 9000, "bad checksum".getBytes(), Frames.Csum.BAD);
            assertThat(rig.backend.send(packet(12, Frames.ether(Frames.mac(NS_MAC), Frames.mac(OUR_MAC),
                    Frames.ipv4(src, dst, Frames.PROTO_UDP, bad, 1))))).isTrue();

            // NEEDS_CSUM: only the pseudo-header sum in the field; csum_start at the UDP header, offset 6.
            byte[] good = Frames.udp(src, dst, 40000, 9000, "good partial".getBytes(), Frames.Csum.PSEUDO_ONLY);
            Packet p = packet(12, Frames.ether(Frames.mac(NS_MAC), Frames.mac(OUR_MAC),
                    Frames.ipv4(src, dst, Frames.PROTO_UDP, good, 2)));
            p.header().flags(VirtioNetHeader.F_NEEDS_CSUM).csumStart(ETH_HLEN + IP_HLEN).csumOffset(6);
            assertThat(rig.backend.send(p)).isTrue();

            String line = listener.next(l -> l.startsWith("got") || l.equals("timeout"), "datagram", WAIT);
            assertThat(line).as("first datagram delivered (lines: " + listener.lines() + ")")
                    .isEqualTo("got good partial");
        }
    }

    private static final String UDP_SENDER = "import socket, sys\n"
            + "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            + "s.sendto(b'y' * 300, (sys.argv[1], 9001))\n";

    @Test
    void guestCsumLetsTheKernelHandUsPartialChecksumsAndOnlyThen() throws IOException {
        try (Rig rig = new Rig(true)) {
            Predicate<byte[]> udp9001 = f -> Frames.isIpv4(f, Frames.PROTO_UDP)
                    && Frames.u16(f, ETH_HLEN + IP_HLEN + 2) == 9001;

            rig.backend.configure(VirtioNetFeature.bits(GUEST_CSUM, VirtioNetFeature.MRG_RXBUF), 12);
            rig.ns.exec("python3", "-c", UDP_SENDER, OUR_IP);
            Received partial = awaitFrame(rig.backend, udp9001, "UDP to port 9001");
            VirtioNetHeader h = partial.vnet();
            assertThat(h.flags() & VirtioNetHeader.F_NEEDS_CSUM).as(h.toString()).isNotZero();
            assertThat(h.csumStart()).isEqualTo(ETH_HLEN + IP_HLEN);
            assertThat(h.csumOffset()).isEqualTo(6);

            rig.backend.configure(VirtioNetFeature.bits(VirtioNetFeature.MRG_RXBUF), 12);
            rig.ns.exec("python3", "-c", UDP_SENDER, OUR_IP);
            Received complete = awaitFrame(rig.backend, udp9001, "UDP to port 9001");
            assertThat(complete.vnet().flags() & VirtioNetHeader.F_NEEDS_CSUM)
                    .as("GUEST_CSUM not acked: " + complete.vnet()).isZero();
            assertThat(Frames.l4ChecksumValid(complete.frame)).as("checksum completed by the kernel").isTrue();
        }
    }

    /** Writes frames {@code first .. first+count-1} into the tap from the namespace's side (AF_PACKET). */
    static void inject(NetNs ns, String tap, int first, int count) {
        ns.exec("python3", "-c", String.join("\n",
                "import socket, sys",
                "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
                "s.bind((sys.argv[1], 0))",
                "first, count = int(sys.argv[2]), int(sys.argv[3])",
                "for i in range(first, first + count):",
                "    s.send(b'\\xff' * 6 + s.getsockname()[4] + b'\\x88\\xb5' + i.to_bytes(2, 'big') + bytes(44))"),
                tap, Integer.toString(first), Integer.toString(count));
    }

    /** A frame {@link #inject} wrote: EtherType 0x88b5. */
    static boolean injected(byte[] f) {
        return f.length >= 16 && Frames.u16(f, 12) == 0x88b5;
    }

    /** The number {@link #inject} gave the frame. */
    static int injectedNumber(byte[] f) {
        return Frames.u16(f, 14);
    }

    /**
     * What the tap queued while nothing read it (a device no driver runs) is read out and dropped, at most as many
     * frames as asked for, and what comes afterwards is received.
     */
    @ParameterizedTest(name = "vnet header {0}")
    @ValueSource(booleans = {true, false})
    void framesQueuedWhileNothingReadAreDiscardedAndLaterOnesReceived(boolean offload) throws IOException {
        try (Rig rig = new Rig(offload)) {
            rig.backend.configure(VirtioNetFeature.bits(VirtioNetFeature.MRG_RXBUF), 12);
            inject(rig.ns, rig.tap, 1, 10);
            assertThat(rig.backend.discardQueued(4)).as("frames dropped, limit 4, 10 queued").isEqualTo(4);
            Received fifth = awaitFrame(rig.backend, TapBackendTest::injected, "injected frame 5");
            assertThat(injectedNumber(fifth.frame)).as("the first frame past the limit").isEqualTo(5);
            assertThat(rig.backend.discardQueued(4096)).as("frames dropped, 5 left").isGreaterThanOrEqualTo(5);
            assertThat(rig.backend.peekLength()).as("peekLength after the tap was emptied").isZero();
            assertThat(rig.backend.discardQueued(4096)).as("frames dropped from an empty tap").isZero();
            inject(rig.ns, rig.tap, 100, 1);
            Received next = awaitFrame(rig.backend, TapBackendTest::injected, "injected frame 100");
            assertThat(injectedNumber(next.frame)).as("the frame injected after the drop").isEqualTo(100);
        }
    }

    @Test
    void severalQueuesAttachToOneMultiQueueTap() throws IOException {
        String name = NetNs.uniqueLinkName("vnt");
        List<TapBackend> qs = TapBackend.openQueues(name, 2, true);
        try (NetNs ns = NetNs.createWithoutIpv6()) {
            assertThat(qs).hasSize(2);
            for (TapBackend q : qs) {
                assertThat(q.device().kernelFlags() & IfTun.IFF_MULTI_QUEUE).isNotZero();
                assertThat(q.name()).isEqualTo("tap:" + name);
                q.configure(VirtioNetFeature.bits(VirtioNetFeature.MRG_RXBUF), 12);
            }
            assertThat(qs.get(0).device().fd()).isNotEqualTo(qs.get(1).device().fd());
            ns.adopt(name, NS_MAC, NS_IP + "/24");
            ns.neighbour(OUR_IP, OUR_MAC, name);
            for (int i = 0; i < 2; i++) {
                assertThat(qs.get(i).send(packet(12, echoRequest(0x100 + i)))).isTrue();
            }
            // Replies come back on whichever queue the kernel's flow hash picks: look at both.
            boolean[] got = new boolean[2];
            long deadline = System.nanoTime() + WAIT.toNanos();
            ByteBuffer buf = ByteBuffer.allocateDirect(StagedFrame.CAPACITY);
            while ((!got[0] || !got[1]) && System.nanoTime() < deadline) {
                boolean any = false;
                for (TapBackend q : qs) {
                    buf.clear();
                    int n = q.receive(new ByteBuffer[] {buf}, 1);
                    if (n > 0) {
                        any = true;
                        byte[] f = new byte[n - 12];
                        buf.flip().position(12);
                        buf.get(f);
                        for (int i = 0; i < 2; i++) {
                            got[i] |= echoReply(0x100 + i).test(f);
                        }
                    }
                }
                if (!any) {
                    LockSupport.parkNanos(2_000_000);
                }
            }
            assertThat(got).as("echo replies for both queues' requests").containsOnly(true);
        } finally {
            qs.forEach(TapBackend::close);
        }
    }

    /**
     * HOST_TSO4 / HOST_USO: a 4000-byte GSO frame with gso_size 1000 written to the tap is forwarded by the
     * namespace to a veth whose segmentation offloads are off, so the kernel segments it in software; tcpdump on
     * that veth sees the segments.
     */
    @ParameterizedTest(name = "gso_type {0}")
    @ValueSource(ints = {VirtioNetHeader.GSO_TCPV4, VirtioNetHeader.GSO_UDP_L4})
    void kernelSegmentsAGsoFrameWrittenToTheTap(int gsoType) throws IOException {
        try (Rig rig = new Rig(true); NetNs far = NetNs.createWithoutIpv6()) {
            boolean tcp = gsoType == VirtioNetHeader.GSO_TCPV4;
            assertThat(rig.backend.capabilities() & VirtioNetFeature.bits(
                    tcp ? VirtioNetFeature.HOST_TSO4 : VirtioNetFeature.HOST_USO)).isNotZero();
            rig.backend.configure(VirtioNetFeature.bits(VirtioNetFeature.CSUM, VirtioNetFeature.HOST_TSO4,
                    VirtioNetFeature.HOST_USO, VirtioNetFeature.MRG_RXBUF), 12);
            rig.ns.ip("link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns", far.name());
            rig.ns.ip("addr", "add", "10.78.0.1/24", "dev", "vA");
            rig.ns.ip("link", "set", "vA", "up");
            far.ip("link", "set", "vB", "address", "02:00:00:00:01:02");
            far.ip("addr", "add", "10.78.0.2/24", "dev", "vB");
            far.ip("link", "set", "vB", "up");
            rig.ns.neighbour("10.78.0.2", "02:00:00:00:01:02", "vA");
            rig.ns.exec("sysctl", "-qw", "net.ipv4.ip_forward=1");
            rig.ns.exec("ethtool", "-K", "vA", "tso", "off", "tx-udp-segmentation", "off");

            try (Spawned dump = rig.ns.spawn("tcpdump", "tcpdump", "-i", "vA", "-nn", "-l", "-c", "4",
                    "-Q", "out", "host", "10.78.0.2")) {
                dump.next(l -> l.contains("listening on"), "tcpdump start", WAIT);
                byte[] src = Frames.ip(OUR_IP);
                byte[] dst = Frames.ip("10.78.0.2");
                byte[] payload = new byte[4000];
                for (int i = 0; i < payload.length; i++) {
                    payload[i] = (byte) i;
                }
                byte[] l4 = tcp ? Frames.tcp(src, dst, 40000, 5001, 1000, payload, Frames.Csum.PSEUDO_ONLY)
                        : Frames.udp(src, dst, 40000, 5001, payload, Frames.Csum.PSEUDO_ONLY);
                int l4hdr = tcp ? 20 : 8;
                Packet p = packet(12, Frames.ether(Frames.mac(NS_MAC), Frames.mac(OUR_MAC),
                        Frames.ipv4(src, dst, tcp ? Frames.PROTO_TCP : Frames.PROTO_UDP, l4, 7)));
                p.header().flags(VirtioNetHeader.F_NEEDS_CSUM).gsoType(gsoType).gsoSize(1000)
                        .hdrLen(ETH_HLEN + IP_HLEN + l4hdr).csumStart(ETH_HLEN + IP_HLEN)
                        .csumOffset(tcp ? 16 : 6);
                assertThat(rig.backend.send(p)).isTrue();

                List<String> segments = new ArrayList<>();
                for (int i = 0; i < 4; i++) {
                    segments.add(dump.next(l -> l.contains(" > 10.78.0.2.5001"), "segment " + (i + 1), WAIT));
                }
                assertThat(segments).as("tcpdump lines " + dump.lines())
                        .allMatch(l -> l.endsWith("length 1000"));
            }
        }
    }
}
