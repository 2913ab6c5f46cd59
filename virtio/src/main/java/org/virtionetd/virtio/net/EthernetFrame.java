package org.virtionetd.virtio.net;

import java.nio.ByteBuffer;

/**
 * The Ethernet facts the device and the backends both read from a frame: the EtherTypes of IPv4, IPv6 and the VLAN
 * tags (Linux include/uapi/linux/if_ether.h), and the IP version behind up to two 802.1Q / 802.1ad tags (IEEE 802.1Q
 * section 9). The frame is hostile: nothing is read past the bytes available, nothing throws on its content.
 */
public final class EthernetFrame {
    public static final int ETH_HLEN = 14;
    public static final int ETH_P_IP = 0x0800;
    public static final int ETH_P_IPV6 = 0x86dd;
    public static final int ETH_P_8021Q = 0x8100;
    public static final int ETH_P_8021AD = 0x88a8;
    public static final int VLAN_HLEN = 4;
    public static final int MAX_VLAN_TAGS = 2;
    /** Bytes that always hold the EtherType after the most tags {@link #ipVersionOf} walks. */
    public static final int IP_VERSION_PREFIX = ETH_HLEN + MAX_VLAN_TAGS * VLAN_HLEN;

    private EthernetFrame() {
    }

    /** True for the EtherType of a VLAN tag (802.1Q C-tag or 802.1ad S-tag). */
    public static boolean isVlanTag(int etherType) {
        return etherType == ETH_P_8021Q || etherType == ETH_P_8021AD;
    }

    /**
     * The IP version (4 or 6) of the frame at {@code buf[base, base + available)} from its EtherType after up to
     * two VLAN tags, or 0 when it is not IP or too short to tell.
     */
    public static int ipVersionOf(ByteBuffer buf, int base, int available) {
        int off = 12;
        for (int tags = 0; ; tags++) {
            if (off + 2 > available) {
                return 0;
            }
            int type = ((buf.get(base + off) & 0xff) << 8) | (buf.get(base + off + 1) & 0xff);
            if (type == ETH_P_IP) {
                return 4;
            }
            if (type == ETH_P_IPV6) {
                return 6;
            }
            if (!isVlanTag(type) || tags == MAX_VLAN_TAGS) {
                return 0;
            }
            off += VLAN_HLEN;
        }
    }
}
