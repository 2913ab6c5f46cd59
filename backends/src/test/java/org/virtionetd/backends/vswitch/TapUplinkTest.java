package org.virtionetd.backends.vswitch;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.virtionetd.backends.offload.TestFrames;
import org.virtionetd.backends.tap.BackendSpec;
import org.virtionetd.virtio.net.VirtioNetHeader;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Predicate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A tap uplink on a switch against the real kernel (root): the test thread plays a guest on a raw switch port, the
 * uplink's tap is moved into a namespace created here with an address, and the kernel there is the judge: it
 * answers pings through the switch, accepts a UDP datagram sent with a partial checksum only if the uplink gave it
 * what it can take (metadata for a tap with a vnet header, a completed checksum for one without), counts no TCP
 * checksum error for a 64 KiB TSO frame (passed whole, or segmented in software), and its own frames reach the
 * guest's port with valid checksums.
 */
class TapUplinkTest {
    private static final AtomicInteger SEQ = new AtomicInteger();
    private static final String RUN = Long.toString(ProcessHandle.current().pid() % 100000, 36);
    private static final Duration WAIT = Duration.ofSeconds(10);
    static final byte[] GUEST_MAC = {0x52, 0x54, 0, 0, 0, 0x02};
    static final byte[] HOST_MAC = {0x02, 0, 0, 0, 0, 0x01};
    static final byte[] GUEST_IP = {10, 77, 0, 2};
    static final byte[] HOST_IP = {10, 77, 0, 1};

    private final List<AutoCloseable> open = new ArrayList<>();

    @AfterEach
    void closeAll() throws Exception {
        for (int i = open.size() - 1; i >= 0; i--) {
            open.get(i).close();
        }
    }

    /** A switch with a raw guest port (accepting {@code guestOffloads}) and an uplink tap in a fresh namespace. */
    private final class Rig {
        final String tap = NetNs.uniqueLinkName("vnu");
        final VirtualSwitch sw = VirtualSwitch.named("u" + SEQ.incrementAndGet() + "-" + RUN);
        final SwitchPort guest;
        final TapUplink uplink;
        final NetNs ns;

        Rig(boolean vnetHeader, long guestOffloads) throws Exception {
            ns = NetNs.createWithoutIpv6();
            open.add(ns);
            guest = L2.rawPort(sw, "g", VlanSet.ALL, guestOffloads);
            open.add(guest::close);
            BackendSpec spec = BackendSpec.parse("tap:" + tap);
            uplink = sw.uplink(vnetHeader ? spec : spec.withoutOffload());
            open.add(uplink::close);
            ns.adopt(tap, "02:00:00:00:00:01", "10.77.0.1/24");
            ns.neighbour("10.77.0.2", "52:54:00:00:00:02", tap);
        }

        long snmp(String proto, String field) {
            return ns.snmp(proto, field);
        }

        /** Sends a frame from the guest port with header fields (flags, gso_type, hdr_len, gso_size, start, off). */
        void send(byte[] frame, int... header) {
            assertThat(L2.send(guest, frame, header)).as("switch took the guest's frame").isTrue();
        }

        /** Waits (bounded) for a frame at the guest port that {@code wanted} accepts; returns {header, frame}. */
        byte[][] await(String what, Predicate<byte[]> wanted) {
            long deadline = System.nanoTime() + WAIT.toNanos();
            List<String> seen = new ArrayList<>();
            while (System.nanoTime() < deadline) {
                for (byte[][] f : L2.drain(guest)) {
                    if (wanted.test(f[1])) {
                        return f;
                    }
                    seen.add(f[1].length + " bytes type " + Integer.toHexString(u16(f[1], 12)));
                }
                LockSupport.parkNanos(1_000_000);
            }
            throw new AssertionError("no " + what + " at the guest port within " + WAIT + "; frames seen: " + seen
                    + "; uplink port " + uplink.port().counters().snapshot() + ", from tap " + uplink.fromTap.sum());
        }
    }

    @ParameterizedTest(name = "vnet header {0}")
    @ValueSource(booleans = {true, false})
    void theHostAnswersAGuestsPingThroughTheSwitch(boolean vnetHeader) throws Exception {
        Rig r = new Rig(vnetHeader, 0);
        r.send(icmpEcho(77, 1));
        byte[][] reply = r.await("ICMP echo reply", f -> isIcmpReply(f, 77));
        assertThat(Arrays.copyOfRange(reply[1], 0, 6)).isEqualTo(GUEST_MAC);
        assertThat(reply[0][0]).as("reply header flags (the guest accepted no offload)").isZero();
        assertThat(r.uplink.toTap.sum()).isEqualTo(1);
        assertThat(r.sw.learnedAddresses()).as("guest and host MACs learned").isEqualTo(2);
        // Learned now: the second ping is unicast both ways, nothing flooded.
        long flooded = r.uplink.port().counters().txFlooded.sum();
        r.send(icmpEcho(77, 2));
        r.await("second ICMP echo reply", f -> isIcmpReply(f, 77) && u16(f, 14 + 20 + 6) == 2);
        assertThat(r.uplink.port().counters().txFlooded.sum()).isEqualTo(flooded);
    }

    @ParameterizedTest(name = "vnet header {0}")
    @ValueSource(booleans = {true, false})
    void aUdpDatagramWithAPartialChecksumReachesAListenerOnTheHost(boolean vnetHeader) throws Exception {
        Rig r = new Rig(vnetHeader, 0);
        Spawned listener = r.ns.spawn("udp-listener", "python3", "-u", "-c",
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('10.77.0.1',9000))\n"
                        + "print('READY',flush=True)\nd,a=s.recvfrom(65535)\nprint('GOT',len(d),d[:4].hex(),flush=True)\n");
        open.add(listener);
        awaitLine(listener, "READY");
        long csumErrors = r.snmp("Udp", "InCsumErrors");
        byte[] f = udp(GUEST_IP, HOST_IP, 9001, 9000, 1000, true);
        // NEEDS_CSUM at the UDP header (csum_start 34, csum_offset 6): the field holds only the pseudo-header sum.
        r.send(f, VirtioNetHeader.F_NEEDS_CSUM, 0, 0, 0, 34, 6);
        String got = awaitLine(listener, "GOT");
        assertThat(got).isEqualTo("GOT 1000 " + hex(f, 42, 46));
        assertThat(r.snmp("Udp", "InCsumErrors")).isEqualTo(csumErrors);
        if (vnetHeader) {
            assertThat(r.uplink.offloadCounters().txPassedThrough.sum()).as("metadata went to the kernel").isEqualTo(1);
        } else {
            assertThat(r.uplink.offloadCounters().txChecksumsCompleted.sum()).as("checksum done in software")
                    .isEqualTo(1);
        }
    }

    @ParameterizedTest(name = "vnet header {0}")
    @ValueSource(booleans = {true, false})
    void aTsoFrameReachesTheHostWithoutChecksumErrors(boolean vnetHeader) throws Exception {
        Rig r = new Rig(vnetHeader, 0);
        long csumErrors = r.snmp("Tcp", "InCsumErrors");
        long inSegs = r.snmp("Tcp", "InSegs");
        int mss = 1448;
        int payload = 20 * mss;
        byte[] f = tcp(GUEST_IP, HOST_IP, 40000, 9, payload);
        r.send(f, VirtioNetHeader.F_NEEDS_CSUM, VirtioNetHeader.GSO_TCPV4, 54, mss, 34, 16);
        // Nobody listens on port 9: the kernel answers every valid segment with a RST, and counts it in InSegs.
        Predicate<byte[]> rst = x -> x.length >= 54 && u16(x, 12) == 0x0800 && x[23] == 6
                && (x[47] & 0x04) != 0;
        r.await("TCP RST from the host", rst);
        assertThat(r.snmp("Tcp", "InCsumErrors")).as("TcpInCsumErrors added on the host").isEqualTo(csumErrors);
        assertThat(r.snmp("Tcp", "InSegs") - inSegs).as("TCP segments the host took in").isPositive();
        if (vnetHeader) {
            assertThat(r.uplink.offloadCounters().txPassedThrough.sum()).as("the GSO frame went whole").isEqualTo(1);
            assertThat(r.uplink.toTap.sum()).isEqualTo(1);
        } else {
            assertThat(r.uplink.offloadCounters().txPacketsSegmented.sum()).isEqualTo(1);
            assertThat(r.uplink.offloadCounters().txSegmentsMade.sum()).isEqualTo(20);
            assertThat(r.uplink.toTap.sum()).as("one frame left the switch (in 20 segments)").isEqualTo(1);
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (r.snmp("Tcp", "InSegs") - inSegs < 20 && System.nanoTime() < deadline) {
                LockSupport.parkNanos(20_000_000);
            }
            assertThat(r.snmp("Tcp", "InSegs") - inSegs).as("segments the host took in").isGreaterThanOrEqualTo(20);
            assertThat(r.snmp("Tcp", "InCsumErrors")).as("TcpInCsumErrors after all segments").isEqualTo(csumErrors);
        }
        assertThat(r.uplink.toTapDropped.sum()).isZero();
    }

    @ParameterizedTest(name = "vnet header {0}")
    @ValueSource(booleans = {true, false})
    void theHostsUdpReachesTheGuestWithAValidChecksum(boolean vnetHeader) throws Exception {
        Rig r = new Rig(vnetHeader, 0);
        r.ns.exec("python3", "-c", "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                + "s.sendto(bytes(range(256))*4,('10.77.0.2',9002))\n");
        byte[][] got = r.await("the host's UDP datagram", x -> x.length >= 42 && u16(x, 12) == 0x0800
                && x[23] == 17 && u16(x, 36) == 9002);
        byte[] frame = got[1];
        assertThat(got[0][0]).as("header flags (the guest accepted no offload)").isZero();
        assertThat(frame.length).isEqualTo(14 + 20 + 8 + 1024);
        assertThat(TestFrames.l4ChecksumOk(frame, 14, 4, 17, 34, frame.length))
                .as("UDP checksum of the delivered frame").isTrue();
        assertThat(r.uplink.fromTap.sum()).isPositive();
    }

    @Test
    void aSwitchHasOneUplink() throws Exception {
        Rig r = new Rig(true, 0);
        assertThat(r.sw.uplink(BackendSpec.parse("tap:" + r.tap))).as("the same tap again").isSameAs(r.uplink);
        assertThatThrownBy(() -> r.sw.uplink(BackendSpec.parse("tap:other0")))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("already has the uplink");
        assertThatThrownBy(() -> r.sw.uplink(BackendSpec.parse("tap:" + r.tap).withoutOffload()))
                .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void theUplinkGoesWithTheLastDevicePort() throws Exception {
        Rig r = new Rig(true, 0);
        Thread t = Thread.getAllStackTraces().keySet().stream()
                .filter(x -> x.getName().equals("uplink-" + r.sw.name() + "-" + r.tap)).findFirst().orElseThrow();
        r.guest.close();
        assertThat(r.sw.uplink()).isNull();
        assertThat(r.sw.ports()).isEmpty();
        t.join(5000);
        assertThat(t.isAlive()).as("uplink thread ended").isFalse();
    }

    @Test
    void specParsesTheUplink() {
        SwitchSpec s = SwitchSpec.parse("switch:sw0,port=a,uplink=tap:up0");
        assertThat(s.uplink().tapName()).isEqualTo("up0");
        assertThat(s.uplink().offload()).isTrue();
        assertThat(s.toString()).isEqualTo("switch:sw0,port=a,uplink=tap:up0");
        SwitchSpec n = SwitchSpec.parse("switch:sw0,uplink=tap:up0,uplink-no-offload");
        assertThat(n.uplink().offload()).isFalse();
        assertThat(n.withoutOffload().uplink().offload()).as("--no-offload is about the device's port").isFalse();
        assertThat(SwitchSpec.parse("vale0:1,uplink=tap3").uplink().tapName()).isEqualTo("tap3");
        assertThatThrownBy(() -> SwitchSpec.parse("switch:sw0,uplink-no-offload"))
                .hasMessageContaining("uplink-no-offload without uplink=tap:NAME");
        assertThatThrownBy(() -> SwitchSpec.parse("switch:sw0,uplink=eth0"))
                .hasMessageContaining("uplink: ").hasMessageContaining("eth0");
        assertThatThrownBy(() -> SwitchSpec.parse("switch:sw0,uplink=tap:muchtoolongname0"))
                .hasMessageContaining("at most 15");
    }

    // ------------------------------------------------------------------ frames

    /** Ethernet + IPv4 header (checksum set) for {@code l4Length} bytes of protocol {@code proto}. */
    static byte[] ipv4(byte[] src, byte[] dst, int proto, int l4Length) {
        byte[] f = new byte[14 + 20 + l4Length];
        System.arraycopy(HOST_MAC, 0, f, 0, 6);
        System.arraycopy(GUEST_MAC, 0, f, 6, 6);
        f[12] = 0x08;
        f[14] = 0x45;
        put16(f, 16, 20 + l4Length);
        put16(f, 20, 0x4000);
        f[22] = 64;
        f[23] = (byte) proto;
        System.arraycopy(src, 0, f, 26, 4);
        System.arraycopy(dst, 0, f, 30, 4);
        put16(f, 24, ~TestFrames.naiveSum(f, 14, 20) & 0xffff);
        return f;
    }

    static byte[] icmpEcho(int id, int seq) {
        byte[] f = ipv4(GUEST_IP, HOST_IP, 1, 8 + 56);
        f[34] = 8;
        put16(f, 38, id);
        put16(f, 40, seq);
        for (int i = 42; i < f.length; i++) {
            f[i] = (byte) i;
        }
        put16(f, 36, ~TestFrames.naiveSum(f, 34, f.length - 34) & 0xffff);
        return f;
    }

    static boolean isIcmpReply(byte[] f, int id) {
        return f.length >= 42 && u16(f, 12) == 0x0800 && f[23] == 1 && f[34] == 0
                && u16(f, 38) == id;
    }

    /** UDP/IPv4; {@code partial}: the checksum field holds the pseudo-header sum only (NEEDS_CSUM). */
    static byte[] udp(byte[] src, byte[] dst, int sport, int dport, int payload, boolean partial) {
        byte[] f = ipv4(src, dst, 17, 8 + payload);
        put16(f, 34, sport);
        put16(f, 36, dport);
        put16(f, 38, 8 + payload);
        for (int i = 42; i < f.length; i++) {
            f[i] = (byte) (i * 7);
        }
        put16(f, 40, partial ? pseudo(f, 14, 17, 8 + payload)
                : ~TestFrames.naiveSum(f, 34, f.length - 34) & 0xffff);
        return f;
    }

    /** TCP/IPv4 ACK|PSH with {@code payload} bytes; the checksum field holds the pseudo-header sum (partial). */
    static byte[] tcp(byte[] src, byte[] dst, int sport, int dport, int payload) {
        byte[] f = ipv4(src, dst, 6, 20 + payload);
        put16(f, 34, sport);
        put16(f, 36, dport);
        put16(f, 38, 0x1234);
        put16(f, 42, 0x5678);
        f[46] = 0x50;
        f[47] = 0x18;
        put16(f, 48, 65535);
        for (int i = 54; i < f.length; i++) {
            f[i] = (byte) (i * 13);
        }
        put16(f, 50, pseudo(f, 14, 6, 20 + payload));
        return f;
    }

    static int u16(byte[] b, int i) {
        return ((b[i] & 0xff) << 8) | (b[i + 1] & 0xff);
    }

    /** The IPv4 pseudo-header sum (not complemented) for {@code l4Length} bytes of {@code proto}: a partial checksum. */
    static int pseudo(byte[] f, int l3, int proto, int l4Length) {
        long s = u16(f, l3 + 12) + u16(f, l3 + 14) + u16(f, l3 + 16) + u16(f, l3 + 18) + proto + l4Length;
        while ((s >>> 16) != 0) {
            s = (s & 0xffff) + (s >>> 16);
        }
        return (int) s;
    }

    static void put16(byte[] b, int i, int v) {
        b[i] = (byte) (v >>> 8);
        b[i + 1] = (byte) v;
    }

    static String hex(byte[] b, int from, int to) {
        StringBuilder sb = new StringBuilder();
        for (int i = from; i < to; i++) {
            sb.append(String.format("%02x", b[i]));
        }
        return sb.toString();
    }

    /** Waits (bounded) for a line starting with {@code prefix} in a process's output. */
    static String awaitLine(Spawned p, String prefix) {
        return p.awaitLine(l -> l.startsWith(prefix), "'" + prefix + "...'", WAIT);
    }
}
