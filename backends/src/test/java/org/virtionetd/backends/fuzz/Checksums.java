package org.virtionetd.backends.fuzz;

/**
 * RFC 1071 read literally, independent of the engine's {@code InternetChecksum}: big-endian 16-bit words from the
 * start of the range, an odd last byte padded with zero, carries folded at the end.
 */
final class Checksums {
    private Checksums() {
    }

    /** The folded (not complemented) sum of b[off, off + len). */
    static int sum(byte[] b, int off, int len) {
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

    static int add(int a, int b) {
        int s = a + b;
        return (s & 0xffff) + (s >>> 16);
    }

    static int u16(byte[] b, int i) {
        return ((b[i] & 0xff) << 8) | (b[i + 1] & 0xff);
    }

    static long u32(byte[] b, int i) {
        return ((long) u16(b, i) << 16) | u16(b, i + 2);
    }

    /** Pseudo-header sum (RFC 9293 3.1 / RFC 768 for IPv4, RFC 8200 8.1 for IPv6). */
    static int pseudo(byte[] f, Frame p, int proto, int l4Length) {
        int s = p.ipVersion == 4 ? sum(f, p.l3 + 12, 8) : sum(f, p.l3 + 8, 32);
        s = add(s, proto);
        s = add(s, l4Length >>> 16);
        return add(s, l4Length & 0xffff);
    }

    /** The TCP/UDP checksum of f[p.l4, end) with its pseudo-header verifies. */
    static boolean l4Ok(byte[] f, Frame p, int proto) {
        int len = f.length - p.l4;
        return add(pseudo(f, p, proto, len), sum(f, p.l4, len)) == 0xffff;
    }
}
