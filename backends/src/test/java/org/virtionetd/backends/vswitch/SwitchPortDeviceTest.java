package org.virtionetd.backends.vswitch;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.backends.offload.TestFrames;
import org.virtionetd.virtio.net.VirtioNetDevice;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.VirtioNetCtrl;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.backends.vswitch.L2.*;
import static org.virtionetd.virtio.net.VirtioNetFeature.*;

/**
 * Two (or three) virtio-net devices on one switch, each driven by the spec-driven test driver in its own guest
 * memory: the metadata of a GSO frame with a partial checksum crosses the switch unchanged to a driver that accepted
 * it, and is turned into correct plain frames (checked by the offload tests' independent verifier) for one that
 * did not.
 */
class SwitchPortDeviceTest {
    private static final AtomicInteger SEQ = new AtomicInteger();
    private static final int MSS = 1448;
    private static final long NO_GUEST_GSO = bits(GUEST_TSO4, GUEST_TSO6, GUEST_UFO, GUEST_USO4, GUEST_USO6, GUEST_ECN);

    private final VirtualSwitch sw = VirtualSwitch.named("d" + SEQ.incrementAndGet() + "-" + ProcessHandle.current().pid());
    private final List<Guest> guests = new ArrayList<>();

    /** A device on a switch port, its driver and its guest memory. */
    final class Guest implements AutoCloseable {
        final SwitchPort port;
        final NetFixture fixture;
        final VirtioNetDevice device;
        final VirtioNetDriver driver;

        Guest(String name, VirtioNetDriver.Options options) throws Exception {
            port = sw.attach(name, VlanSet.ALL, true);
            fixture = NetFixture.builder().backend(p -> port).options(options).start();
            device = fixture.device;
            driver = fixture.driver;
        }

        void send(NetHeaderFields h, byte[] frame) {
            driver.awaitTransmitted(0, driver.transmit(0, h, frame, VirtioNetDriver.TxShape.simple().framePieces(3)));
        }

        @Override
        public void close() {
            fixture.close();
        }
    }

    private Guest guest(String name, VirtioNetDriver.Options options) throws Exception {
        Guest g = new Guest(name, options);
        guests.add(g);
        return g;
    }

    @AfterEach
    void close() {
        guests.forEach(Guest::close);
    }

    private static VirtioNetDriver.Options linux() {
        return new VirtioNetDriver.Options();
    }

    /** A 60 000-byte TCP/IPv4 GSO frame from mac(1) to mac(2), checksum field holding the pseudo-header sum. */
    private static byte[] bigTcp(Random rnd) {
        byte[] f = TestFrames.build(rnd, 0, 4, 0, 0, TestFrames.L4_TCP, 0, 60_000, 0x18).frame;
        putMac(f, 0, mac(2));
        putMac(f, 6, mac(1));
        return f;
    }

    private static NetHeaderFields tso4() {
        return NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, MSS, 54, 34, 16);
    }

    /** B learns A and A learns B: a broadcast each way. */
    private static void introduce(Guest a, Guest b) {
        a.send(NetHeaderFields.none(), frame(BROADCAST, mac(1), -1, 46, 1));
        b.driver.awaitPackets(0, 1);
        b.send(NetHeaderFields.none(), frame(BROADCAST, mac(2), -1, 46, 2));
        a.driver.awaitPackets(0, 1);
    }

    @Test
    void devicesLearnEachOtherThroughTheSwitch() throws Exception {
        Guest a = guest("a", linux()), b = guest("b", linux());
        SwitchPort watcher = rawPort(sw, "watch", VlanSet.ALL, 0);
        try {
            introduce(a, b);
            assertThat(drain(watcher)).as("both broadcasts flooded to the third port").hasSize(2);
            byte[] f = frame(mac(2), mac(1), -1, 500, 3);
            a.send(NetHeaderFields.none(), f);
            List<ReceivedPacket> got = b.driver.awaitPackets(0, 1);
            assertThat(got.get(0).frame()).isEqualTo(f);
            assertThat(got.get(0).header().flags()).isZero();
            assertThat(drain(watcher)).as("learned unicast is not flooded").isEmpty();
            assertThat(a.port.counters().snapshot()).containsEntry("tx_frames", 2L).containsEntry("tx_unicast", 1L);
            assertThat(a.device.counters(0).snapshot()).containsEntry("tx_packets", 2L);
        } finally {
            watcher.close();
        }
    }

    /**
     * The switch goes on forwarding to a port whose device was reset (a rebooting or departed guest): what queued
     * in its ring then never reaches the driver that starts the device again; what comes afterwards does.
     */
    @Test
    void framesSwitchedToAPortWhileItsDeviceWasResetAreDroppedWhenADriverStartsItAgain() throws Exception {
        Guest a = guest("a", linux()), b = guest("b", linux());
        introduce(a, b);
        b.device.setStatus(0);
        for (int i = 0; i < 5; i++) {
            a.send(NetHeaderFields.none(), frame(mac(2), mac(1), -1, 100, 10 + i));
        }
        assertThat(b.port.queued()).as("frames waiting in the port of the reset device").isEqualTo(5);
        VirtioNetDriver next = new VirtioNetDriver(b.device, b.driver.allocator(), linux());
        try {
            next.start();
            assertThat(b.port.queued()).as("frames waiting in the port after the start").isZero();
            byte[] fresh = frame(mac(2), mac(1), -1, 100, 99);
            a.send(NetHeaderFields.none(), fresh);
            assertThat(next.awaitPackets(0, 1).get(0).frame()).as("first frame the new driver gets").isEqualTo(fresh);
            assertThat(b.device.counters(0).snapshot()).containsEntry("rx_dropped_stale", 5L);
        } finally {
            next.close();
        }
    }

    @Test
    void aGsoFrameReachesADriverThatAcceptedGuestTso4AsItIs() throws Exception {
        Guest a = guest("a", linux()), b = guest("b", linux());
        assertThat(b.driver.negotiatedFeatures() & bits(GUEST_TSO4, GUEST_CSUM)).isEqualTo(bits(GUEST_TSO4, GUEST_CSUM));
        introduce(a, b);
        byte[] f = bigTcp(new Random(11));
        a.send(tso4(), f);
        List<ReceivedPacket> got = b.driver.awaitPackets(0, 1);
        ReceivedPacket p = got.get(0);
        assertThat(p.frame()).as("one 60 KiB frame, byte for byte").isEqualTo(f);
        NetHeaderFields h = p.header();
        assertThat(h.flags()).isEqualTo(NetHeaderFields.F_NEEDS_CSUM);
        assertThat(h.gsoType()).isEqualTo(NetHeaderFields.GSO_TCPV4);
        assertThat(h.gsoSize()).isEqualTo(MSS);
        assertThat(h.hdrLen()).isEqualTo(54);
        assertThat(h.csumStart()).isEqualTo(34);
        assertThat(h.csumOffset()).isEqualTo(16);
        assertThat(b.port.counters().snapshot()).containsEntry("rx_passed_through", 2L)
                .containsEntry("rx_packets_segmented", 0L);
    }

    @Test
    void aGsoFrameIsSegmentedWithValidChecksumsForADriverWithoutGuestTso() throws Exception {
        Guest a = guest("a", linux()), b = guest("b", linux().without(GUEST_TSO4, GUEST_TSO6, GUEST_UFO, GUEST_USO4,
                GUEST_USO6, GUEST_ECN));
        assertThat(b.driver.negotiatedFeatures() & NO_GUEST_GSO).isZero();
        introduce(a, b);
        byte[] f = bigTcp(new Random(12));
        a.send(tso4(), f);
        int segments = (60_000 + MSS - 1) / MSS;
        List<ReceivedPacket> got = b.driver.awaitPackets(0, segments);
        assertThat(got).hasSize(segments);
        assertSegmentsOf(f, got);
        assertThat(b.port.counters().snapshot()).containsEntry("rx_packets_segmented", 1L)
                .containsEntry("rx_segments_made", (long) segments);
        assertThat(b.device.counters(0).snapshot()).containsEntry("rx_bad_offload", 0L);
    }

    @Test
    void aPartialChecksumIsCompletedForADriverWithoutGuestCsum() throws Exception {
        Guest a = guest("a", linux()), b = guest("b", linux().without(GUEST_CSUM));
        assertThat(b.driver.negotiatedFeatures() & (NO_GUEST_GSO | bits(GUEST_CSUM))).isZero();
        introduce(a, b);
        byte[] f = TestFrames.build(new Random(13), 0, 4, 0, 0, TestFrames.L4_TCP, 0, 1000, 0x18).frame;
        putMac(f, 0, mac(2));
        putMac(f, 6, mac(1));
        a.send(NetHeaderFields.partialCsum(34, 16), f);
        ReceivedPacket p = b.driver.awaitPackets(0, 1).get(0);
        assertThat(p.header().flags()).isZero();
        assertThat(TestFrames.l4ChecksumOk(p.frame(), 14, 4, TestFrames.L4_TCP, 34, p.frame().length)).isTrue();
        assertThat(TestFrames.l4ChecksumOk(f, 14, 4, TestFrames.L4_TCP, 34, f.length))
                .as("the sender's frame had only the pseudo-header sum").isFalse();
        assertThat(b.port.counters().rxChecksumsCompleted.sum()).isEqualTo(1);
    }

    @Test
    void guestOffloadsSetChangesWhatTheDriverIsGiven() throws Exception {
        Guest a = guest("a", linux()), b = guest("b", linux());
        introduce(a, b);
        byte[] f = bigTcp(new Random(14));
        a.send(tso4(), f);
        assertThat(b.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(f);
        // 5.1.6.5.6.1: the driver now accepts only checksum offload; GSO frames must arrive segmented.
        assertThat(b.driver.guestOffloadsSet(bits(GUEST_CSUM))).isEqualTo(VirtioNetCtrl.OK);
        a.send(tso4(), f);
        int segments = (60_000 + MSS - 1) / MSS;
        List<ReceivedPacket> got = b.driver.awaitPackets(0, segments);
        assertSegmentsOf(f, got);
    }

    /** The packets are the TCP segmentation of {@code f}: plain headers, valid checksums, payload in order. */
    private static void assertSegmentsOf(byte[] f, List<ReceivedPacket> got) {
        ByteArrayOutputStream payload = new ByteArrayOutputStream();
        long seq0 = u32(f, 34 + 4);
        int at = 0;
        for (int i = 0; i < got.size(); i++) {
            ReceivedPacket p = got.get(i);
            byte[] s = p.frame();
            assertThat(p.header().flags()).as("segment %d: no metadata the driver did not accept", i).isZero();
            assertThat(p.header().gsoType()).isZero();
            assertThat(s.length).as("segment %d fits the MTU", i).isLessThanOrEqualTo(14 + 1500);
            assertThat(TestFrames.naiveSum(s, 14, 20)).as("segment %d IPv4 header checksum", i).isEqualTo(0xffff);
            assertThat(((s[16] & 0xff) << 8 | (s[17] & 0xff))).as("IPv4 total length").isEqualTo(s.length - 14);
            assertThat(TestFrames.l4ChecksumOk(s, 14, 4, TestFrames.L4_TCP, 34, s.length))
                    .as("segment %d TCP checksum", i).isTrue();
            assertThat(u32(s, 38)).as("segment %d sequence number", i).isEqualTo((seq0 + at) & 0xffffffffL);
            payload.write(s, 54, s.length - 54);
            at += s.length - 54;
        }
        byte[] expected = java.util.Arrays.copyOfRange(f, 54, f.length);
        assertThat(payload.toByteArray()).as("payload reassembled").isEqualTo(expected);
    }

    private static long u32(byte[] b, int i) {
        return ((b[i] & 0xffL) << 24) | ((b[i + 1] & 0xff) << 16) | ((b[i + 2] & 0xff) << 8) | (b[i + 3] & 0xff);
    }
}
