package org.virtionetd.virtio.testdriver;

/**
 * Control virtqueue classes, commands and acks (virtio 1.2, 5.1.6.5). A command is
 * {@code u8 class; u8 command; u8 command-specific-data[]} device-readable, then {@code u8 ack} device-writable.
 */
public final class VirtioNetCtrl {
    public static final int OK = 0;
    public static final int ERR = 1;
    /** The device returned the command with used len 0: per 2.7.8 the driver may not look at the ack byte. */
    public static final int NO_ACK = -1;

    public static final int CLASS_RX = 0;
    public static final int RX_PROMISC = 0;
    public static final int RX_ALLMULTI = 1;
    public static final int RX_ALLUNI = 2;
    public static final int RX_NOMULTI = 3;
    public static final int RX_NOUNI = 4;
    public static final int RX_NOBCAST = 5;

    public static final int CLASS_MAC = 1;
    public static final int MAC_TABLE_SET = 0;
    public static final int MAC_ADDR_SET = 1;

    public static final int CLASS_VLAN = 2;
    public static final int VLAN_ADD = 0;
    public static final int VLAN_DEL = 1;

    public static final int CLASS_ANNOUNCE = 3;
    public static final int ANNOUNCE_ACK = 0;

    public static final int CLASS_MQ = 4;
    public static final int MQ_VQ_PAIRS_SET = 0;

    public static final int CLASS_GUEST_OFFLOADS = 5;
    public static final int GUEST_OFFLOADS_SET = 0;

    private VirtioNetCtrl() {
    }
}
