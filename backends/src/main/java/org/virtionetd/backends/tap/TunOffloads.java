package org.virtionetd.backends.tap;

import org.virtionetd.virtio.net.VirtioNetFeature;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_CSUM;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_TSO4;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_TSO6;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_TSO_ECN;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_UFO;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_USO4;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_USO6;

/**
 * The mapping between virtio-net offload features and the tap's TUNSETOFFLOAD flags, as pure functions.
 *
 * <p>Direction matters. TUN_F_* tell the kernel what the tap's reader (us) may be handed, i.e. what reaches the
 * guest: they follow the driver's GUEST_* bits (virtio 1.2, 5.1.3: GUEST_CSUM "driver handles packets with partial
 * checksum", GUEST_TSO4 "driver can receive TSOv4"...). What the guest transmits (CSUM, HOST_*) needs no flag: the
 * kernel parses the vnet header of every frame written to a tap with IFF_VNET_HDR.
 *
 * <p>Semantics mirrored from QEMU ({@code net/tap-linux.c} tap_fd_set_offload, {@code hw/net/virtio-net.c}): every
 * offload depends on GUEST_CSUM (a GSO frame always carries a partial checksum); TSO_ECN only with TSO4 or TSO6
 * (Linux's set_offload refuses it otherwise); if the kernel refuses the set, retry without USO4/USO6 (before 6.2),
 * then also without UFO.
 */
public final class TunOffloads {
    /** Every flag this project programs. */
    public static final int ALL = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO
            | TUN_F_USO4 | TUN_F_USO6;

    private static final int USO = TUN_F_USO4 | TUN_F_USO6;
    private static final int[] FLAGS = {TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_UFO,
        TUN_F_USO4, TUN_F_USO6};
    private static final String[] NAMES = {"TUN_F_CSUM", "TUN_F_TSO4", "TUN_F_TSO6", "TUN_F_TSO_ECN", "TUN_F_UFO",
        "TUN_F_USO4", "TUN_F_USO6"};

    /** One TUNSETOFFLOAD attempt: returns 0 on success or -errno (so that the fallback can go on). */
    @FunctionalInterface
    public interface Setter {
        int setOffload(int tunFlags);
    }

    private TunOffloads() {
    }

    /** The TUN_F_* flags for the driver's acked (or CTRL_GUEST_OFFLOADS_SET) GUEST_* bits; other bits ignored. */
    public static int fromGuestFeatures(long features) {
        if (!VirtioNetFeature.has(features, VirtioNetFeature.GUEST_CSUM)) {
            return 0; // no partial checksums, hence no GSO either: the kernel completes everything for us
        }
        int f = TUN_F_CSUM;
        boolean tso4 = VirtioNetFeature.has(features, VirtioNetFeature.GUEST_TSO4);
        boolean tso6 = VirtioNetFeature.has(features, VirtioNetFeature.GUEST_TSO6);
        if (tso4) {
            f |= TUN_F_TSO4;
        }
        if (tso6) {
            f |= TUN_F_TSO6;
        }
        if ((tso4 || tso6) && VirtioNetFeature.has(features, VirtioNetFeature.GUEST_ECN)) {
            f |= TUN_F_TSO_ECN;
        }
        if (VirtioNetFeature.has(features, VirtioNetFeature.GUEST_UFO)) {
            f |= TUN_F_UFO;
        }
        if (VirtioNetFeature.has(features, VirtioNetFeature.GUEST_USO4)) {
            f |= TUN_F_USO4;
        }
        if (VirtioNetFeature.has(features, VirtioNetFeature.GUEST_USO6)) {
            f |= TUN_F_USO6;
        }
        return f;
    }

    /**
     * The GUEST_* bits the device may offer when the kernel accepted {@code acceptedFlags} in a probe: the inverse
     * of {@link #fromGuestFeatures}. USO counts only as the pair (Linux accepts USO4 and USO6 only together).
     */
    public static long guestFeatures(int acceptedFlags) {
        if ((acceptedFlags & TUN_F_CSUM) == 0) {
            return 0;
        }
        long f = bit(VirtioNetFeature.GUEST_CSUM);
        if ((acceptedFlags & TUN_F_TSO4) != 0) {
            f |= bit(VirtioNetFeature.GUEST_TSO4);
        }
        if ((acceptedFlags & TUN_F_TSO6) != 0) {
            f |= bit(VirtioNetFeature.GUEST_TSO6);
        }
        if ((acceptedFlags & TUN_F_TSO_ECN) != 0 && (acceptedFlags & (TUN_F_TSO4 | TUN_F_TSO6)) != 0) {
            f |= bit(VirtioNetFeature.GUEST_ECN);
        }
        if ((acceptedFlags & TUN_F_UFO) != 0) {
            f |= bit(VirtioNetFeature.GUEST_UFO);
        }
        if ((acceptedFlags & USO) == USO) {
            f |= bit(VirtioNetFeature.GUEST_USO4) | bit(VirtioNetFeature.GUEST_USO6);
        }
        return f;
    }

    /**
     * The CSUM / HOST_* bits a tap with a vnet header carries, given what the same kernel accepted in the probe.
     * Checksum and TCP segmentation of written frames are as old as IFF_VNET_HDR. UFO frames are offered as QEMU
     * does (peer_has_ufo: the kernel accepts TUN_F_UFO, and since 4.14 segments such frames in software). UDP_L4
     * GSO in the vnet header came with TUN_F_USO4/6 in Linux 6.2, so accepting USO proves the kernel knows it.
     */
    public static long hostFeatures(int acceptedFlags) {
        long f = bit(VirtioNetFeature.CSUM) | bit(VirtioNetFeature.HOST_TSO4) | bit(VirtioNetFeature.HOST_TSO6)
                | bit(VirtioNetFeature.HOST_ECN);
        if ((acceptedFlags & TUN_F_UFO) != 0) {
            f |= bit(VirtioNetFeature.HOST_UFO);
        }
        if ((acceptedFlags & USO) == USO) {
            f |= bit(VirtioNetFeature.HOST_USO);
        }
        return f;
    }

    /**
     * The sets to try, in order: {@code wanted}; without USO4/USO6; then also without UFO. Sets equal to the one
     * before are left out, so every attempt differs.
     */
    public static int[] attempts(int wanted) {
        int[] out = new int[3];
        int n = 0;
        out[n++] = wanted;
        int noUso = wanted & ~USO;
        if (noUso != out[n - 1]) {
            out[n++] = noUso;
        }
        int noUfo = noUso & ~TUN_F_UFO;
        if (noUfo != out[n - 1]) {
            out[n++] = noUfo;
        }
        int[] r = new int[n];
        System.arraycopy(out, 0, r, 0, n);
        return r;
    }

    /**
     * Programs {@code wanted} with the fallback sequence; returns the flags the kernel accepted.
     *
     * @param what names the tap in the error message
     * @throws IOException if the kernel refused every attempt (the message lists them and the last errno)
     */
    public static int program(int wanted, Setter setter, String what) throws IOException {
        int lastErrno = 0;
        for (int attempt : attempts(wanted)) {
            int r = setter.setOffload(attempt);
            if (r >= 0) {
                return attempt;
            }
            lastErrno = -r;
        }
        throw new IOException("TUNSETOFFLOAD on " + what + " refused " + names(wanted) + " and its fallbacks: errno "
                + lastErrno);
    }

    /** Names of the set flags ("TUN_F_CSUM", ...), lowest first; unknown bits as hex. */
    public static List<String> names(int flags) {
        List<String> out = new ArrayList<>();
        int rest = flags;
        for (int i = 0; i < FLAGS.length; i++) {
            if ((flags & FLAGS[i]) != 0) {
                out.add(NAMES[i]);
                rest &= ~FLAGS[i];
            }
        }
        if (rest != 0) {
            out.add("0x" + Integer.toHexString(rest));
        }
        return out;
    }

    private static long bit(int b) {
        return 1L << b;
    }
}
