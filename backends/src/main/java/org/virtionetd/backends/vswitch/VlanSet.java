package org.virtionetd.backends.vswitch;

/**
 * The VLANs a switch port is a member of (IEEE 802.1Q VLAN ids 1..4094, and 0 for untagged frames), parsed from
 * {@code vlans=0,10,20-29}. A port without the option is a member of every VLAN ({@link #ALL}). Immutable.
 */
public final class VlanSet {
    public static final VlanSet ALL = new VlanSet(null, "all");
    private final long[] bits;
    private final String text;

    private VlanSet(long[] bits, String text) {
        this.bits = bits;
        this.text = text;
    }

    /** Parses a list of ids and ranges separated by ':' or ';' (a ',' separates backend options). */
    public static VlanSet parse(String text) {
        if (text == null || text.isEmpty()) {
            throw new IllegalArgumentException("vlans list is empty; expected ids 0..4094, e.g. vlans=0:10:20-29");
        }
        long[] b = new long[64];
        for (String part : text.split("[:;]", -1)) {
            int dash = part.indexOf('-');
            int lo = id(text, dash < 0 ? part : part.substring(0, dash));
            int hi = dash < 0 ? lo : id(text, part.substring(dash + 1));
            if (hi < lo) {
                throw new IllegalArgumentException("vlans '" + text + "': range " + part + " is empty");
            }
            for (int v = lo; v <= hi; v++) {
                b[v >>> 6] |= 1L << (v & 63);
            }
        }
        return new VlanSet(b, text);
    }

    private static int id(String text, String s) {
        int v;
        try {
            v = Integer.parseInt(s);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("vlans '" + text + "': '" + s + "' is not a VLAN id");
        }
        if (v < 0 || v > 4094) {
            throw new IllegalArgumentException("vlans '" + text + "': VLAN id " + v + " is outside 0..4094");
        }
        return v;
    }

    public boolean contains(int vid) {
        return bits == null || (bits[(vid & 0xfff) >>> 6] & (1L << (vid & 63))) != 0;
    }

    @Override
    public String toString() {
        return text;
    }
}
