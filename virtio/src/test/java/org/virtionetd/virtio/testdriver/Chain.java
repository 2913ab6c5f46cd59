package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;

import java.util.List;

/**
 * A descriptor chain the driver made available: its head index, the descriptor table slots it occupies
 * (recycled when the device returns the head), the buffer elements in order, and the indirect table if any.
 */
public final class Chain {
    private final int head;
    private final List<Integer> slots;
    private final List<Placed> elements;
    private final long indirectTable;
    private final int indirectLength;
    private final String label;

    Chain(int head, List<Integer> slots, List<Placed> elements, long indirectTable, int indirectLength,
          String label) {
        this.head = head;
        this.slots = List.copyOf(slots);
        this.elements = List.copyOf(elements);
        this.indirectTable = indirectTable;
        this.indirectLength = indirectLength;
        this.label = label;
    }

    public int head() {
        return head;
    }

    /** Descriptor table slots of the queue used by this chain (the indirect table's entries are not slots). */
    public List<Integer> slots() {
        return slots;
    }

    public List<Placed> elements() {
        return elements;
    }

    /** Guest address of the indirect table, or -1. */
    public long indirectTable() {
        return indirectTable;
    }

    /** Length in bytes of the indirect table (as put in the descriptor), or 0. */
    public int indirectLength() {
        return indirectLength;
    }

    /** What built this chain, e.g. "chain" or "hostile: descriptor loop". */
    public String label() {
        return label;
    }

    /** Total device-readable bytes (descriptor lengths are unsigned 32-bit). */
    public long readableLength() {
        long n = 0;
        for (Placed p : elements) {
            if (!p.writable()) {
                n += Integer.toUnsignedLong(p.length());
            }
        }
        return n;
    }

    /** Total device-writable bytes: the most a used element's len may say (2.7.8). */
    public long writableLength() {
        long n = 0;
        for (Placed p : elements) {
            if (p.writable()) {
                n += Integer.toUnsignedLong(p.length());
            }
        }
        return n;
    }

    /** The first {@code length} bytes of the device-writable elements, in chain order. */
    public byte[] readWritten(GuestMemory memory, int length) throws GuestMemoryException {
        if (length > writableLength()) {
            throw new IllegalArgumentException("chain " + head + " has " + writableLength()
                    + " writable bytes, asked for " + length);
        }
        byte[] out = new byte[length];
        int at = 0;
        for (Placed p : elements) {
            if (!p.writable() || at == length) {
                continue;
            }
            int n = Math.min(p.length(), length - at);
            memory.read(p.address(), out, at, n);
            at += n;
        }
        return out;
    }

    @Override
    public String toString() {
        return label + "{head=" + head + " slots=" + slots + " " + elements
                + (indirectTable >= 0 ? " indirect@0x" + Long.toHexString(indirectTable) + "/" + indirectLength : "")
                + "}";
    }
}
