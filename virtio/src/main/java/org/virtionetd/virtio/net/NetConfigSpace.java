package org.virtionetd.virtio.net;

/**
 * The device-specific configuration structure (virtio 1.2, 5.1.4):
 * <pre>
 *   u8 mac[6]; le16 status; le16 max_virtqueue_pairs; le16 mtu; le32 speed; u8 duplex;
 *   u8 rss_max_key_size; le16 rss_max_indirection_table_length; le32 supported_hash_types;
 * </pre>
 * The legacy and modern layouts hold the same structure; only the transport's header before it differs
 * (and legacy fields are guest-endian, which is little-endian on the hosts we support). Fields whose feature is
 * not offered read as zero; RSS is not offered, so its fields are always zero.
 */
final class NetConfigSpace {
    static final int MAC_OFFSET = 0;
    static final int STATUS_OFFSET = 6;
    static final int MAX_PAIRS_OFFSET = 8;
    static final int MTU_OFFSET = 10;
    static final int SPEED_OFFSET = 12;
    static final int DUPLEX_OFFSET = 16;
    static final int SIZE = 24;

    static final int S_LINK_UP = 1;
    static final int S_ANNOUNCE = 2;
    static final int DUPLEX_FULL = 1;
    static final int DUPLEX_HALF = 0;
    static final int SPEED_UNKNOWN = -1;

    private NetConfigSpace() {
    }

    /** Lays the structure out from the current device values. */
    static byte[] render(byte[] mac, int status, int maxPairs, int mtu, int speed, boolean fullDuplex, long offered) {
        byte[] b = new byte[SIZE];
        if (VirtioNetFeature.has(offered, VirtioNetFeature.MAC)) {
            System.arraycopy(mac, 0, b, MAC_OFFSET, 6);
        }
        if (VirtioNetFeature.has(offered, VirtioNetFeature.STATUS)) {
            putLe(b, STATUS_OFFSET, status, 2);
        }
        if (VirtioNetFeature.has(offered, VirtioNetFeature.MQ)) {
            putLe(b, MAX_PAIRS_OFFSET, maxPairs, 2);
        }
        if (VirtioNetFeature.has(offered, VirtioNetFeature.MTU)) {
            putLe(b, MTU_OFFSET, mtu, 2);
        }
        if (VirtioNetFeature.has(offered, VirtioNetFeature.SPEED_DUPLEX)) {
            putLe(b, SPEED_OFFSET, speed, 4);
            b[DUPLEX_OFFSET] = (byte) (fullDuplex ? DUPLEX_FULL : DUPLEX_HALF);
        }
        return b;
    }

    private static void putLe(byte[] b, int at, int v, int n) {
        for (int i = 0; i < n; i++) {
            b[at + i] = (byte) (v >>> (8 * i));
        }
    }
}
