package org.virtionetd.backends.fuzz;

/**
 * Where the headers of an Ethernet frame are, found by the checker itself (not the engine's FrameLayout):
 * Ethernet II, up to two 802.1Q/802.1ad tags, IPv4 with options or IPv6 with hop-by-hop, routing, destination
 * options and fragment headers, then TCP or UDP.
 */
final class Frame {
    int l3;
    int ipVersion;
    int l4;
    int proto;
    /** First payload byte after the L4 header. */
    int payload;

    /** The layout, or null when the bytes do not hold the headers they announce. */
    static Frame parse(byte[] b) {
        Frame f = new Frame();
        if (b.length < 14) {
            return null;
        }
        int off = 12;
        int type = Checksums.u16(b, off);
        for (int tags = 0; (type == 0x8100 || type == 0x88a8) && tags < 2; tags++) {
            off += 4;
            if (off + 2 > b.length) {
                return null;
            }
            type = Checksums.u16(b, off);
        }
        f.l3 = off + 2;
        if (type == 0x0800) {
            if (f.l3 + 20 > b.length) {
                return null;
            }
            f.ipVersion = 4;
            f.proto = b[f.l3 + 9] & 0xff;
            f.l4 = f.l3 + (b[f.l3] & 0x0f) * 4;
        } else if (type == 0x86dd) {
            if (f.l3 + 40 > b.length) {
                return null;
            }
            f.ipVersion = 6;
            int next = b[f.l3 + 6] & 0xff;
            int at = f.l3 + 40;
            while (next == 0 || next == 43 || next == 60 || next == 44) {
                if (at + 8 > b.length) {
                    return null;
                }
                int len = next == 44 ? 8 : ((b[at + 1] & 0xff) + 1) * 8;
                next = b[at] & 0xff;
                at += len;
            }
            f.proto = next;
            f.l4 = at;
        } else {
            return null;
        }
        if (f.proto == 6) {
            if (f.l4 + 20 > b.length) {
                return null;
            }
            f.payload = f.l4 + ((b[f.l4 + 12] & 0xff) >>> 4) * 4;
        } else if (f.proto == 17) {
            f.payload = f.l4 + 8;
        } else {
            return null;
        }
        return f.payload <= b.length ? f : null;
    }
}
