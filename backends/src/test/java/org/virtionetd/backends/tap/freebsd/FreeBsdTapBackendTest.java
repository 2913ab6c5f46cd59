package org.virtionetd.backends.tap.freebsd;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_RXCSUM;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_RXCSUM_IPV6;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_TSO4;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_TSO6;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_TXCSUM;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_TXCSUM_IPV6;

/** FreeBsdTapBackend's logic against a fake that behaves as if_tuntap.c does (the real one cannot run here). */
class FreeBsdTapBackendTest {
    /** if_tuntap.c in miniature: TAPSVNETHDR adds TAP_VNET_HDR_CAPS, SIOCSIFCAP refuses unsupported bits. */
    static final class FakeTap implements FreeBsdTapOps {
        static final int BASE_CAPS = 0x80000; // IFCAP_LINKSTATE, which the backend must leave alone
        boolean hasVnetIoctl = true;
        int vhdrlen;
        int capabilities = BASE_CAPS;
        int capenable = BASE_CAPS;
        final List<byte[]> written = new ArrayList<>();
        final Deque<byte[]> toRead = new ArrayDeque<>();
        boolean closed;

        @Override
        public String interfaceName() {
            return "tap7";
        }

        @Override
        public int fd() {
            return 42;
        }

        @Override
        public void setVnetHeaderLength(int length) throws IOException {
            if (!hasVnetIoctl) {
                throw new IOException("ioctl(TAPSVNETHDR) failed: errno 25"); // ENOTTY before FreeBSD 14
            }
            if (length != 0 && length != 10 && length != 12) {
                throw new IOException("EINVAL");
            }
            vhdrlen = length;
            capabilities = length != 0 ? BASE_CAPS | IfCap.TAP_VNET_HDR_CAPS : BASE_CAPS;
            capenable &= capabilities;
        }

        @Override
        public int vnetHeaderLength() {
            return vhdrlen;
        }

        @Override
        public int supportedCapabilities() {
            return capabilities;
        }

        @Override
        public int enabledCapabilities() {
            return capenable;
        }

        @Override
        public void setEnabledCapabilities(int caps) throws IOException {
            if ((caps & ~capabilities) != 0) {
                throw new IOException("SIOCSIFCAP EINVAL 0x" + Integer.toHexString(caps));
            }
            capenable = caps;
        }

        @Override
        public long write(ByteBuffer[] slices, int offset, int count) {
            int len = 0;
            for (int i = offset; i < offset + count; i++) {
                len += slices[i].remaining();
            }
            byte[] f = new byte[len];
            int at = 0;
            for (int i = offset; i < offset + count; i++) {
                int k = slices[i].remaining();
                slices[i].get(f, at, k);
                at += k;
            }
            written.add(f);
            return len;
        }

        @Override
        public int read(ByteBuffer dst) {
            byte[] f = toRead.poll();
            if (f == null) {
                return 0;
            }
            int n = Math.min(f.length, dst.remaining());
            dst.put(f, 0, n);
            return n;
        }

        /** Like tunread: copies what fits into the iovec entries, drops the rest. */
        @Override
        public long readv(long iov, int count) {
            byte[] f = toRead.poll();
            if (f == null) {
                return 0;
            }
            ByteBuffer entries = LinuxNative.directBuffer(iov, 16 * count).order(ByteOrder.nativeOrder());
            int at = 0;
            for (int i = 0; i < count && at < f.length; i++) {
                long len = entries.getLong(16 * i + 8);
                int k = (int) Math.min(len, f.length - at);
                LinuxNative.directBuffer(entries.getLong(16 * i), k).put(f, at, k);
                at += k;
            }
            return at;
        }

        @Override
        public void close() {
            closed = true;
        }
    }

    private static final long ALL_OFFLOADS = VirtioNetFeature.OFFLOADS;

    @Test
    void vnetHeaderCapabilitiesMapToChecksumAndGuestTso() throws IOException {
        FakeTap tap = new FakeTap();
        FreeBsdTapBackend b = new FreeBsdTapBackend(tap, true);
        assertThat(b.vnetHeader()).isTrue();
        assertThat(tap.vhdrlen).isEqualTo(12);
        assertThat(b.capabilities()).isEqualTo(VirtioNetFeature.bits(VirtioNetFeature.CSUM,
                VirtioNetFeature.GUEST_CSUM, VirtioNetFeature.GUEST_TSO4, VirtioNetFeature.GUEST_TSO6));
        assertThat(b.capabilities() & VirtioNetFeature.bits(VirtioNetFeature.HOST_TSO4, VirtioNetFeature.HOST_TSO6,
                VirtioNetFeature.HOST_UFO, VirtioNetFeature.HOST_USO))
                .as("FreeBSD's tap write path does not segment").isZero();
        assertThat(tap.capenable).as("nothing offloaded before configure").isEqualTo(FakeTap.BASE_CAPS);
        assertThat(b.programmedOffloads()).isEmpty();
        assertThat(b.name()).isEqualTo("tap:tap7");
        assertThat(b.receiveReadyFd()).isEqualTo(42);
    }

    @Test
    void capabilitiesFollowTheInterfaceFlagByFlag() {
        assertThat(FreeBsdTapBackend.capabilitiesFor(0)).isZero();
        assertThat(FreeBsdTapBackend.capabilitiesFor(IFCAP_RXCSUM))
                .as("IPv4 only is not enough: the guest's frames may be IPv6").isZero();
        assertThat(FreeBsdTapBackend.capabilitiesFor(IFCAP_RXCSUM | IFCAP_RXCSUM_IPV6))
                .isEqualTo(VirtioNetFeature.bits(VirtioNetFeature.CSUM));
        assertThat(FreeBsdTapBackend.capabilitiesFor(IFCAP_TXCSUM | IFCAP_TXCSUM_IPV6))
                .isEqualTo(VirtioNetFeature.bits(VirtioNetFeature.GUEST_CSUM));
        assertThat(FreeBsdTapBackend.capabilitiesFor(IFCAP_TSO4 | IFCAP_TSO6)).as("TSO needs TXCSUM").isZero();
        assertThat(FreeBsdTapBackend.capabilitiesFor(IFCAP_TXCSUM | IFCAP_TXCSUM_IPV6 | IFCAP_TSO4))
                .isEqualTo(VirtioNetFeature.bits(VirtioNetFeature.GUEST_CSUM, VirtioNetFeature.GUEST_TSO4));
    }

    @Test
    void configureEnablesTheCapabilitiesOfTheAckedFeatures() throws IOException {
        FakeTap tap = new FakeTap();
        FreeBsdTapBackend b = new FreeBsdTapBackend(tap, true);

        b.configure(VirtioNetFeature.bits(VirtioNetFeature.CSUM), 10);
        assertThat(tap.vhdrlen).isEqualTo(10);
        assertThat(tap.capenable).isEqualTo(FakeTap.BASE_CAPS | IFCAP_RXCSUM | IFCAP_RXCSUM_IPV6);

        b.configure(VirtioNetFeature.bits(VirtioNetFeature.GUEST_CSUM, VirtioNetFeature.GUEST_TSO4), 12);
        assertThat(tap.capenable).isEqualTo(FakeTap.BASE_CAPS | IFCAP_TXCSUM | IFCAP_TXCSUM_IPV6 | IFCAP_TSO4);
        assertThat(b.programmedOffloads()).containsExactly("IFCAP_TXCSUM", "IFCAP_TSO4", "IFCAP_TXCSUM_IPV6");

        b.configure(VirtioNetFeature.bits(VirtioNetFeature.GUEST_TSO6), 12);
        assertThat(tap.capenable).as("TSO without GUEST_CSUM is nothing").isEqualTo(FakeTap.BASE_CAPS);

        b.configure(ALL_OFFLOADS, 12);
        assertThat(tap.capenable).isEqualTo(FakeTap.BASE_CAPS | IFCAP_RXCSUM | IFCAP_RXCSUM_IPV6 | IFCAP_TXCSUM
                | IFCAP_TXCSUM_IPV6 | IFCAP_TSO4 | IFCAP_TSO6);

        b.setGuestOffloads(VirtioNetFeature.bits(VirtioNetFeature.GUEST_CSUM));
        assertThat(tap.capenable).as("host-side CSUM stays, guest side shrinks")
                .isEqualTo(FakeTap.BASE_CAPS | IFCAP_RXCSUM | IFCAP_RXCSUM_IPV6 | IFCAP_TXCSUM | IFCAP_TXCSUM_IPV6);

        assertThatThrownBy(() -> b.configure(0, 20)).hasMessageContaining("20");
    }

    @Test
    void kernelWithoutTapsvnethdrRunsWithoutOffloads() throws IOException {
        FakeTap tap = new FakeTap();
        tap.hasVnetIoctl = false;
        FreeBsdTapBackend b = new FreeBsdTapBackend(tap, true);
        assertThat(b.vnetHeader()).isFalse();
        assertThat(b.capabilities()).isZero();
        b.configure(ALL_OFFLOADS, 12);
        assertThat(tap.capenable).isEqualTo(FakeTap.BASE_CAPS);
    }

    private static Packet packet(int hdrLen, byte[] frame) {
        Packet p = new Packet(4);
        p.reset(hdrLen);
        p.header().flags(VirtioNetHeader.F_NEEDS_CSUM).csumStart(34).csumOffset(6);
        p.add(ByteBuffer.wrap(frame, 0, 20).slice());
        p.add(ByteBuffer.wrap(frame, 20, frame.length - 20).slice());
        return p;
    }

    private static byte[] frame(int len, int seed) {
        byte[] f = new byte[len];
        for (int i = 0; i < len; i++) {
            f[i] = (byte) (i * 7 + seed);
        }
        return f;
    }

    @Test
    void sendWritesTheHeaderOnlyWhenTheTapHasOne() throws IOException {
        byte[] f = frame(60, 1);
        FakeTap withHeader = new FakeTap();
        FreeBsdTapBackend b = new FreeBsdTapBackend(withHeader, true);
        b.configure(VirtioNetFeature.bits(VirtioNetFeature.CSUM), 12);
        assertThat(b.send(packet(12, f))).isTrue();
        byte[] w = withHeader.written.get(0);
        assertThat(w).hasSize(72);
        assertThat(w[0]).isEqualTo((byte) VirtioNetHeader.F_NEEDS_CSUM);
        assertThat(Arrays.copyOfRange(w, 12, 72)).isEqualTo(f);

        FakeTap plain = new FakeTap();
        FreeBsdTapBackend n = new FreeBsdTapBackend(plain, false);
        assertThat(plain.vhdrlen).isZero();
        n.configure(0, 12);
        assertThat(n.send(packet(12, f))).isTrue();
        assertThat(plain.written.get(0)).isEqualTo(f);
    }

    /** What the tap holds (the staged frame included) is read out and dropped, at most {@code limit} frames. */
    @Test
    void discardQueuedDropsWhatTheTapHoldsUpToTheLimit() throws IOException {
        FakeTap tap = new FakeTap();
        FreeBsdTapBackend b = new FreeBsdTapBackend(tap, false);
        b.configure(0, 12);
        for (int i = 0; i < 5; i++) {
            tap.toRead.add(frame(60, i));
        }
        assertThat(b.peekLength()).as("a frame staged").isEqualTo(72);
        assertThat(b.discardQueued(3)).as("dropped, limit 3").isEqualTo(3);
        assertThat(tap.toRead).as("left in the tap").hasSize(2);
        assertThat(b.discardQueued(100)).as("dropped, the rest").isEqualTo(2);
        assertThat(b.peekLength()).isZero();
        tap.toRead.add(frame(60, 9));
        ByteBuffer[] slices = {ByteBuffer.allocate(100)};
        assertThat(b.receive(slices, 1)).as("a frame after the drop").isEqualTo(72);
        assertThat(Arrays.copyOfRange(gather(slices), 12, 72)).isEqualTo(frame(60, 9));
    }

    @Test
    void receiveScattersHeaderAndFrameOrSynthesizesAZeroHeader() throws IOException {
        FakeTap withHeader = new FakeTap();
        FreeBsdTapBackend b = new FreeBsdTapBackend(withHeader, true);
        b.configure(VirtioNetFeature.bits(VirtioNetFeature.GUEST_CSUM), 12);
        byte[] kernel = new byte[12 + 100];
        kernel[0] = (byte) VirtioNetHeader.F_NEEDS_CSUM;
        System.arraycopy(frame(100, 3), 0, kernel, 12, 100);
        withHeader.toRead.add(kernel);
        assertThat(b.peekLength()).isEqualTo(112);
        ByteBuffer[] slices = {ByteBuffer.allocate(5), ByteBuffer.allocate(50), ByteBuffer.allocate(200)};
        assertThat(b.receive(slices, 3)).isEqualTo(112);
        assertThat(gather(slices)).isEqualTo(kernel);
        assertThat(b.receive(slices, 3)).isZero();

        FakeTap plain = new FakeTap();
        FreeBsdTapBackend n = new FreeBsdTapBackend(plain, false);
        n.configure(0, 10);
        plain.toRead.add(frame(80, 5));
        ByteBuffer one = ByteBuffer.allocate(200);
        assertThat(n.receive(new ByteBuffer[] {one}, 1)).isEqualTo(90);
        one.flip();
        byte[] got = new byte[90];
        one.get(got);
        assertThat(Arrays.copyOfRange(got, 0, 10)).containsOnly(0);
        assertThat(Arrays.copyOfRange(got, 10, 90)).isEqualTo(frame(80, 5));
    }

    @Test
    void aFrameLargerThanTheRoomIsDroppedAndTheNextOneDelivered() throws IOException {
        FakeTap tap = new FakeTap();
        FreeBsdTapBackend b = new FreeBsdTapBackend(tap, true);
        b.configure(0, 12);
        byte[] big = new byte[12 + 500];
        byte[] small = new byte[12 + 60];
        small[12] = 9;
        tap.toRead.add(big);
        tap.toRead.add(small);
        ByteBuffer room = ByteBuffer.allocate(100);
        assertThat(b.receive(new ByteBuffer[] {room}, 1)).isEqualTo(72);
        assertThat(room.get(12)).isEqualTo((byte) 9);
    }

    private static byte[] gather(ByteBuffer[] slices) {
        int n = 0;
        for (ByteBuffer s : slices) {
            n += s.position();
        }
        byte[] out = new byte[n];
        int at = 0;
        for (ByteBuffer s : slices) {
            s.flip();
            int k = s.remaining();
            s.get(out, at, k);
            at += k;
        }
        return out;
    }

    @Test
    void realOpsSayTheyNeedFreeBsd() {
        if (FreeBsdNative.isAvailable()) {
            return; // on FreeBSD this check does not apply
        }
        assertThatThrownBy(() -> FreeBsdTapBackend.open("tap0", true))
                .isInstanceOf(IOException.class).hasMessageContaining("needs FreeBSD");
    }

    @Test
    void ioctlNumbersMatchTheirDefinitions() {
        // FreeBSD _IOC: inout | (len & 0x1fff) << 16 | group << 8 | num
        long in = 0x80000000L;
        long out = 0x40000000L;
        assertThat(IfCap.TAPSVNETHDR).isEqualTo(in | (4L << 16) | ('t' << 8) | 91);
        assertThat(IfCap.TAPGVNETHDR).isEqualTo(out | (4L << 16) | ('t' << 8) | 94);
        assertThat(IfCap.TAPGIFNAME).isEqualTo(out | (32L << 16) | ('t' << 8) | 93);
        assertThat(IfCap.SIOCSIFCAP).isEqualTo(in | (32L << 16) | ('i' << 8) | 30);
        assertThat(IfCap.SIOCGIFCAP).isEqualTo(in | out | (32L << 16) | ('i' << 8) | 31);
    }
}
