package org.virtionetd.backends.tap.freebsd;

import java.util.ArrayList;
import java.util.List;

/**
 * FreeBSD interface capability bits (sys/net/if.h) and the tap ioctls (sys/net/if_tap.h, sys/sockio.h), encoded
 * as FreeBSD's {@code _IOC}: {@code inout | (len & 0x1fff) << 16 | group << 8 | num}, IOC_OUT 0x40000000,
 * IOC_IN 0x80000000; {@code sizeof(struct ifreq)} is 32 on 64-bit FreeBSD.
 */
public final class IfCap {
    public static final int IFCAP_RXCSUM = 0x00001;
    public static final int IFCAP_TXCSUM = 0x00002;
    public static final int IFCAP_VLAN_HWCSUM = 0x00080;
    public static final int IFCAP_TSO4 = 0x00100;
    public static final int IFCAP_TSO6 = 0x00200;
    public static final int IFCAP_LRO = 0x00400;
    public static final int IFCAP_VLAN_HWTSO = 0x40000;
    public static final int IFCAP_RXCSUM_IPV6 = 0x200000;
    public static final int IFCAP_TXCSUM_IPV6 = 0x400000;

    /** if_tuntap.c TAP_VNET_HDR_CAPS: what TAPSVNETHDR with a non-zero length adds to if_capabilities. */
    public static final int TAP_VNET_HDR_CAPS = IFCAP_RXCSUM | IFCAP_TXCSUM | IFCAP_RXCSUM_IPV6 | IFCAP_TXCSUM_IPV6
            | IFCAP_VLAN_HWCSUM | IFCAP_TSO4 | IFCAP_TSO6 | IFCAP_LRO | IFCAP_VLAN_HWTSO;

    /** {@code _IOW('t', 91, int)}. */
    public static final long TAPSVNETHDR = 0x8004745bL;
    /** {@code _IOR('t', 94, int)}. */
    public static final long TAPGVNETHDR = 0x4004745eL;
    /** TUNGIFNAME = {@code _IOR('t', 93, struct ifreq)}. */
    public static final long TAPGIFNAME = 0x4020745dL;
    /** {@code _IOW('i', 30, struct ifreq)}. */
    public static final long SIOCSIFCAP = 0x8020691eL;
    /** {@code _IOWR('i', 31, struct ifreq)}. */
    public static final long SIOCGIFCAP = 0xc020691fL;
    public static final int IFREQ_SIZE = 32;
    /** ifr_reqcap = ifr_ifru.ifru_cap[0], ifr_curcap = ifru_cap[1]. */
    public static final int IFR_REQCAP_OFFSET = 16;
    public static final int IFR_CURCAP_OFFSET = 20;

    private static final int[] BITS = {IFCAP_RXCSUM, IFCAP_TXCSUM, IFCAP_VLAN_HWCSUM, IFCAP_TSO4, IFCAP_TSO6,
        IFCAP_LRO, IFCAP_VLAN_HWTSO, IFCAP_RXCSUM_IPV6, IFCAP_TXCSUM_IPV6};
    private static final String[] NAMES = {"IFCAP_RXCSUM", "IFCAP_TXCSUM", "IFCAP_VLAN_HWCSUM", "IFCAP_TSO4",
        "IFCAP_TSO6", "IFCAP_LRO", "IFCAP_VLAN_HWTSO", "IFCAP_RXCSUM_IPV6", "IFCAP_TXCSUM_IPV6"};

    private IfCap() {
    }

    /** Names of the known set bits, in if.h order of the list above. */
    public static List<String> names(int caps) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < BITS.length; i++) {
            if ((caps & BITS[i]) != 0) {
                out.add(NAMES[i]);
            }
        }
        return out;
    }
}
