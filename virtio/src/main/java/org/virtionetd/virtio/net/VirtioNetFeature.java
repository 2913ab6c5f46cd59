package org.virtionetd.virtio.net;

import org.virtionetd.virtio.device.VirtioFeature;

import java.util.ArrayList;
import java.util.List;

/**
 * The network device's feature bits (virtio 1.2, section 5.1.3) and the names users see in the feature table.
 * Names are exactly those of Linux's uapi headers (VIRTIO_NET_F_*, VIRTIO_F_*, VIRTIO_RING_F_*).
 */
public final class VirtioNetFeature {
    public static final int CSUM = 0;
    public static final int GUEST_CSUM = 1;
    public static final int CTRL_GUEST_OFFLOADS = 2;
    public static final int MTU = 3;
    public static final int MAC = 5;
    public static final int GSO = 6;
    public static final int GUEST_TSO4 = 7;
    public static final int GUEST_TSO6 = 8;
    public static final int GUEST_ECN = 9;
    public static final int GUEST_UFO = 10;
    public static final int HOST_TSO4 = 11;
    public static final int HOST_TSO6 = 12;
    public static final int HOST_ECN = 13;
    public static final int HOST_UFO = 14;
    public static final int MRG_RXBUF = 15;
    public static final int STATUS = 16;
    public static final int CTRL_VQ = 17;
    public static final int CTRL_RX = 18;
    public static final int CTRL_VLAN = 19;
    public static final int CTRL_RX_EXTRA = 20;
    public static final int GUEST_ANNOUNCE = 21;
    public static final int MQ = 22;
    public static final int CTRL_MAC_ADDR = 23;
    public static final int NOTF_COAL = 53;
    public static final int GUEST_USO4 = 54;
    public static final int GUEST_USO6 = 55;
    public static final int HOST_USO = 56;
    public static final int HASH_REPORT = 57;
    public static final int GUEST_HDRLEN = 59;
    public static final int RSS = 60;
    public static final int RSC_EXT = 61;
    public static final int STANDBY = 62;
    public static final int SPEED_DUPLEX = 63;

    /** Offloads of packets the guest sends (device-side segmentation/checksum): the backend must carry these. */
    public static final long HOST_OFFLOADS = bits(CSUM, HOST_TSO4, HOST_TSO6, HOST_ECN, HOST_UFO, HOST_USO);
    /** Offloads of packets the guest receives: GSO frames and partial checksums handed to the guest. */
    public static final long GUEST_OFFLOADS = bits(GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO,
            GUEST_USO4, GUEST_USO6);
    /** Every offload bit a backend may declare in {@code capabilities()}. */
    public static final long OFFLOADS = HOST_OFFLOADS | GUEST_OFFLOADS;

    private static final String[] NAMES = new String[64];

    static {
        name(CSUM, "VIRTIO_NET_F_CSUM");
        name(GUEST_CSUM, "VIRTIO_NET_F_GUEST_CSUM");
        name(CTRL_GUEST_OFFLOADS, "VIRTIO_NET_F_CTRL_GUEST_OFFLOADS");
        name(MTU, "VIRTIO_NET_F_MTU");
        name(MAC, "VIRTIO_NET_F_MAC");
        name(GSO, "VIRTIO_NET_F_GSO");
        name(GUEST_TSO4, "VIRTIO_NET_F_GUEST_TSO4");
        name(GUEST_TSO6, "VIRTIO_NET_F_GUEST_TSO6");
        name(GUEST_ECN, "VIRTIO_NET_F_GUEST_ECN");
        name(GUEST_UFO, "VIRTIO_NET_F_GUEST_UFO");
        name(HOST_TSO4, "VIRTIO_NET_F_HOST_TSO4");
        name(HOST_TSO6, "VIRTIO_NET_F_HOST_TSO6");
        name(HOST_ECN, "VIRTIO_NET_F_HOST_ECN");
        name(HOST_UFO, "VIRTIO_NET_F_HOST_UFO");
        name(MRG_RXBUF, "VIRTIO_NET_F_MRG_RXBUF");
        name(STATUS, "VIRTIO_NET_F_STATUS");
        name(CTRL_VQ, "VIRTIO_NET_F_CTRL_VQ");
        name(CTRL_RX, "VIRTIO_NET_F_CTRL_RX");
        name(CTRL_VLAN, "VIRTIO_NET_F_CTRL_VLAN");
        name(CTRL_RX_EXTRA, "VIRTIO_NET_F_CTRL_RX_EXTRA");
        name(GUEST_ANNOUNCE, "VIRTIO_NET_F_GUEST_ANNOUNCE");
        name(MQ, "VIRTIO_NET_F_MQ");
        name(CTRL_MAC_ADDR, "VIRTIO_NET_F_CTRL_MAC_ADDR");
        name(VirtioFeature.NOTIFY_ON_EMPTY, "VIRTIO_F_NOTIFY_ON_EMPTY");
        name(VirtioFeature.VHOST_F_LOG_ALL, "VHOST_F_LOG_ALL");
        name(VirtioFeature.ANY_LAYOUT, "VIRTIO_F_ANY_LAYOUT");
        name(VirtioFeature.RING_INDIRECT_DESC, "VIRTIO_RING_F_INDIRECT_DESC");
        name(VirtioFeature.RING_EVENT_IDX, "VIRTIO_RING_F_EVENT_IDX");
        name(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES, "VHOST_USER_F_PROTOCOL_FEATURES");
        name(VirtioFeature.VERSION_1, "VIRTIO_F_VERSION_1");
        name(VirtioFeature.ACCESS_PLATFORM, "VIRTIO_F_ACCESS_PLATFORM");
        name(VirtioFeature.RING_PACKED, "VIRTIO_F_RING_PACKED");
        name(VirtioFeature.IN_ORDER, "VIRTIO_F_IN_ORDER");
        name(VirtioFeature.ORDER_PLATFORM, "VIRTIO_F_ORDER_PLATFORM");
        name(VirtioFeature.SR_IOV, "VIRTIO_F_SR_IOV");
        name(VirtioFeature.NOTIFICATION_DATA, "VIRTIO_F_NOTIFICATION_DATA");
        name(VirtioFeature.RING_RESET, "VIRTIO_F_RING_RESET");
        name(NOTF_COAL, "VIRTIO_NET_F_NOTF_COAL");
        name(GUEST_USO4, "VIRTIO_NET_F_GUEST_USO4");
        name(GUEST_USO6, "VIRTIO_NET_F_GUEST_USO6");
        name(HOST_USO, "VIRTIO_NET_F_HOST_USO");
        name(HASH_REPORT, "VIRTIO_NET_F_HASH_REPORT");
        name(GUEST_HDRLEN, "VIRTIO_NET_F_GUEST_HDRLEN");
        name(RSS, "VIRTIO_NET_F_RSS");
        name(RSC_EXT, "VIRTIO_NET_F_RSC_EXT");
        name(STANDBY, "VIRTIO_NET_F_STANDBY");
        name(SPEED_DUPLEX, "VIRTIO_NET_F_SPEED_DUPLEX");
    }

    private VirtioNetFeature() {
    }

    private static void name(int bit, String n) {
        NAMES[bit] = n;
    }

    public static long bits(int... bitNumbers) {
        long v = 0;
        for (int b : bitNumbers) {
            v |= 1L << b;
        }
        return v;
    }

    /**
     * The feature a driver-sent GSO frame of {@code gsoProtocol} (gso_type without ECN) needs (5.1.6.2.1):
     * HOST_TSO4/TSO6/UFO/USO as a mask, 0 for GSO_NONE or a type that does not exist.
     */
    public static long hostFeatureFor(int gsoProtocol) {
        switch (gsoProtocol) {
            case VirtioNetHeader.GSO_TCPV4: return 1L << HOST_TSO4;
            case VirtioNetHeader.GSO_TCPV6: return 1L << HOST_TSO6;
            case VirtioNetHeader.GSO_UDP: return 1L << HOST_UFO;
            case VirtioNetHeader.GSO_UDP_L4: return 1L << HOST_USO;
            default: return 0;
        }
    }

    /**
     * The feature a driver must have accepted to receive a GSO frame of {@code gsoProtocol} (gso_type without ECN)
     * whose IP version is {@code ipVersion} (4, 6, or 0 when not IP) (5.1.3, 5.1.6.4.1): GUEST_TSO4/TSO6/UFO by the
     * type alone (it names the IP version), GUEST_USO4 or GUEST_USO6 by the frame's IP version for UDP_L4 (0 when
     * it is neither); 0 for GSO_NONE or a type that does not exist.
     */
    public static long guestFeatureFor(int gsoProtocol, int ipVersion) {
        switch (gsoProtocol) {
            case VirtioNetHeader.GSO_TCPV4: return 1L << GUEST_TSO4;
            case VirtioNetHeader.GSO_TCPV6: return 1L << GUEST_TSO6;
            case VirtioNetHeader.GSO_UDP: return 1L << GUEST_UFO;
            case VirtioNetHeader.GSO_UDP_L4:
                return ipVersion == 4 ? 1L << GUEST_USO4 : ipVersion == 6 ? 1L << GUEST_USO6 : 0;
            default: return 0;
        }
    }

    public static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }

    /** The spec name of a bit, or "BIT_n" for one without a name. */
    public static String name(int bit) {
        String n = NAMES[bit];
        return n != null ? n : "BIT_" + bit;
    }

    /** Bit number for a spec name (with or without the VIRTIO_NET_F_ prefix), or -1. */
    public static int bitOf(String name) {
        for (int i = 0; i < 64; i++) {
            String n = NAMES[i];
            if (n != null && (n.equals(name) || n.endsWith("_F_" + name))) {
                return i;
            }
        }
        return -1;
    }

    /** The names of the set bits, lowest first. */
    public static List<String> names(long features) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            if ((features & (1L << i)) != 0) {
                out.add(name(i));
            }
        }
        return out;
    }
}
