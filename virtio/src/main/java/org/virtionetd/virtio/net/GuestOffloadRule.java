package org.virtionetd.virtio.net;

/**
 * May a received frame go to the driver with its virtio_net_hdr as it is, given the GUEST_* offloads the driver
 * accepted (virtio 1.2, 5.1.6.4.1 "Device Requirements: Processing of Incoming Packets")? The one copy of that rule:
 * the device checks every frame with it before the driver sees it, and the backends that can complete an offload in
 * software ask it which frames they must complete.
 *
 * <ul>
 *   <li>NEEDS_CSUM only with GUEST_CSUM. Without it the checksum is partial and the frame cannot be fixed by
 *       clearing a bit ("MUST set flags to zero and SHOULD supply a fully checksummed packet").</li>
 *   <li>Any other flag (DATA_VALID) without GUEST_CSUM is cleared: the frame is complete, only the flag may not
 *       reach the driver.</li>
 *   <li>The GSO_ECN bit only with GUEST_ECN.</li>
 *   <li>TCPV4 only with GUEST_TSO4, TCPV6 only with GUEST_TSO6, UDP only with GUEST_UFO: the gso_type names the IP
 *       version. UDP_L4 does not, so it is decided by the frame's own IP version: GUEST_USO4 "Driver can receive
 *       USOv4 packets", GUEST_USO6 "... USOv6 packets" (5.1.3); a USO frame that is neither IPv4 nor IPv6 cannot be
 *       received by either. (5.1.6.4.1 only forbids UDP_L4 when neither bit was negotiated; the feature bits say
 *       which of the two a frame needs.)</li>
 *   <li>A gso_type that does not exist never.</li>
 * </ul>
 *
 * <p>Pure and allocation-free: called once per received frame.
 */
public final class GuestOffloadRule {
    /** What to do with a frame whose header the driver is about to see. */
    public enum Verdict {
        /** Every offload the header asks for was accepted: deliver as it is. */
        DELIVER,
        /** Deliver, with flags set to zero first (DATA_VALID without GUEST_CSUM). */
        DELIVER_WITHOUT_FLAGS,
        /** The header asks for an offload the driver did not accept: complete it in software, or drop the frame. */
        REFUSE;

        /** The frame may reach the driver (possibly after its flags are cleared). */
        public boolean deliverable() {
            return this != REFUSE;
        }
    }

    private GuestOffloadRule() {
    }

    /**
     * The verdict for a frame with header {@code flags} and {@code gsoType} and IP version {@code ipVersion} (4, 6,
     * or 0 when not IP or not known) for a driver that accepted {@code guestOffloads} (GUEST_* bits; others are
     * ignored). {@code ipVersion} is only read for UDP_L4 ({@link #needsIpVersion}); callers may pass 0 otherwise.
     */
    public static Verdict verdict(long guestOffloads, int flags, int gsoType, int ipVersion) {
        if (flags == 0 && gsoType == VirtioNetHeader.GSO_NONE) {
            return Verdict.DELIVER;
        }
        boolean csum = VirtioNetFeature.has(guestOffloads, VirtioNetFeature.GUEST_CSUM);
        if ((flags & VirtioNetHeader.F_NEEDS_CSUM) != 0 && !csum) {
            return Verdict.REFUSE;
        }
        if ((gsoType & VirtioNetHeader.GSO_ECN) != 0 && !VirtioNetFeature.has(guestOffloads, VirtioNetFeature.GUEST_ECN)) {
            return Verdict.REFUSE;
        }
        int proto = gsoType & ~VirtioNetHeader.GSO_ECN;
        if (proto != VirtioNetHeader.GSO_NONE
                && (guestOffloads & VirtioNetFeature.guestFeatureFor(proto, ipVersion)) == 0) {
            return Verdict.REFUSE; // guestFeatureFor is 0 for a type that does not exist
        }
        return flags != 0 && !csum ? Verdict.DELIVER_WITHOUT_FLAGS : Verdict.DELIVER;
    }

    /** True when the verdict for {@code gsoType} depends on the frame's IP version (UDP_L4, with or without ECN). */
    public static boolean needsIpVersion(int gsoType) {
        return (gsoType & ~VirtioNetHeader.GSO_ECN) == VirtioNetHeader.GSO_UDP_L4;
    }
}
