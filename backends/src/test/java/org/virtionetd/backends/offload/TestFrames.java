package org.virtionetd.backends.offload;

import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;

/**
 * Test frames built byte by byte, and a naive reference checksum that shares no code with the engine
 * (big-endian 16-bit words, odd byte padded with zero, carries folded at the end: RFC 1071 read literally).
 */
public final class TestFrames {
    public static final int L4_TCP = 6;
    static final int L4_UDP = 17;

    private TestFrames() {
    }

    /** RFC 1071 folded sum of b[off, off + len), the range starting at an even position. */
    public static int naiveSum(byte[] b, int off, int len) {
        long s = 0;
        for (int i = 0; i < len; i += 2) {
            int hi = b[off + i] & 0xff;
            int lo = i + 1 < len ? b[off + i + 1] & 0xff : 0;
            s += (hi << 8) | lo;
        }
        while ((s >> 16) != 0) {
            s = (s & 0xffff) + (s >> 16);
        }
        return (int) s;
    }

    static int naiveAdd(int a, int b) {
        int s = a + b;
        return (s & 0xffff) + (s >>> 16);
    }

    static int u16(byte[] b, int i) {
        return ((b[i] & 0xff) << 8) | (b[i + 1] & 0xff);
    }

    static long u32(byte[] b, int i) {
        return ((long) u16(b, i) << 16) | u16(b, i + 2);
    }

    static void put16(byte[] b, int i, int v) {
        b[i] = (byte) (v >>> 8);
        b[i + 1] = (byte) v;
    }

    static void put32(byte[] b, int i, long v) {
        put16(b, i, (int) (v >>> 16));
        put16(b, i + 2, (int) v);
    }

    /** Pseudo-header sum straight from RFC 793 / RFC 8200 8.1. */
    static int naivePseudo(byte[] f, int l3, int ipVersion, int proto, int l4Len) {
        int s = ipVersion == 4 ? naiveSum(f, l3 + 12, 8) : naiveSum(f, l3 + 8, 32);
        s = naiveAdd(s, proto);
        s = naiveAdd(s, l4Len >>> 16);
        s = naiveAdd(s, l4Len & 0xffff);
        return s;
    }

    /** True if the L4 checksum of f[l4, end) verifies (sum with the pseudo-header is 0xffff). */
    public static boolean l4ChecksumOk(byte[] f, int l3, int ipVersion, int proto, int l4, int end) {
        int s = naiveAdd(naivePseudo(f, l3, ipVersion, proto, end - l4), naiveSum(f, l4, end - l4));
        return s == 0xffff;
    }

    /** Description of a built frame: where things are. */
    public static final class Built {
        public byte[] frame;
        int vlans;
        int l3;
        int ipVersion;
        int ipHeaderLength;
        int l4;
        int l4Proto;
        int l4HeaderLength;
        int payloadOffset;

        int payloadLength() {
            return frame.length - payloadOffset;
        }
    }

    /**
     * Builds a frame: Ethernet, {@code vlans} tags, IPv4 with {@code ipOptions} bytes of options (multiple of 4) or
     * IPv6 with {@code v6Ext} extension headers (hop-by-hop, then destination options; 8 bytes each), TCP with
     * {@code tcpOptions} bytes of options or UDP, then the payload. Lengths are consistent; the L4 checksum holds
     * the pseudo-header sum (the partial-checksum contract of virtio 5.1.6.2).
     */
    public static Built build(Random rnd, int vlans, int ipVersion, int ipOptions, int v6Ext, int l4Proto, int tcpOptions,
                       int payload, int tcpFlags) {
        Built b = new Built();
        b.vlans = vlans;
        b.ipVersion = ipVersion;
        b.l4Proto = l4Proto;
        b.l3 = 14 + 4 * vlans;
        b.ipHeaderLength = ipVersion == 4 ? 20 + ipOptions : 40 + 8 * v6Ext;
        b.l4 = b.l3 + b.ipHeaderLength;
        b.l4HeaderLength = l4Proto == L4_TCP ? 20 + tcpOptions : 8;
        b.payloadOffset = b.l4 + b.l4HeaderLength;
        byte[] f = new byte[b.payloadOffset + payload];
        b.frame = f;
        for (int i = 0; i < 12; i++) {
            f[i] = (byte) rnd.nextInt();
        }
        f[0] &= (byte) 0xfe; // unicast destination
        int off = 12;
        for (int v = 0; v < vlans; v++) {
            put16(f, off, v == 0 && vlans == 2 ? 0x88a8 : 0x8100);
            put16(f, off + 2, rnd.nextInt(4096));
            off += 4;
        }
        put16(f, off, ipVersion == 4 ? 0x0800 : 0x86dd);
        int l3 = b.l3;
        if (ipVersion == 4) {
            f[l3] = (byte) (0x40 | (b.ipHeaderLength / 4));
            f[l3 + 1] = (byte) rnd.nextInt(256);
            put16(f, l3 + 2, f.length - l3);
            put16(f, l3 + 4, rnd.nextInt(65536));
            put16(f, l3 + 6, 0x4000); // DF
            f[l3 + 8] = 64;
            f[l3 + 9] = (byte) l4Proto;
            for (int i = 12; i < 20; i++) {
                f[l3 + i] = (byte) rnd.nextInt();
            }
            for (int i = 20; i < b.ipHeaderLength; i++) {
                f[l3 + i] = 1; // NOP options
            }
            put16(f, l3 + 10, ~naiveSum(f, l3, b.ipHeaderLength) & 0xffff);
        } else {
            f[l3] = 0x60;
            put16(f, l3 + 4, f.length - l3 - 40);
            f[l3 + 6] = (byte) (v6Ext > 0 ? 0 : l4Proto);
            f[l3 + 7] = 64;
            for (int i = 8; i < 40; i++) {
                f[l3 + i] = (byte) rnd.nextInt();
            }
            int e = l3 + 40;
            for (int x = 0; x < v6Ext; x++) {
                f[e] = (byte) (x + 1 < v6Ext ? 60 : l4Proto); // next: dest-opts, then L4
                f[e + 1] = 0; // 8 bytes
                f[e + 2] = 1; // PadN of 4
                f[e + 3] = 4;
                e += 8;
            }
        }
        int l4 = b.l4;
        if (l4Proto == L4_TCP) {
            put16(f, l4, rnd.nextInt(65536));
            put16(f, l4 + 2, rnd.nextInt(65536));
            put32(f, l4 + 4, rnd.nextInt() & 0xffffffffL);
            put32(f, l4 + 8, rnd.nextInt() & 0xffffffffL);
            f[l4 + 12] = (byte) ((b.l4HeaderLength / 4) << 4);
            f[l4 + 13] = (byte) tcpFlags;
            put16(f, l4 + 14, rnd.nextInt(65536));
            for (int i = 20; i < b.l4HeaderLength; i++) {
                f[l4 + i] = 1; // NOP options
            }
        } else {
            put16(f, l4, rnd.nextInt(65536));
            put16(f, l4 + 2, rnd.nextInt(65536));
            put16(f, l4 + 4, f.length - l4);
        }
        for (int i = b.payloadOffset; i < f.length; i++) {
            f[i] = (byte) rnd.nextInt();
        }
        int checkAt = l4 + (l4Proto == L4_TCP ? 16 : 6);
        put16(f, checkAt, naivePseudo(f, l3, ipVersion, l4Proto, f.length - l4));
        return b;
    }

    /** A 12-byte little-endian vnet header. */
    static VirtioNetHeader header(int flags, int gsoType, int hdrLen, int gsoSize, int csumStart, int csumOffset) {
        ByteBuffer hb = ByteBuffer.allocate(VirtioNetHeader.LENGTH_MRG).order(ByteOrder.LITTLE_ENDIAN);
        VirtioNetHeader h = new VirtioNetHeader(hb, 0);
        h.flags(flags).gsoType(gsoType).hdrLen(hdrLen).gsoSize(gsoSize).csumStart(csumStart).csumOffset(csumOffset);
        return h;
    }

    /** A GSO header for a built frame, NEEDS_CSUM pointing at its L4 checksum. */
    public static VirtioNetHeader gsoHeader(Built b, int gsoType, int gsoSize) {
        return header(VirtioNetHeader.F_NEEDS_CSUM, gsoType, b.payloadOffset, gsoSize, b.l4,
                b.l4Proto == L4_TCP ? 16 : 6);
    }

    /**
     * A packet whose frame is {@code frame} cut at random points into heap and direct slices (each a view with a
     * non-zero position, so nothing may assume position 0).
     */
    static Packet packet(Random rnd, byte[] frame, VirtioNetHeader h, int maxSlices) {
        Packet p = new Packet(maxSlices);
        p.reset(VirtioNetHeader.LENGTH_MRG);
        p.header().copyFrom(h, VirtioNetHeader.LENGTH_MRG);
        int pieces = 1 + rnd.nextInt(maxSlices);
        int[] cuts = new int[pieces + 1];
        cuts[pieces] = frame.length;
        for (int i = 1; i < pieces; i++) {
            cuts[i] = rnd.nextInt(frame.length + 1);
        }
        java.util.Arrays.sort(cuts);
        for (int i = 0; i < pieces; i++) {
            int len = cuts[i + 1] - cuts[i];
            int pad = rnd.nextInt(5);
            ByteBuffer s = rnd.nextBoolean() ? ByteBuffer.allocateDirect(len + pad + 3) : ByteBuffer.allocate(len + pad + 3);
            s.position(pad);
            s.put(frame, cuts[i], len);
            s.limit(pad + len).position(pad);
            p.add(s);
        }
        return p;
    }

    static byte[] bytes(ByteBuffer b) {
        byte[] a = new byte[b.remaining()];
        b.get(b.position(), a);
        return a;
    }
}
