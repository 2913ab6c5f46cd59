package org.virtionetd.virtio.net;

/**
 * Validation of the header of a packet the driver transmits (virtio 1.2, 5.1.6.2 "Packet Transmission"),
 * done once here so that every backend can trust what it is handed.
 *
 * <p>Each rule returns a {@link Verdict} that names the rule that broke; the device drops that packet and counts
 * it under the verdict's name, never failing the device: one hostile or buggy header costs that packet only
 * (docs/security.md, "Guest data and the logs").
 *
 * <p>{@link #offloadsCarried} is the part that compares the header with a feature set: the device asks it about
 * the negotiated features, a backend that completes offloads in software about the ones its own backend carries.
 */
public final class HeaderCheck {
    /** Why a transmitted header was refused; OK when it was not. */
    public enum Verdict {
        OK,
        /** NEEDS_CSUM set but VIRTIO_NET_F_CSUM was not negotiated (5.1.6.2.1). */
        CSUM_NOT_NEGOTIATED,
        /** csum_start + csum_offset + 2 runs past the end of the frame. */
        CSUM_OUT_OF_FRAME,
        /** A gso_type whose HOST_* feature was not negotiated (5.1.6.2.1). */
        GSO_NOT_NEGOTIATED,
        /** gso_type is not one of NONE, TCPV4, UDP, TCPV6, UDP_L4. */
        GSO_UNKNOWN,
        /** ECN bit set without HOST_ECN (5.1.6.2.1). */
        ECN_NOT_NEGOTIATED,
        /** A GSO type with gso_size 0. */
        GSO_SIZE_ZERO,
        /** TCP/UDP_L4 GSO without NEEDS_CSUM: the spec requires the partial checksum for segmentation. */
        GSO_WITHOUT_CSUM,
        /** Flags other than NEEDS_CSUM / DATA_VALID set by the driver (DATA_VALID and RSC_INFO are RX-only). */
        BAD_FLAGS,
        /** Frame shorter than an Ethernet header, or a GSO frame not longer than its headers. */
        FRAME_TOO_SHORT
    }

    private static final int ETH_HLEN = 14;

    private HeaderCheck() {
    }

    /**
     * Checks a transmitted header against the negotiated features and the frame length (bytes after the header).
     */
    public static Verdict transmitted(VirtioNetHeader h, long negotiated, int frameLength) {
        if (frameLength < ETH_HLEN) {
            return Verdict.FRAME_TOO_SHORT;
        }
        int flags = h.flags();
        // 5.1.6.2.1: the driver MUST NOT set DATA_VALID or RSC_INFO; Linux never does. Refuse unknown bits.
        if ((flags & ~VirtioNetHeader.F_NEEDS_CSUM) != 0) {
            return Verdict.BAD_FLAGS;
        }
        int gso = h.gsoType();
        Verdict carried = offloadsCarried(negotiated, flags, gso);
        if (carried == Verdict.CSUM_NOT_NEGOTIATED) {
            return carried;
        }
        if ((flags & VirtioNetHeader.F_NEEDS_CSUM) != 0 && h.csumStart() + h.csumOffset() + 2 > frameLength) {
            return Verdict.CSUM_OUT_OF_FRAME;
        }
        if (carried != Verdict.OK || (gso & ~VirtioNetHeader.GSO_ECN) == VirtioNetHeader.GSO_NONE) {
            return carried;
        }
        int proto = gso & ~VirtioNetHeader.GSO_ECN;
        if (h.gsoSize() == 0) {
            return Verdict.GSO_SIZE_ZERO;
        }
        if (proto != VirtioNetHeader.GSO_UDP && (flags & VirtioNetHeader.F_NEEDS_CSUM) == 0) {
            return Verdict.GSO_WITHOUT_CSUM;
        }
        if (frameLength <= ETH_HLEN + 20) {
            return Verdict.FRAME_TOO_SHORT;
        }
        return Verdict.OK;
    }

    /**
     * Whether {@code features} include what a header with {@code flags} and {@code gsoType} asks of the side that
     * sends the packet on (5.1.6.2.1): NEEDS_CSUM needs CSUM, each gso_type its HOST_TSO4/TSO6/UFO/USO, the ECN bit
     * HOST_ECN. OK, or the first of CSUM_NOT_NEGOTIATED, GSO_UNKNOWN (no such type, or ECN without a type: Linux's
     * virtio_net_hdr_to_skb refuses it too), GSO_NOT_NEGOTIATED, ECN_NOT_NEGOTIATED. Flags other than NEEDS_CSUM
     * are not looked at. Pure and allocation-free.
     */
    public static Verdict offloadsCarried(long features, int flags, int gsoType) {
        if ((flags & VirtioNetHeader.F_NEEDS_CSUM) != 0 && !VirtioNetFeature.has(features, VirtioNetFeature.CSUM)) {
            return Verdict.CSUM_NOT_NEGOTIATED;
        }
        int proto = gsoType & ~VirtioNetHeader.GSO_ECN;
        if (proto == VirtioNetHeader.GSO_NONE) {
            return (gsoType & VirtioNetHeader.GSO_ECN) != 0 ? Verdict.GSO_UNKNOWN : Verdict.OK;
        }
        long needed = VirtioNetFeature.hostFeatureFor(proto);
        if (needed == 0) {
            return Verdict.GSO_UNKNOWN;
        }
        if ((features & needed) == 0) {
            return Verdict.GSO_NOT_NEGOTIATED;
        }
        if ((gsoType & VirtioNetHeader.GSO_ECN) != 0 && !VirtioNetFeature.has(features, VirtioNetFeature.HOST_ECN)) {
            return Verdict.ECN_NOT_NEGOTIATED;
        }
        return Verdict.OK;
    }
}
