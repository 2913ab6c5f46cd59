package org.virtionetd.backends.offload;

import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.backends.offload.TestFrames.L4_TCP;
import static org.virtionetd.backends.offload.TestFrames.L4_UDP;

/** Hostile frames and headers: never an exception, and a dropped frame produces nothing. */
class SoftwareOffloadAdversarialTest {
    private final SoftwareOffload engine = new SoftwareOffload();

    private OffloadResult runAndCheck(Packet p) {
        List<byte[]> out = new ArrayList<>();
        OffloadResult r = engine.process(p, f -> out.add(TestFrames.bytes(f)));
        if (r.isDrop()) {
            assertThat(out).as("a dropped frame (%s) produced nothing", r).isEmpty();
        } else {
            assertThat(r).isEqualTo(OffloadResult.OK);
            assertThat(out).isNotEmpty();
        }
        return r;
    }

    @Property(tries = 1000)
    void randomBytesWithRandomHeadersNeverThrow(@ForAll long seed, @ForAll @IntRange(max = 2000) int len) {
        Random rnd = new Random(seed);
        byte[] f = new byte[len];
        rnd.nextBytes(f);
        if (len > 14 && rnd.nextBoolean()) { // often IP, so the parser goes deeper
            f[12] = (byte) (rnd.nextBoolean() ? 0x08 : 0x86);
            f[13] = (byte) (f[12] == 0x08 ? 0x00 : 0xdd);
        }
        int gso = new int[] {0, 1, 3, 4, 5, 2, 0x81, 0x85, 7}[rnd.nextInt(9)];
        VirtioNetHeader h = TestFrames.header(rnd.nextInt(4), gso, rnd.nextInt(70000) & 0xffff,
                rnd.nextInt(4) == 0 ? 0 : rnd.nextInt(65536), rnd.nextInt(len + 10), rnd.nextInt(40));
        runAndCheck(TestFrames.packet(rnd, f, h, 4));
    }

    @Property(tries = 1000)
    void mutatedValidFramesNeverThrow(@ForAll long seed) {
        Random rnd = new Random(seed);
        boolean v6 = rnd.nextBoolean();
        boolean tcp = rnd.nextBoolean();
        TestFrames.Built b = TestFrames.build(rnd, rnd.nextInt(3), v6 ? 6 : 4, v6 ? 0 : 4 * rnd.nextInt(11),
                v6 ? rnd.nextInt(3) : 0, tcp ? L4_TCP : L4_UDP, tcp ? 4 * rnd.nextInt(11) : 0,
                1 + rnd.nextInt(5000), rnd.nextInt(256));
        byte[] f = b.frame;
        int gso = tcp ? (v6 ? VirtioNetHeader.GSO_TCPV6 : VirtioNetHeader.GSO_TCPV4)
                : (rnd.nextBoolean() ? VirtioNetHeader.GSO_UDP : VirtioNetHeader.GSO_UDP_L4);
        VirtioNetHeader h = TestFrames.gsoHeader(b, gso, 1 + rnd.nextInt(2000));
        switch (rnd.nextInt(6)) {
            case 0: // truncate anywhere, even inside the headers
                f = Arrays.copyOf(f, rnd.nextInt(f.length));
                break;
            case 1: // flip bytes in the headers
                for (int i = 0; i < 1 + rnd.nextInt(4); i++) {
                    f[rnd.nextInt(b.payloadOffset)] = (byte) rnd.nextInt();
                }
                break;
            case 2: // header fields lie
                h.hdrLen(rnd.nextInt(65536)).csumStart(rnd.nextInt(65536)).csumOffset(rnd.nextInt(65536));
                break;
            case 3:
                h.gsoSize(0);
                break;
            case 4: // a gso type that does not match the frame
                h.gsoType(new int[] {1, 3, 4, 5, 6, 0x80}[rnd.nextInt(6)]);
                break;
            default: // extreme lengths in the frame
                TestFrames.put16(f, b.l3 + (v6 ? 4 : 2), rnd.nextBoolean() ? 0 : 0xffff);
                TestFrames.put16(f, b.l4 + 4, rnd.nextInt(65536));
                if (tcp) {
                    f[b.l4 + 12] = (byte) (rnd.nextInt(16) << 4);
                }
                break;
        }
        runAndCheck(TestFrames.packet(rnd, f, h, 5));
    }

    private OffloadResult resultFor(byte[] f, VirtioNetHeader h) {
        return runAndCheck(TestFrames.packet(new Random(9), f, h, 3));
    }

    @Example
    void eachMalformationHasItsReason() {
        Random rnd = new Random(42);
        TestFrames.Built v4 = TestFrames.build(rnd, 0, 4, 0, 0, L4_TCP, 0, 3000, 0);
        TestFrames.Built v6 = TestFrames.build(rnd, 1, 6, 0, 0, L4_TCP, 0, 3000, 0);
        TestFrames.Built udp = TestFrames.build(rnd, 0, 4, 0, 0, L4_UDP, 0, 3000, 0);
        int tso4 = VirtioNetHeader.GSO_TCPV4;

        assertThat(resultFor(v4.frame, TestFrames.gsoHeader(v4, tso4, 0))).isEqualTo(OffloadResult.GSO_SIZE_ZERO);
        assertThat(resultFor(v4.frame, TestFrames.gsoHeader(v4, tso4, 1000).hdrLen(v4.frame.length + 1)))
                .isEqualTo(OffloadResult.HDR_LEN_OUT_OF_FRAME);
        assertThat(resultFor(v6.frame, TestFrames.gsoHeader(v6, tso4, 1000))).isEqualTo(OffloadResult.GSO_TYPE_MISMATCH);
        assertThat(resultFor(udp.frame, TestFrames.gsoHeader(udp, tso4, 1000))).isEqualTo(OffloadResult.GSO_TYPE_MISMATCH);
        assertThat(resultFor(Arrays.copyOf(v4.frame, 40), TestFrames.gsoHeader(v4, tso4, 1000).flags(0).hdrLen(0)))
                .isEqualTo(OffloadResult.FRAME_TOO_SHORT);
        assertThat(resultFor(Arrays.copyOf(v4.frame, v4.frame.length - 1), TestFrames.gsoHeader(v4, tso4, 1000)))
                .isEqualTo(OffloadResult.IP_LENGTH_MISMATCH);
        assertThat(resultFor(v4.frame, TestFrames.gsoHeader(v4, tso4, 1000).csumStart(v4.l4 + 2)))
                .isEqualTo(OffloadResult.CSUM_NOT_AT_L4);
        assertThat(resultFor(v4.frame, TestFrames.gsoHeader(v4, 2, 1000))).isEqualTo(OffloadResult.GSO_UNKNOWN);
        assertThat(resultFor(v4.frame, TestFrames.header(1, 0, 0, 0, v4.frame.length - 1, 0)))
                .isEqualTo(OffloadResult.CSUM_OUT_OF_FRAME);
        assertThat(resultFor(udp.frame, TestFrames.gsoHeader(udp, VirtioNetHeader.GSO_UDP, 7)))
                .isEqualTo(OffloadResult.UFO_GSO_SIZE_TOO_SMALL);

        byte[] frag = v4.frame.clone();
        TestFrames.put16(frag, v4.l3 + 6, 0x2000); // MF
        assertThat(resultFor(frag, TestFrames.gsoHeader(v4, tso4, 1000))).isEqualTo(OffloadResult.IP_FRAGMENT);
        byte[] badIhl = v4.frame.clone();
        badIhl[v4.l3] = 0x44;
        assertThat(resultFor(badIhl, TestFrames.gsoHeader(v4, tso4, 1000))).isEqualTo(OffloadResult.BAD_IPV4_HEADER);
        byte[] badDoff = v4.frame.clone();
        badDoff[v4.l4 + 12] = 0x40;
        assertThat(resultFor(badDoff, TestFrames.gsoHeader(v4, tso4, 1000))).isEqualTo(OffloadResult.BAD_TCP_HEADER);
        byte[] arp = v4.frame.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assertThat(resultFor(arp, TestFrames.gsoHeader(v4, tso4, 1000))).isEqualTo(OffloadResult.NOT_IP);
        byte[] udpLen = udp.frame.clone();
        TestFrames.put16(udpLen, udp.l4 + 4, 100);
        assertThat(resultFor(udpLen, TestFrames.gsoHeader(udp, VirtioNetHeader.GSO_UDP_L4, 1000)))
                .isEqualTo(OffloadResult.UDP_LENGTH_MISMATCH);
        TestFrames.Built noPayload = TestFrames.build(rnd, 0, 4, 0, 0, L4_TCP, 0, 0, 0);
        assertThat(resultFor(noPayload.frame, TestFrames.gsoHeader(noPayload, tso4, 1000)))
                .isEqualTo(OffloadResult.NO_PAYLOAD);
        TestFrames.Built v6ext = TestFrames.build(rnd, 0, 6, 0, 2, L4_UDP, 0, 3000, 0);
        assertThat(resultFor(v6ext.frame, TestFrames.gsoHeader(v6ext, VirtioNetHeader.GSO_UDP, 1000)))
                .isEqualTo(OffloadResult.UFO_IPV6_EXTENSION_HEADERS);
        byte[] threeTags = new byte[v4.frame.length + 4];
        System.arraycopy(v4.frame, 0, threeTags, 0, 12);
        for (int i = 0; i < 3; i++) {
            TestFrames.put16(threeTags, 12 + 4 * i, 0x8100);
        }
        assertThat(resultFor(threeTags, TestFrames.gsoHeader(v4, tso4, 1000))).isEqualTo(OffloadResult.TOO_MANY_VLAN_TAGS);
        assertThat(resultFor(new byte[SoftwareOffload.MAX_FRAME_LENGTH + 1], TestFrames.header(0, 0, 0, 0, 0, 0)))
                .isEqualTo(OffloadResult.FRAME_TOO_LONG);
        assertThat(resultFor(new byte[13], TestFrames.header(0, 0, 0, 0, 0, 0))).isEqualTo(OffloadResult.FRAME_TOO_SHORT);
    }
}
