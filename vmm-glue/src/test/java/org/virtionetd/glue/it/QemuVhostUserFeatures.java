package org.virtionetd.glue.it;

import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.net.VirtioNetFeature;

/**
 * Which virtio-net feature bits QEMU 7.2 (Debian 12's qemu-system-x86) forwards to a vhost-user back-end.
 *
 * <p>QEMU 7.2, hw/net/vhost_net.c, {@code static const int user_feature_bits[]} (the list moved to
 * net/vhost-user.c in later releases): {@code vhost_net_ack_features} copies only these bits of what the guest
 * acked into the SET_FEATURES it sends, and {@code vhost_get_features} clears those of them the back-end did not
 * offer. Every other bit the guest negotiates (MAC, STATUS, CTRL_VQ, CTRL_RX, CTRL_VLAN, CTRL_RX_EXTRA,
 * CTRL_MAC_ADDR, CTRL_GUEST_OFFLOADS, ...) QEMU implements itself and never forwards. The list, in QEMU's order:
 * NOTIFY_ON_EMPTY, RING_INDIRECT_DESC, RING_EVENT_IDX, ANY_LAYOUT, VERSION_1, CSUM, GUEST_CSUM, GSO, GUEST_TSO4,
 * GUEST_TSO6, GUEST_ECN, GUEST_UFO, HOST_TSO4, HOST_TSO6, HOST_ECN, HOST_UFO, MRG_RXBUF, MTU, IOMMU_PLATFORM
 * (= ACCESS_PLATFORM), RING_PACKED, RING_RESET (added for 7.2 by "vhost: mask VIRTIO_F_RING_RESET for vhost and
 * vhost-user devices"), RSS, HASH_REPORT, GUEST_ANNOUNCE, MQ. (GUEST_USO4/6, HOST_USO, NOTIFICATION_DATA,
 * IN_ORDER, RSC_EXT came after 7.2.)
 */
final class QemuVhostUserFeatures {
    static final long USER_FEATURE_BITS = VirtioNetFeature.bits(
            VirtioFeature.NOTIFY_ON_EMPTY,
            VirtioFeature.RING_INDIRECT_DESC,
            VirtioFeature.RING_EVENT_IDX,
            VirtioFeature.ANY_LAYOUT,
            VirtioFeature.VERSION_1,
            VirtioNetFeature.CSUM,
            VirtioNetFeature.GUEST_CSUM,
            VirtioNetFeature.GSO,
            VirtioNetFeature.GUEST_TSO4,
            VirtioNetFeature.GUEST_TSO6,
            VirtioNetFeature.GUEST_ECN,
            VirtioNetFeature.GUEST_UFO,
            VirtioNetFeature.HOST_TSO4,
            VirtioNetFeature.HOST_TSO6,
            VirtioNetFeature.HOST_ECN,
            VirtioNetFeature.HOST_UFO,
            VirtioNetFeature.MRG_RXBUF,
            VirtioNetFeature.MTU,
            VirtioFeature.ACCESS_PLATFORM,
            VirtioFeature.RING_PACKED,
            VirtioFeature.RING_RESET,
            VirtioNetFeature.RSS,
            VirtioNetFeature.HASH_REPORT,
            VirtioNetFeature.GUEST_ANNOUNCE,
            VirtioNetFeature.MQ);

    private QemuVhostUserFeatures() {
    }

    /** What the back-end should have been told the driver acked, given the guest's negotiated features. */
    static long forwarded(long guestFeatures) {
        return guestFeatures & USER_FEATURE_BITS;
    }

    /** The bits of the guest's features that QEMU kept to itself. */
    static long keptByQemu(long guestFeatures) {
        return guestFeatures & ~USER_FEATURE_BITS;
    }
}
