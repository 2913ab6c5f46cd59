package org.virtionetd.backends.offload;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.backends.offload.TestFrames.L4_TCP;
import static org.virtionetd.backends.offload.TestFrames.L4_UDP;

class OffloadingBackendTest {
    private static final int HDR = VirtioNetHeader.LENGTH_MRG;
    private static final long ALL_GUEST = VirtioNetFeature.GUEST_OFFLOADS;

    /** A fake inner backend that records what it is sent and delivers the frames it is given. */
    static final class RecordingBackend implements NetBackend {
        final long caps;
        final List<byte[]> sentHeaders = new ArrayList<>();
        final List<byte[]> sentFrames = new ArrayList<>();
        final List<Packet> sentPackets = new ArrayList<>();
        final ArrayDeque<byte[]> toDeliver = new ArrayDeque<>();
        long configured = -1;
        long guestOffloads = -1;
        boolean accept = true;

        RecordingBackend(long caps) {
            this.caps = caps;
        }

        @Override
        public String name() {
            return "recording";
        }

        @Override
        public long capabilities() {
            return caps;
        }

        @Override
        public void configure(long negotiatedFeatures, int vnetHeaderLength) {
            configured = negotiatedFeatures;
        }

        @Override
        public void setGuestOffloads(long g) {
            guestOffloads = g;
        }

        @Override
        public boolean send(Packet p) {
            sentPackets.add(p);
            sentHeaders.add(TestFrames.bytes(p.slices()[0]));
            java.io.ByteArrayOutputStream f = new java.io.ByteArrayOutputStream();
            for (int i = 1; i < p.count(); i++) {
                byte[] b = TestFrames.bytes(p.slices()[i]);
                f.write(b, 0, b.length);
                p.slices()[i].position(p.slices()[i].limit()); // a real backend consumes positions
            }
            sentFrames.add(f.toByteArray());
            return accept;
        }

        @Override
        public int peekLength() {
            return toDeliver.isEmpty() ? 0 : toDeliver.peek().length;
        }

        @Override
        public int receive(ByteBuffer[] slices, int count) {
            byte[] f = toDeliver.poll();
            if (f == null) {
                return 0;
            }
            int done = 0;
            for (int i = 0; i < count && done < f.length; i++) {
                int n = Math.min(slices[i].remaining(), f.length - done);
                slices[i].put(f, done, n); // relative: moves positions, as a real backend may
                done += n;
            }
            return done;
        }

        @Override
        public int receiveReadyFd() {
            return -1;
        }

        @Override
        public void close() {
        }
    }

    private static byte[] withHeader(VirtioNetHeader h, byte[] frame) {
        byte[] all = new byte[HDR + frame.length];
        for (int i = 0; i < HDR; i++) {
            all[i] = h.buffer().get(h.base() + i);
        }
        System.arraycopy(frame, 0, all, HDR, frame.length);
        return all;
    }

    private static ByteBuffer[] guestBuffers(int... sizes) {
        ByteBuffer[] b = new ByteBuffer[sizes.length];
        for (int i = 0; i < sizes.length; i++) {
            b[i] = ByteBuffer.allocateDirect(sizes[i] + 8);
            b[i].position(8); // buffers start where the device says, not at 0
        }
        return b;
    }

    private static byte[] read(ByteBuffer[] slices, int[] positions, int length) {
        byte[] out = new byte[length];
        int done = 0;
        for (int i = 0; i < slices.length && done < length; i++) {
            int n = Math.min(slices[i].capacity() - positions[i], length - done);
            slices[i].get(positions[i], out, done, n);
            done += n;
        }
        return out;
    }

    private static long features(long... bits) {
        long v = 0;
        for (long b : bits) {
            v |= 1L << b;
        }
        return v;
    }

    @Test
    void capabilitiesAreEveryHostOffloadPlusTheInnersGuestBits() {
        RecordingBackend inner = new RecordingBackend(features(VirtioNetFeature.GUEST_CSUM, VirtioNetFeature.GUEST_TSO4));
        OffloadingBackend b = new OffloadingBackend(inner);
        assertThat(b.capabilities()).isEqualTo(VirtioNetFeature.HOST_OFFLOADS
                | features(VirtioNetFeature.GUEST_CSUM, VirtioNetFeature.GUEST_TSO4));
    }

    @Test
    void txPassThroughKeepsTheMetadataWhenTheInnerCarriesIt() throws Exception {
        RecordingBackend inner = new RecordingBackend(VirtioNetFeature.HOST_OFFLOADS);
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(VirtioNetFeature.HOST_OFFLOADS, HDR);
        assertThat(inner.configured).isEqualTo(VirtioNetFeature.HOST_OFFLOADS);
        TestFrames.Built f = TestFrames.build(new Random(1), 1, 4, 0, 0, L4_TCP, 12, 20000, 0x18);
        VirtioNetHeader h = TestFrames.gsoHeader(f, VirtioNetHeader.GSO_TCPV4, 1448);
        Packet p = TestFrames.packet(new Random(2), f.frame, h, 4);
        byte[] hdrBefore = TestFrames.bytes(p.slices()[0]);

        assertThat(b.send(p)).isTrue();

        assertThat(inner.sentPackets).containsExactly(p);
        assertThat(inner.sentHeaders.get(0)).as("virtio_net_hdr handed on unchanged").isEqualTo(hdrBefore);
        assertThat(inner.sentHeaders.get(0)[1]).isEqualTo((byte) VirtioNetHeader.GSO_TCPV4);
        assertThat(inner.sentFrames.get(0)).isEqualTo(f.frame);
        assertThat(b.counters().txPassedThrough.sum()).isEqualTo(1);
        assertThat(b.counters().txSegmentsMade.sum()).isZero();
    }

    @Test
    void txSegmentsInSoftwareWhenTheInnerCannotTakeTso() throws Exception {
        RecordingBackend inner = new RecordingBackend(features(VirtioNetFeature.CSUM));
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(VirtioNetFeature.HOST_OFFLOADS, HDR);
        assertThat(inner.configured).as("the inner is not promised what it cannot carry")
                .isEqualTo(features(VirtioNetFeature.CSUM));
        TestFrames.Built f = TestFrames.build(new Random(3), 0, 6, 0, 1, L4_TCP, 0, 10000, 0x19);
        Packet p = TestFrames.packet(new Random(4), f.frame, TestFrames.gsoHeader(f, VirtioNetHeader.GSO_TCPV6, 1440), 5);

        assertThat(b.send(p)).isTrue();

        int n = (10000 + 1439) / 1440;
        assertThat(inner.sentFrames).hasSize(n);
        for (byte[] hdr : inner.sentHeaders) {
            assertThat(hdr).as("plain packets: zero header").isEqualTo(new byte[HDR]);
        }
        SoftwareOffloadSegmentTest.verifyTcp(f, 1440, inner.sentFrames);
        assertThat(b.counters().txPacketsSegmented.sum()).isEqualTo(1);
        assertThat(b.counters().txSegmentsMade.sum()).isEqualTo(n);
        assertThat(b.counters().txPassedThrough.sum()).isZero();
    }

    @Test
    void txCompletesTheChecksumWhenTheInnerCannotTakeCsum() throws Exception {
        RecordingBackend inner = new RecordingBackend(0);
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(features(VirtioNetFeature.CSUM), HDR);
        TestFrames.Built f = TestFrames.build(new Random(5), 2, 4, 8, 0, L4_UDP, 0, 999, 0);
        VirtioNetHeader h = TestFrames.header(VirtioNetHeader.F_NEEDS_CSUM, 0, 0, 0, f.l4, 6);

        assertThat(b.send(TestFrames.packet(new Random(6), f.frame, h, 3))).isTrue();

        byte[] out = inner.sentFrames.get(0);
        assertThat(inner.sentHeaders.get(0)).isEqualTo(new byte[HDR]);
        assertThat(TestFrames.l4ChecksumOk(out, f.l3, 4, L4_UDP, f.l4, out.length)).isTrue();
        assertThat(b.counters().txChecksumsCompleted.sum()).isEqualTo(1);
        assertThat(f.frame[f.l4 + 6] != out[f.l4 + 6] || f.frame[f.l4 + 7] != out[f.l4 + 7])
                .as("the guest's buffer was read, not written: the original still holds the partial sum").isTrue();
    }

    @Test
    void txMalformedIsDroppedAndCountedByReason() throws Exception {
        RecordingBackend inner = new RecordingBackend(0);
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(VirtioNetFeature.HOST_OFFLOADS, HDR);
        TestFrames.Built f = TestFrames.build(new Random(7), 0, 4, 0, 0, L4_TCP, 0, 3000, 0);
        VirtioNetHeader h = TestFrames.gsoHeader(f, VirtioNetHeader.GSO_TCPV6, 1000); // v4 frame, v6 type

        assertThat(b.send(TestFrames.packet(new Random(8), f.frame, h, 2))).isFalse();

        assertThat(inner.sentFrames).isEmpty();
        assertThat(b.counters().txDrops(OffloadResult.GSO_TYPE_MISMATCH).sum()).isEqualTo(1);
        assertThat(b.counters().snapshot()).containsEntry("tx_drop_gso_type_mismatch", 1L);
    }

    @Test
    void txInnerRefusalIsCounted() throws Exception {
        RecordingBackend inner = new RecordingBackend(0);
        inner.accept = false;
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(VirtioNetFeature.HOST_OFFLOADS, HDR);
        TestFrames.Built f = TestFrames.build(new Random(9), 0, 4, 0, 0, L4_TCP, 0, 3000, 0);
        assertThat(b.send(TestFrames.packet(new Random(10), f.frame,
                TestFrames.gsoHeader(f, VirtioNetHeader.GSO_TCPV4, 1000), 2))).isFalse();
        assertThat(inner.sentFrames).hasSize(1);
        assertThat(b.counters().txInnerRefused.sum()).isEqualTo(1);
    }

    @Test
    void rxSegmentsAGsoFrameTheGuestDidNotAccept() throws Exception {
        RecordingBackend inner = new RecordingBackend(ALL_GUEST);
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(VirtioNetFeature.HOST_OFFLOADS, HDR); // the guest accepts no GUEST_* offload
        TestFrames.Built f = TestFrames.build(new Random(11), 1, 4, 0, 0, L4_TCP, 12, 6000, 0x19);
        inner.toDeliver.add(withHeader(TestFrames.gsoHeader(f, VirtioNetHeader.GSO_TCPV4, 1448), f.frame));
        TestFrames.Built after = TestFrames.build(new Random(12), 0, 4, 0, 0, L4_UDP, 0, 50, 0);
        inner.toDeliver.add(withHeader(TestFrames.header(0, 0, 0, 0, 0, 0), after.frame));

        List<byte[]> frames = new ArrayList<>();
        for (int guard = 0; guard < 20; guard++) {
            int peek = b.peekLength();
            if (peek == 0) {
                break;
            }
            assertThat(peek).as("a segment fits a 1518-byte buffer").isLessThanOrEqualTo(HDR + 1518);
            ByteBuffer[] bufs = guestBuffers(700, 900);
            int[] pos = {8, 8};
            int n = b.receive(bufs, 2);
            assertThat(n).isEqualTo(peek);
            byte[] got = read(bufs, pos, n);
            assertThat(Arrays.copyOf(got, HDR)).as("plain header").isEqualTo(new byte[HDR]);
            frames.add(Arrays.copyOfRange(got, HDR, n));
        }
        int segs = (6000 + 1447) / 1448;
        assertThat(frames).hasSize(segs + 1);
        SoftwareOffloadSegmentTest.verifyTcp(f, 1448, frames.subList(0, segs));
        assertThat(frames.get(segs)).as("the next frame follows unchanged").isEqualTo(after.frame);
        assertThat(b.counters().rxPacketsSegmented.sum()).isEqualTo(1);
        assertThat(b.counters().rxSegmentsMade.sum()).isEqualTo(segs);
        assertThat(b.counters().rxPassedThrough.sum()).isEqualTo(1);
    }

    @Test
    void rxPassesOffloadsTheGuestAcceptedAndCompletesWhenItStopsAccepting() throws Exception {
        RecordingBackend inner = new RecordingBackend(features(VirtioNetFeature.GUEST_CSUM));
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(features(VirtioNetFeature.GUEST_CSUM), HDR);
        TestFrames.Built f = TestFrames.build(new Random(13), 0, 6, 0, 0, L4_TCP, 0, 500, 0x18);
        VirtioNetHeader h = TestFrames.header(VirtioNetHeader.F_NEEDS_CSUM, 0, 0, 0, f.l4, 16);
        byte[] delivered = withHeader(h, f.frame);

        // accepted: straight into the guest's buffers, header kept
        inner.toDeliver.add(delivered);
        ByteBuffer[] bufs = guestBuffers(100, 2000);
        int n = b.receive(bufs, 2);
        assertThat(read(bufs, new int[] {8, 8}, n)).isEqualTo(delivered);
        assertThat(b.counters().rxPassedThrough.sum()).isEqualTo(1);

        // CTRL_GUEST_OFFLOADS_SET without GUEST_CSUM: the checksum is completed here
        b.setGuestOffloads(0);
        assertThat(inner.guestOffloads).isZero();
        inner.toDeliver.add(delivered);
        assertThat(b.peekLength()).isEqualTo(delivered.length);
        bufs = guestBuffers(30, 2000);
        n = b.receive(bufs, 2);
        byte[] got = read(bufs, new int[] {8, 8}, n);
        assertThat(Arrays.copyOf(got, HDR)).isEqualTo(new byte[HDR]);
        byte[] frame = Arrays.copyOfRange(got, HDR, n);
        assertThat(TestFrames.l4ChecksumOk(frame, f.l3, 6, L4_TCP, f.l4, frame.length)).isTrue();
        assertThat(b.counters().rxChecksumsCompleted.sum()).isEqualTo(1);
        assertThat(b.peekLength()).isZero();
    }

    @Test
    void rxSafetyNetWhenTheInnerDeliversWhatTheGuestRefused() throws Exception {
        // The inner declares no GUEST_* bits yet delivers NEEDS_CSUM: checked in the guest's buffers, redone.
        RecordingBackend inner = new RecordingBackend(0);
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(0, HDR);
        TestFrames.Built f = TestFrames.build(new Random(14), 0, 4, 0, 0, L4_UDP, 0, 300, 0);
        inner.toDeliver.add(withHeader(TestFrames.header(VirtioNetHeader.F_NEEDS_CSUM, 0, 0, 0, f.l4, 6), f.frame));
        ByteBuffer[] bufs = guestBuffers(2000);
        int n = b.receive(bufs, 1);
        byte[] got = read(bufs, new int[] {8}, n);
        assertThat(Arrays.copyOf(got, HDR)).isEqualTo(new byte[HDR]);
        byte[] frame = Arrays.copyOfRange(got, HDR, n);
        assertThat(TestFrames.l4ChecksumOk(frame, f.l3, 4, L4_UDP, f.l4, frame.length)).isTrue();
        assertThat(b.counters().rxChecksumsCompleted.sum()).isEqualTo(1);
    }

    @Test
    void rxMalformedFromTheInnerIsDroppedAndTheNextFrameStillComes() throws Exception {
        RecordingBackend inner = new RecordingBackend(ALL_GUEST);
        OffloadingBackend b = new OffloadingBackend(inner);
        b.configure(0, HDR);
        TestFrames.Built f = TestFrames.build(new Random(15), 0, 4, 0, 0, L4_TCP, 0, 3000, 0);
        inner.toDeliver.add(withHeader(TestFrames.gsoHeader(f, VirtioNetHeader.GSO_TCPV4, 0), f.frame));
        TestFrames.Built ok = TestFrames.build(new Random(16), 0, 4, 0, 0, L4_UDP, 0, 10, 0);
        inner.toDeliver.add(withHeader(TestFrames.header(0, 0, 0, 0, 0, 0), ok.frame));
        assertThat(b.peekLength()).isEqualTo(HDR + ok.frame.length);
        assertThat(b.counters().rxDrops(OffloadResult.GSO_SIZE_ZERO).sum()).isEqualTo(1);
        // GSO at MSS 1 makes more frames than the pending queue holds: dropped whole
        TestFrames.Built big = TestFrames.build(new Random(17), 0, 4, 0, 0, L4_TCP, 0, 3000, 0);
        ByteBuffer[] bufs = guestBuffers(2000);
        assertThat(b.receive(bufs, 1)).isEqualTo(HDR + ok.frame.length);
        inner.toDeliver.add(withHeader(TestFrames.gsoHeader(big, VirtioNetHeader.GSO_TCPV4, 1), big.frame));
        assertThat(b.peekLength()).isZero();
        assertThat(b.counters().rxDrops(OffloadResult.TOO_MANY_SEGMENTS).sum()).isEqualTo(1);
    }
}
