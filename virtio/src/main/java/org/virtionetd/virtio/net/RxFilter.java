package org.virtionetd.virtio.net;

import java.util.Arrays;

/**
 * The receive filter the driver programs through the control queue (virtio 1.2, 5.1.6.5.1 - 5.1.6.5.3): RX
 * modes, MAC tables and VLAN table. Immutable: the control path builds a new one and publishes it through a
 * volatile field, so RX threads read it without locks.
 *
 * <p>At reset the device is promiscuous (as QEMU): a driver without CTRL_RX then gets every frame, and Linux turns
 * promiscuous mode off itself when it negotiates CTRL_RX. Without CTRL_VLAN every VLAN passes.
 */
public final class RxFilter {
    private final byte[] mac;
    private final boolean promisc;
    private final boolean allmulti;
    private final boolean alluni;
    private final boolean nomulti;
    private final boolean nouni;
    private final boolean nobcast;
    private final long[] unicast;
    private final long[] multicast;
    /** One bit per VLAN id; null means "every VLAN passes" (CTRL_VLAN not negotiated). */
    private final long[] vlans;

    private RxFilter(byte[] mac, boolean promisc, boolean allmulti, boolean alluni, boolean nomulti, boolean nouni,
                     boolean nobcast, long[] unicast, long[] multicast, long[] vlans) {
        this.mac = mac;
        this.promisc = promisc;
        this.allmulti = allmulti;
        this.alluni = alluni;
        this.nomulti = nomulti;
        this.nouni = nouni;
        this.nobcast = nobcast;
        this.unicast = unicast;
        this.multicast = multicast;
        this.vlans = vlans;
    }

    /** The filter after reset: promiscuous, no tables, all VLANs unless {@code vlanFiltering}. */
    public static RxFilter initial(byte[] mac, boolean vlanFiltering) {
        return new RxFilter(mac.clone(), true, false, false, false, false, false, new long[0], new long[0],
                vlanFiltering ? new long[64] : null);
    }

    public static long macToLong(byte[] b, int off) {
        long v = 0;
        for (int i = 0; i < 6; i++) {
            v = (v << 8) | (b[off + i] & 0xff);
        }
        return v;
    }

    /** VIRTIO_NET_CTRL_RX commands 0..5: PROMISC, ALLMULTI, ALLUNI, NOMULTI, NOUNI, NOBCAST. */
    public RxFilter withMode(int command, boolean on) {
        boolean p = promisc, am = allmulti, au = alluni, nm = nomulti, nu = nouni, nb = nobcast;
        switch (command) {
            case 0: p = on; break;
            case 1: am = on; break;
            case 2: au = on; break;
            case 3: nm = on; break;
            case 4: nu = on; break;
            case 5: nb = on; break;
            default: throw new IllegalArgumentException("RX mode command " + command);
        }
        return new RxFilter(mac, p, am, au, nm, nu, nb, unicast, multicast, vlans);
    }

    public RxFilter withTables(long[] uni, long[] multi) {
        return new RxFilter(mac, promisc, allmulti, alluni, nomulti, nouni, nobcast, uni.clone(), multi.clone(), vlans);
    }

    public RxFilter withMac(byte[] newMac) {
        return new RxFilter(newMac.clone(), promisc, allmulti, alluni, nomulti, nouni, nobcast, unicast, multicast,
                vlans);
    }

    public RxFilter withVlan(int vid, boolean on) {
        long[] v = vlans == null ? null : vlans.clone();
        if (v != null) {
            if (on) {
                v[vid >>> 6] |= 1L << (vid & 63);
            } else {
                v[vid >>> 6] &= ~(1L << (vid & 63));
            }
        }
        return new RxFilter(mac, promisc, allmulti, alluni, nomulti, nouni, nobcast, unicast, multicast, v);
    }

    public byte[] mac() {
        return mac.clone();
    }

    public boolean promiscuous() {
        return promisc;
    }

    public boolean vlanAllowed(int vid) {
        return vlans == null || (vlans[vid >>> 6] & (1L << (vid & 63))) != 0;
    }

    /**
     * Whether a frame whose first bytes are given passes. {@code dst} is the destination MAC as a 48-bit value,
     * {@code vid} the 802.1Q VLAN id or -1 for an untagged frame.
     */
    public boolean accepts(long dst, int vid) {
        if (promisc) {
            return true;
        }
        if (vid >= 0 && !vlanAllowed(vid)) {
            return false;
        }
        if (dst == 0xffff_ffff_ffffL) {
            return !nobcast;
        }
        if ((dst & 0x0100_0000_0000L) != 0) { // group bit: first octet's lowest bit
            if (nomulti) {
                return false;
            }
            return allmulti || contains(multicast, dst);
        }
        if (nouni) {
            return false;
        }
        return alluni || dst == macToLong(mac, 0) || contains(unicast, dst);
    }

    private static boolean contains(long[] table, long v) {
        for (long x : table) {
            if (x == v) {
                return true;
            }
        }
        return false;
    }

    @Override
    public String toString() {
        return "RxFilter[promisc=" + promisc + " allmulti=" + allmulti + " alluni=" + alluni + " nomulti=" + nomulti
                + " nouni=" + nouni + " nobcast=" + nobcast + " uni=" + unicast.length + " multi=" + multicast.length
                + " vlans=" + (vlans == null ? "all" : Long.toString(Arrays.stream(vlans).map(Long::bitCount).sum()))
                + "]";
    }
}
