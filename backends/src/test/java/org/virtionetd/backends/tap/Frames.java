package org.virtionetd.backends.tap;

import java.nio.ByteBuffer;

/** Builds and parses the Ethernet / IPv4 / ICMP / UDP / TCP frames the tap tests send and expect. */
final class Frames {
    static final int ETH_HLEN = 14;
    static final int IP_HLEN = 20;
    static final int PROTO_ICMP = 1;
    static final int PROTO_TCP = 6;
    static final int PROTO_UDP = 17;

    /** How the L4 checksum field is filled. */
    enum Csum { FULL, PSEUDO_ONLY, BAD }

    private Frames() {
    }

    static byte[] mac(String s) {
        String[] p = s.split(":");
        byte[] m = new byte[6];
        for (int i = 0; i < 6; i++) {
            m[i] = (byte) Integer.parseInt(p[i], 16);
        }
        return m;
    }

    static byte[] ip(String s) {
        String[] p = s.split("\\.");
        byte[] a = new byte[4];
        for (int i = 0; i < 4; i++) {
            a[i] = (byte) Integer.parseInt(p[i]);
        }
        return a;
    }

    /** Ones-complement sum of {@code len} bytes (not folded, not inverted). */
    static long sum(byte[] b, int off, int len, long acc) {
        for (int i = 0; i + 1 < len; i += 2) {
            acc += ((b[off + i] & 0xff) << 8) | (b[off + i + 1] & 0xff);
        }
        if ((len & 1) != 0) {
            acc += (b[off + len - 1] & 0xff) << 8;
        }
        return acc;
    }

    static int fold(long s) {
        while ((s >>> 16) != 0) {
            s = (s & 0xffff) + (s >>> 16);
        }
        return (int) s;
    }

    static long pseudo(byte[] src, byte[] dst, int proto, int l4len) {
        long s = sum(src, 0, 4, 0);
        s = sum(dst, 0, 4, s);
        return s + proto + l4len;
    }

    static byte[] ether(byte[] dst, byte[] src, byte[] ipPacket) {
        byte[] f = new byte[ETH_HLEN + ipPacket.length];
        System.arraycopy(dst, 0, f, 0, 6);
        System.arraycopy(src, 0, f, 6, 6);
        f[12] = 0x08;
        f[13] = 0x00;
        System.arraycopy(ipPacket, 0, f, ETH_HLEN, ipPacket.length);
        return f;
    }

    static byte[] ipv4(byte[] src, byte[] dst, int proto, byte[] l4, int id) {
        byte[] p = new byte[IP_HLEN + l4.length];
        ByteBuffer b = ByteBuffer.wrap(p);
        b.put((byte) 0x45).put((byte) 0).putShort((short) p.length).putShort((short) id)
                .putShort((short) 0x4000).put((byte) 64).put((byte) proto).putShort((short) 0).put(src).put(dst);
        int c = ~fold(sum(p, 0, IP_HLEN, 0)) & 0xffff;
        b.putShort(10, (short) c);
        System.arraycopy(l4, 0, p, IP_HLEN, l4.length);
        return p;
    }

    static byte[] icmpEcho(int type, int id, int seq, byte[] data) {
        byte[] m = new byte[8 + data.length];
        ByteBuffer b = ByteBuffer.wrap(m);
        b.put((byte) type).put((byte) 0).putShort((short) 0).putShort((short) id).putShort((short) seq).put(data);
        b.putShort(2, (short) (~fold(sum(m, 0, m.length, 0)) & 0xffff));
        return m;
    }

    static byte[] udp(byte[] src, byte[] dst, int sport, int dport, byte[] payload, Csum mode) {
        byte[] u = new byte[8 + payload.length];
        ByteBuffer b = ByteBuffer.wrap(u);
        b.putShort((short) sport).putShort((short) dport).putShort((short) u.length).putShort((short) 0).put(payload);
        fillL4(u, 6, src, dst, PROTO_UDP, mode);
        return u;
    }

    static byte[] tcp(byte[] src, byte[] dst, int sport, int dport, long seq, byte[] payload, Csum mode) {
        byte[] t = new byte[20 + payload.length];
        ByteBuffer b = ByteBuffer.wrap(t);
        b.putShort((short) sport).putShort((short) dport).putInt((int) seq).putInt(1)
                .put((byte) 0x50).put((byte) 0x18).putShort((short) 65535).putShort((short) 0).putShort((short) 0)
                .put(payload);
        fillL4(t, 16, src, dst, PROTO_TCP, mode);
        return t;
    }

    private static void fillL4(byte[] l4, int csumAt, byte[] src, byte[] dst, int proto, Csum mode) {
        long ps = pseudo(src, dst, proto, l4.length);
        int v;
        switch (mode) {
            case PSEUDO_ONLY:
                v = fold(ps); // what a driver leaves for NEEDS_CSUM: the folded pseudo-header sum, not inverted
                break;
            case BAD:
                v = (~fold(sum(l4, 0, l4.length, ps)) & 0xffff) ^ 0x5a5a;
                break;
            default:
                v = ~fold(sum(l4, 0, l4.length, ps)) & 0xffff;
                if (v == 0 && proto == PROTO_UDP) {
                    v = 0xffff;
                }
        }
        l4[csumAt] = (byte) (v >>> 8);
        l4[csumAt + 1] = (byte) v;
    }

    static int u16(byte[] f, int at) {
        return ((f[at] & 0xff) << 8) | (f[at + 1] & 0xff);
    }

    static boolean isIpv4(byte[] f, int proto) {
        return f.length >= ETH_HLEN + IP_HLEN && u16(f, 12) == 0x0800 && (f[ETH_HLEN + 9] & 0xff) == proto;
    }

    /** True if the L4 checksum of an IPv4 frame verifies (sum over pseudo header and segment is 0xffff). */
    static boolean l4ChecksumValid(byte[] f) {
        int ihl = (f[ETH_HLEN] & 0x0f) * 4;
        int total = u16(f, ETH_HLEN + 2);
        int l4len = total - ihl;
        byte[] src = new byte[4];
        byte[] dst = new byte[4];
        System.arraycopy(f, ETH_HLEN + 12, src, 0, 4);
        System.arraycopy(f, ETH_HLEN + 16, dst, 0, 4);
        int proto = f[ETH_HLEN + 9] & 0xff;
        long s = proto == PROTO_ICMP ? 0 : pseudo(src, dst, proto, l4len);
        return fold(sum(f, ETH_HLEN + ihl, l4len, s)) == 0xffff;
    }

    static String describe(byte[] f) {
        if (f.length < ETH_HLEN) {
            return "runt(" + f.length + ")";
        }
        StringBuilder sb = new StringBuilder("eth type 0x" + Integer.toHexString(u16(f, 12)) + " len " + f.length);
        if (u16(f, 12) == 0x0800 && f.length >= ETH_HLEN + IP_HLEN) {
            sb.append(" proto ").append(f[ETH_HLEN + 9] & 0xff);
        }
        return sb.toString();
    }
}
