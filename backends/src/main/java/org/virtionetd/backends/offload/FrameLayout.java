package org.virtionetd.backends.offload;

import org.virtionetd.virtio.net.EthernetFrame;

import java.nio.ByteBuffer;

/**
 * Where the headers of an Ethernet frame are: a reusable flyweight filled by {@link #parse}. Offsets are from the
 * start of the frame. The frame is hostile (guest or peer data): every header is checked against the bytes
 * available before it is read, and nothing here throws on frame content.
 *
 * <p>Parsed: Ethernet II with up to two 802.1Q (0x8100) / 802.1ad (0x88a8) tags (IEEE 802.1Q section 9), IPv4
 * with options (RFC 791), IPv6 with hop-by-hop, routing, destination options and fragment headers (RFC 8200
 * section 4), TCP with options (RFC 9293 section 3.1), UDP (RFC 768).
 */
public final class FrameLayout {
    public static final int ETH_HLEN = EthernetFrame.ETH_HLEN;
    public static final int ETH_P_IP = EthernetFrame.ETH_P_IP;
    public static final int ETH_P_IPV6 = EthernetFrame.ETH_P_IPV6;
    public static final int ETH_P_8021Q = EthernetFrame.ETH_P_8021Q;
    public static final int ETH_P_8021AD = EthernetFrame.ETH_P_8021AD;
    public static final int VLAN_HLEN = EthernetFrame.VLAN_HLEN;
    public static final int MAX_VLAN_TAGS = EthernetFrame.MAX_VLAN_TAGS;

    public static final int IPPROTO_HOPOPTS = 0;
    public static final int IPPROTO_TCP = 6;
    public static final int IPPROTO_UDP = 17;
    public static final int IPPROTO_ROUTING = 43;
    public static final int IPPROTO_FRAGMENT = 44;
    public static final int IPPROTO_DSTOPTS = 60;

    public static final int IPV4_MIN_HLEN = 20;
    public static final int IPV6_HLEN = 40;
    public static final int IPV6_FRAG_HLEN = 8;
    public static final int TCP_MIN_HLEN = 20;
    public static final int UDP_HLEN = 8;
    /** The most IPv6 extension headers walked before giving up (a guard against long chains). */
    public static final int MAX_IPV6_EXTENSIONS = 8;

    private int vlanTags;
    private int etherType;
    private int l3Offset;
    private int ipVersion;
    private int ipHeaderLength;
    private int l4Offset;
    private int l4Protocol;
    private int l4HeaderLength;
    private boolean fragment;
    private boolean ipv6Extensions;
    private boolean routingPending;
    private int nextHeaderOffset;

    /**
     * Parses the frame whose first {@code available} bytes are at {@code buf[base, base + available)} and whose
     * whole length is {@code frameLength} (>= available). Reads only inside the available bytes, absolute access.
     *
     * @return OK, or why the frame cannot be described (the fields are then meaningless)
     */
    public OffloadResult parse(ByteBuffer buf, int base, int available, int frameLength) {
        clear();
        if (available < 0 || available > frameLength || base < 0 || base > buf.limit() - available) {
            throw new IllegalArgumentException("parse window [" + base + ", +" + available + ") frame "
                    + frameLength + " buffer limit " + buf.limit());
        }
        OffloadResult r = need(ETH_HLEN, available, frameLength);
        if (r != OffloadResult.OK) {
            return r;
        }
        int off = 12;
        int type = u16(buf, base + off);
        while (type == ETH_P_8021Q || type == ETH_P_8021AD) {
            if (vlanTags == MAX_VLAN_TAGS) {
                return OffloadResult.TOO_MANY_VLAN_TAGS;
            }
            vlanTags++;
            off += VLAN_HLEN;
            r = need(off + 2, available, frameLength);
            if (r != OffloadResult.OK) {
                return r;
            }
            type = u16(buf, base + off);
        }
        etherType = type;
        l3Offset = off + 2;
        if (type == ETH_P_IP) {
            return parseIpv4(buf, base, available, frameLength);
        }
        if (type == ETH_P_IPV6) {
            return parseIpv6(buf, base, available, frameLength);
        }
        return OffloadResult.NOT_IP;
    }

    private OffloadResult parseIpv4(ByteBuffer buf, int base, int available, int frameLength) {
        OffloadResult r = need(l3Offset + IPV4_MIN_HLEN, available, frameLength);
        if (r != OffloadResult.OK) {
            return r;
        }
        int vihl = buf.get(base + l3Offset) & 0xff;
        int ihl = (vihl & 0x0f) * 4;
        if ((vihl >>> 4) != 4 || ihl < IPV4_MIN_HLEN) {
            return OffloadResult.BAD_IPV4_HEADER;
        }
        r = need(l3Offset + ihl, available, frameLength);
        if (r != OffloadResult.OK) {
            return r;
        }
        ipVersion = 4;
        ipHeaderLength = ihl;
        int fragOff = u16(buf, base + l3Offset + 6);
        // MF set or a non-zero fragment offset: this datagram is a fragment (RFC 791, section 3.1).
        fragment = (fragOff & 0x3fff) != 0;
        nextHeaderOffset = l3Offset + 9;
        l4Protocol = buf.get(base + nextHeaderOffset) & 0xff;
        l4Offset = l3Offset + ihl;
        return parseL4(buf, base, available, frameLength);
    }

    private OffloadResult parseIpv6(ByteBuffer buf, int base, int available, int frameLength) {
        OffloadResult r = need(l3Offset + IPV6_HLEN, available, frameLength);
        if (r != OffloadResult.OK) {
            return r;
        }
        if (((buf.get(base + l3Offset) & 0xff) >>> 4) != 6) {
            return OffloadResult.BAD_IPV6_HEADER;
        }
        ipVersion = 6;
        nextHeaderOffset = l3Offset + 6;
        int next = buf.get(base + nextHeaderOffset) & 0xff;
        int off = l3Offset + IPV6_HLEN;
        for (int n = 0; ; n++) {
            if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS
                    && next != IPPROTO_FRAGMENT) {
                break;
            }
            // RFC 8200 4.3: hop-by-hop options only immediately after the IPv6 header.
            if (n == MAX_IPV6_EXTENSIONS || (next == IPPROTO_HOPOPTS && n != 0)) {
                return OffloadResult.BAD_IPV6_EXTENSION;
            }
            r = need(off + 8, available, frameLength);
            if (r != OffloadResult.OK) {
                return r;
            }
            ipv6Extensions = true;
            int len;
            if (next == IPPROTO_FRAGMENT) {
                fragment = true;
                len = IPV6_FRAG_HLEN;
            } else {
                // Hdr Ext Len: 8-octet units, not counting the first 8 octets (RFC 8200 4.3, 4.4, 4.6).
                len = ((buf.get(base + off + 1) & 0xff) + 1) * 8;
                if (next == IPPROTO_ROUTING && (buf.get(base + off + 3) & 0xff) != 0) {
                    routingPending = true;
                }
            }
            r = need(off + len, available, frameLength);
            if (r != OffloadResult.OK) {
                return r;
            }
            nextHeaderOffset = off;
            next = buf.get(base + off) & 0xff;
            off += len;
        }
        ipHeaderLength = off - l3Offset;
        l4Protocol = next;
        l4Offset = off;
        return parseL4(buf, base, available, frameLength);
    }

    private OffloadResult parseL4(ByteBuffer buf, int base, int available, int frameLength) {
        if (l4Protocol == IPPROTO_TCP) {
            OffloadResult r = need(l4Offset + TCP_MIN_HLEN, available, frameLength);
            if (r != OffloadResult.OK) {
                return r;
            }
            int doff = ((buf.get(base + l4Offset + 12) & 0xff) >>> 4) * 4;
            if (doff < TCP_MIN_HLEN) {
                return OffloadResult.BAD_TCP_HEADER;
            }
            if (l4Offset + doff > frameLength) {
                return OffloadResult.BAD_TCP_HEADER;
            }
            r = need(l4Offset + doff, available, frameLength);
            if (r != OffloadResult.OK) {
                return r;
            }
            l4HeaderLength = doff;
        } else if (l4Protocol == IPPROTO_UDP) {
            OffloadResult r = need(l4Offset + UDP_HLEN, available, frameLength);
            if (r != OffloadResult.OK) {
                return r;
            }
            l4HeaderLength = UDP_HLEN;
        }
        return OffloadResult.OK;
    }

    private static OffloadResult need(int end, int available, int frameLength) {
        if (end > frameLength) {
            return OffloadResult.FRAME_TOO_SHORT;
        }
        if (end > available) {
            return OffloadResult.HEADERS_TOO_LONG;
        }
        return OffloadResult.OK;
    }

    private static int u16(ByteBuffer buf, int index) {
        return ((buf.get(index) & 0xff) << 8) | (buf.get(index + 1) & 0xff);
    }

    private void clear() {
        vlanTags = 0;
        etherType = 0;
        l3Offset = 0;
        ipVersion = 0;
        ipHeaderLength = 0;
        l4Offset = 0;
        l4Protocol = -1;
        l4HeaderLength = 0;
        fragment = false;
        ipv6Extensions = false;
        routingPending = false;
        nextHeaderOffset = 0;
    }

    /** Number of VLAN tags (0..2). */
    public int vlanTags() {
        return vlanTags;
    }

    /** The EtherType after the VLAN tags. */
    public int etherType() {
        return etherType;
    }

    public int l3Offset() {
        return l3Offset;
    }

    /** 4, 6, or 0 if not IP. */
    public int ipVersion() {
        return ipVersion;
    }

    /** IPv4 IHL * 4, or 40 + all IPv6 extension headers. */
    public int ipHeaderLength() {
        return ipHeaderLength;
    }

    public int l4Offset() {
        return l4Offset;
    }

    /** IP protocol / final IPv6 next header; -1 if not IP. */
    public int l4Protocol() {
        return l4Protocol;
    }

    /** TCP data offset * 4, 8 for UDP, 0 for other protocols. */
    public int l4HeaderLength() {
        return l4HeaderLength;
    }

    /** Offset of the first byte after the L4 header: where the payload starts. */
    public int payloadOffset() {
        return l4Offset + l4HeaderLength;
    }

    /** The datagram is an IP fragment (IPv4 MF / fragment offset, or an IPv6 fragment header). */
    public boolean fragment() {
        return fragment;
    }

    /** IPv6 with at least one extension header. */
    public boolean ipv6Extensions() {
        return ipv6Extensions;
    }

    /** An IPv6 routing header with segments left != 0. */
    public boolean routingPending() {
        return routingPending;
    }

    /** Offset of the byte that holds the L4 protocol number (IPv4 protocol, or the last next-header field). */
    public int nextHeaderOffset() {
        return nextHeaderOffset;
    }

    @Override
    public String toString() {
        return "FrameLayout[vlans=" + vlanTags + " l3=" + l3Offset + " ipv" + ipVersion + " iphl=" + ipHeaderLength
                + " l4=" + l4Offset + " proto=" + l4Protocol + " l4hl=" + l4HeaderLength + "]";
    }
}
