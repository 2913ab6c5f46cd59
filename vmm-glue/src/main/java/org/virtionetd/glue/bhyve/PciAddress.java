package org.virtionetd.glue.bhyve;

/**
 * A PCI function as bhyve names it: bus 0..255, slot 0..31, function 0..7 (pci_emul.c MAXBUSES, MAXSLOTS,
 * MAXFUNCS). Its config node is {@code pci.B.S.F} (bhyve_config(5)).
 */
public record PciAddress(int bus, int slot, int func) implements Comparable<PciAddress> {
    public static final int MAX_BUSES = 256;
    public static final int MAX_SLOTS = 32;
    public static final int MAX_FUNCS = 8;

    public PciAddress {
        if (bus < 0 || bus >= MAX_BUSES || slot < 0 || slot >= MAX_SLOTS || func < 0 || func >= MAX_FUNCS) {
            throw new IllegalArgumentException("PCI address " + bus + ":" + slot + ":" + func
                    + " is outside bus 0..255, slot 0..31, function 0..7");
        }
    }

    /** The bhyve config node, {@code pci.B.S.F}. */
    public String node() {
        return "pci." + bus + "." + slot + "." + func;
    }

    /** bhyve's spelling in messages: {@code B:S:F}. */
    @Override
    public String toString() {
        return bus + ":" + slot + ":" + func;
    }

    @Override
    public int compareTo(PciAddress o) {
        return Integer.compare((bus << 8) | (slot << 3) | func, (o.bus << 8) | (o.slot << 3) | o.func);
    }
}
