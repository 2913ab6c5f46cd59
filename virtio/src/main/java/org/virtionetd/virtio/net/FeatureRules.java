package org.virtionetd.virtio.net;

import org.virtionetd.virtio.device.VirtioFeature;

import static org.virtionetd.virtio.net.VirtioNetFeature.*;

/**
 * Which features the device offers and which combinations a driver may ack (virtio 1.2, 5.1.3.1
 * "Feature bit requirements"). Pure functions, tested bit by bit.
 */
public final class FeatureRules {
    /**
     * What every virtio-netd device offers, whatever its backend. CTRL_RX_EXTRA comes with CTRL_RX so that the
     * ALLUNI/NOMULTI/NOUNI/NOBCAST modes can be used (5.1.6.5.1), as QEMU does by default.
     */
    public static final long BASE = bits(MAC, STATUS, MTU, MRG_RXBUF, CTRL_VQ, CTRL_RX, CTRL_RX_EXTRA, CTRL_VLAN, CTRL_MAC_ADDR,
            GUEST_ANNOUNCE, CTRL_GUEST_OFFLOADS, MQ, SPEED_DUPLEX)
            | VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX)
            | VirtioFeature.bit(VirtioFeature.RING_INDIRECT_DESC)
            | VirtioFeature.bit(VirtioFeature.RING_PACKED)
            | VirtioFeature.bit(VirtioFeature.IN_ORDER)
            | VirtioFeature.bit(VirtioFeature.VERSION_1);

    /** {feature, one of these must also be acked} pairs of 5.1.3.1. */
    private static final long[][] REQUIRES = {
            {bit(GUEST_TSO4), bit(GUEST_CSUM)},
            {bit(GUEST_TSO6), bit(GUEST_CSUM)},
            {bit(GUEST_ECN), bit(GUEST_TSO4) | bit(GUEST_TSO6)},
            {bit(GUEST_UFO), bit(GUEST_CSUM)},
            {bit(GUEST_USO4), bit(GUEST_CSUM)},
            {bit(GUEST_USO6), bit(GUEST_CSUM)},
            {bit(HOST_TSO4), bit(CSUM)},
            {bit(HOST_TSO6), bit(CSUM)},
            {bit(HOST_ECN), bit(HOST_TSO4) | bit(HOST_TSO6)},
            {bit(HOST_UFO), bit(CSUM)},
            {bit(HOST_USO), bit(CSUM)},
            {bit(CTRL_RX), bit(CTRL_VQ)},
            {bit(CTRL_VLAN), bit(CTRL_VQ)},
            {bit(GUEST_ANNOUNCE), bit(CTRL_VQ)},
            {bit(MQ), bit(CTRL_VQ)},
            {bit(CTRL_MAC_ADDR), bit(CTRL_VQ)},
            {bit(CTRL_RX_EXTRA), bit(CTRL_RX)},
            {bit(RSC_EXT), bit(HOST_TSO4) | bit(HOST_TSO6)},
    };

    private FeatureRules() {
    }

    private static long bit(int b) {
        return 1L << b;
    }

    /**
     * Offered features: the base set, MQ only with several pairs (5.1.3: max_virtqueue_pairs exists only with MQ),
     * and exactly the offload bits the backend can carry, closed under the dependencies (a bit whose
     * requirement the backend lacks is not offered either).
     */
    public static long offered(long backendCapabilities, int queuePairs) {
        long offered = BASE | (backendCapabilities & OFFLOADS);
        if (queuePairs <= 1) {
            offered &= ~bit(MQ);
        }
        boolean changed = true;
        while (changed) {
            changed = false;
            for (long[] rule : REQUIRES) {
                if ((offered & rule[0]) != 0 && (offered & rule[1]) == 0) {
                    offered &= ~rule[0];
                    changed = true;
                }
            }
        }
        return offered;
    }

    /**
     * What can be in effect of {@code acked}: less every bit whose requirement of 5.1.3.1 is not in it, repeated
     * until nothing changes (GUEST_ECN goes with GUEST_TSO4/6 when those go for lack of GUEST_CSUM). Bits in
     * {@code assumed} count as present for the requirements (a front-end's own features) but are not added.
     */
    public static long effective(long acked, long assumed) {
        long f = acked | assumed;
        boolean changed = true;
        while (changed) {
            changed = false;
            for (long[] rule : REQUIRES) {
                if ((f & rule[0]) != 0 && (f & rule[1]) == 0) {
                    f &= ~rule[0];
                    changed = true;
                }
            }
        }
        return f & acked;
    }

    /**
     * Null if the driver may ack {@code acked} given {@code offered}, else the reason naming the bit.
     */
    public static String check(long acked, long offered) {
        long extra = acked & ~offered;
        if (extra != 0) {
            return "driver acked features the device did not offer: " + names(extra);
        }
        for (long[] rule : REQUIRES) {
            if ((acked & rule[0]) != 0 && (acked & rule[1]) == 0) {
                return "driver acked " + names(rule[0]) + " without " + String.join(" or ", names(rule[1]))
                        + " (virtio 1.2, 5.1.3.1)";
            }
        }
        return null;
    }

    /** The GUEST_* offloads a CTRL_GUEST_OFFLOADS_SET may ask for: a subset of the acked GUEST_* bits (5.1.6.5.6.1). */
    public static String checkGuestOffloads(long requested, long acked) {
        long allowed = acked & GUEST_OFFLOADS;
        if ((requested & ~allowed) != 0) {
            return "guest offloads " + names(requested & ~allowed) + " were not negotiated";
        }
        for (long[] rule : REQUIRES) {
            if ((rule[0] & GUEST_OFFLOADS) != 0 && (requested & rule[0]) != 0 && (requested & rule[1]) == 0) {
                return "guest offloads " + names(rule[0]) + " without " + String.join(" or ", names(rule[1]));
            }
        }
        return null;
    }

    private static java.util.List<String> names(long bits) {
        return VirtioNetFeature.names(bits);
    }
}
