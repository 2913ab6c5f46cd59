package org.virtionetd.backends.tap.uapi;

/**
 * Constants of Linux {@code include/uapi/linux/if_tun.h} (and the bits of {@code linux/if.h} / {@code asm-generic/ioctl.h}
 * they need), with the same names. The ioctl numbers are written out as the kernel's {@code _IOR/_IOW} encoding
 * computes them for x86-64 / arm64 (asm-generic layout); {@code IfTunTest} recomputes each from its definition.
 */
public final class IfTun {
    /** {@code IFNAMSIZ}: interface names are at most 15 bytes plus the terminating NUL. */
    public static final int IFNAMSIZ = 16;
    /** {@code sizeof(struct ifreq)} on 64-bit Linux: the name and a 24-byte union. */
    public static final int IFREQ_SIZE = 40;
    /** Offset of {@code ifr_flags} (a short) in {@code struct ifreq}. */
    public static final int IFR_FLAGS_OFFSET = 16;

    /** {@code _IOW('T', 202, int)}: attach this fd to a tun/tap interface (creating it if needed). */
    public static final long TUNSETIFF = 0x400454caL;
    /** {@code _IOR('T', 207, unsigned int)}: the IFF_* flags this kernel supports. */
    public static final long TUNGETFEATURES = 0x800454cfL;
    /** {@code _IOW('T', 208, unsigned int)}: the TUN_F_* offloads the reader accepts; argument passed by value. */
    public static final long TUNSETOFFLOAD = 0x400454d0L;
    /** {@code _IOR('T', 210, unsigned int)}: name and flags of the interface this fd is attached to. */
    public static final long TUNGETIFF = 0x800454d2L;
    /** {@code _IOR('T', 215, int)}: current vnet header size. */
    public static final long TUNGETVNETHDRSZ = 0x800454d7L;
    /** {@code _IOW('T', 216, int)}: vnet header size (at least sizeof(struct virtio_net_hdr) = 10). */
    public static final long TUNSETVNETHDRSZ = 0x400454d8L;
    /** {@code _IOW('T', 217, int)}: attach or detach this fd's queue of a multi-queue tap (ifr_flags). */
    public static final long TUNSETQUEUE = 0x400454d9L;

    /** Ethernet frames (tap), not IP packets (tun). */
    public static final int IFF_TAP = 0x0002;
    /** No struct tun_pi in front of each frame. */
    public static final int IFF_NO_PI = 0x1000;
    /** Each frame is preceded by a virtio_net_hdr of TUNSETVNETHDRSZ bytes. */
    public static final int IFF_VNET_HDR = 0x4000;
    /** One fd per queue; every fd attached with the same name becomes one more queue. */
    public static final int IFF_MULTI_QUEUE = 0x0100;
    /** TUNSETQUEUE: the kernel may put frames on this queue again. */
    public static final int IFF_ATTACH_QUEUE = 0x0200;
    /** TUNSETQUEUE: the kernel steers no frame to this queue (the fd stays open). */
    public static final int IFF_DETACH_QUEUE = 0x0400;

    /** "You can hand me unchecksummed packets": the reader takes NEEDS_CSUM frames. */
    public static final int TUN_F_CSUM = 0x01;
    /** The reader takes TCPv4 GSO frames. */
    public static final int TUN_F_TSO4 = 0x02;
    /** The reader takes TCPv6 GSO frames. */
    public static final int TUN_F_TSO6 = 0x04;
    /** The reader takes TSO frames with the ECN (CWR) bit. */
    public static final int TUN_F_TSO_ECN = 0x08;
    /** The reader takes UFO frames (accepted by kernels since 4.14 but never produced any more). */
    public static final int TUN_F_UFO = 0x10;
    /** The reader takes UDP GSO (USO) frames over IPv4; since Linux 6.2, only together with USO6. */
    public static final int TUN_F_USO4 = 0x20;
    /** The reader takes UDP GSO (USO) frames over IPv6. */
    public static final int TUN_F_USO6 = 0x40;

    private IfTun() {
    }
}
