package org.virtionetd.virtio.device;

/**
 * Device-independent feature bits (virtio 1.2, section 6 "Reserved Feature Bits"), plus the vhost-user bit 30
 * and VHOST_F_LOG_ALL (26), which share the same 64-bit word on a vhost-user socket.
 */
public final class VirtioFeature {
    public static final int NOTIFY_ON_EMPTY = 24;
    public static final int VHOST_F_LOG_ALL = 26;
    public static final int ANY_LAYOUT = 27;
    public static final int RING_INDIRECT_DESC = 28;
    public static final int RING_EVENT_IDX = 29;
    public static final int VHOST_USER_F_PROTOCOL_FEATURES = 30;
    public static final int VERSION_1 = 32;
    public static final int ACCESS_PLATFORM = 33;
    public static final int RING_PACKED = 34;
    public static final int IN_ORDER = 35;
    public static final int ORDER_PLATFORM = 36;
    public static final int SR_IOV = 37;
    public static final int NOTIFICATION_DATA = 38;
    public static final int RING_RESET = 40;

    private VirtioFeature() {
    }

    public static long bit(int b) {
        return 1L << b;
    }

    public static boolean has(long features, int b) {
        return (features & (1L << b)) != 0;
    }
}
