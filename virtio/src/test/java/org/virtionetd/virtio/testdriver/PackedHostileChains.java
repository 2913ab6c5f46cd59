package org.virtionetd.virtio.testdriver;

import java.util.ArrayList;
import java.util.List;

import static org.virtionetd.virtio.testdriver.PackedQueueDriver.DESC_F_INDIRECT;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.DESC_F_NEXT;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.DESC_F_WRITE;

/**
 * Packed rings a conforming driver must never make (virtio 1.2, 2.8), one builder per rule, as
 * {@link HostileChains} does for the split ring: the rules both formats share (2.8.4 order, 2.8.8 indirect
 * tables, buffers inside memory) and those of the packed ring alone (flags that contradict the wrap counters,
 * a chain with NEXT all round the ring, a buffer ID beyond the queue). Each builder places and publishes; a
 * chain the device can return is outstanding, so {@link PackedQueueDriver#pollUsed()} reads it back.
 */
public final class PackedHostileChains {
    private final PackedQueueDriver q;

    public PackedHostileChains(QueueDriver queue) {
        if (!(queue instanceof PackedQueueDriver packed)) {
            throw new IllegalArgumentException("queue " + queue.name() + " is not packed: use HostileChains");
        }
        this.q = packed;
    }

    // ---- the rules both formats share ----

    /** An indirect table whose entry 1 is itself INDIRECT (2.8.8: the device MUST NOT follow a table in a table). */
    public Chain nestedIndirect() {
        long inner = q.allocator().allocate(16, 16, false);
        Placed data = place(Buffer.readable(new byte[] {9, 9, 9, 9}));
        q.writeIndirectEntry(inner, 0, data.address(), data.length(), 0);
        long outer = q.allocator().allocate(32, 16, false);
        Placed first = place(Buffer.readable(new byte[] {1, 2, 3}));
        q.writeIndirectEntry(outer, 0, first.address(), first.length(), 0);
        q.writeIndirectEntry(outer, 1, inner, 16, DESC_F_INDIRECT);
        return indirectHead(outer, 32, List.of(first, data, new Placed(inner, 16, false, true)),
                "hostile: indirect inside indirect");
    }

    /** An INDIRECT descriptor whose len is {@code tableLength} (not a multiple of 16, or 0). */
    public Chain indirectTableLength(int tableLength) {
        long table = q.allocator().allocate(Math.max(32, tableLength + 16), 16, false);
        Placed a = place(Buffer.readable(new byte[] {1, 2, 3, 4}));
        Placed b = place(Buffer.readable(new byte[] {5, 6, 7, 8}));
        q.writeIndirectEntry(table, 0, a.address(), a.length(), 0);
        q.writeIndirectEntry(table, 1, b.address(), b.length(), 0);
        return indirectHead(table, tableLength, List.of(a, b), "hostile: indirect table of " + tableLength + " bytes");
    }

    /** An INDIRECT descriptor with NEXT, another descriptor after it (2.8.8: MUST NOT set both). */
    public Chain indirectWithNext() {
        long table = q.allocator().allocate(16, 16, false);
        Placed a = place(Buffer.readable(new byte[] {1, 2, 3, 4}));
        q.writeIndirectEntry(table, 0, a.address(), a.length(), 0);
        Placed b = place(Buffer.readable(new byte[] {5, 6, 7, 8}));
        return chain(List.of(new long[] {table, 16, DESC_F_INDIRECT}, new long[] {b.address(), b.length(), 0}),
                List.of(a, b), table, 16, "hostile: INDIRECT with NEXT");
    }

    /** An indirect table of queue size + 1 entries: more descriptors than the queue has (2.8.8). */
    public Chain chainLongerThanQueue() {
        int n = q.size() + 1;
        long table = q.allocator().allocate(16L * n, 16, false);
        List<Placed> placed = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Placed p = place(Buffer.readable(new byte[] {(byte) i}));
            placed.add(p);
            q.writeIndirectEntry(table, i, p.address(), p.length(), 0);
        }
        return indirectHead(table, 16 * n, placed, "hostile: indirect chain of " + n + " > queue size");
    }

    /** One descriptor {@code [addr, addr + len)} that need not be guest memory. */
    public Chain rawDescriptor(long addr, int len, boolean writable) {
        Placed p = new Placed(addr, len, writable, false);
        return chain(List.<long[]>of(new long[] {addr, len, writable ? DESC_F_WRITE : 0}), List.of(p), -1, 0,
                "hostile: descriptor 0x" + Long.toHexString(addr) + "+" + Integer.toUnsignedString(len));
    }

    /** A readable header followed by a descriptor whose address is outside guest memory. */
    public Chain addressOutsideMemory(boolean writable) {
        Placed head = place(Buffer.readable(new byte[12]));
        Placed out = new Placed(HostileChains.OUTSIDE, 64, writable, false);
        return chain(List.of(new long[] {head.address(), head.length(), 0},
                        new long[] {HostileChains.OUTSIDE, 64, writable ? DESC_F_WRITE : 0}),
                List.of(head, out), -1, 0, "hostile: address outside guest memory");
    }

    /** A descriptor whose address + length wraps past 2^64. */
    public Chain addressWrapping(boolean writable) {
        return rawDescriptor(0xffff_ffff_ffff_f000L, 0x2000, writable);
    }

    /** A descriptor of length 0xffffffff starting inside guest memory. */
    public Chain hugeLength(boolean writable) {
        Placed p = place(Buffer.readable(new byte[16]));
        return rawDescriptor(p.address(), -1, writable);
    }

    /** An indirect table outside guest memory. */
    public Chain indirectTableOutsideMemory() {
        return indirectHead(HostileChains.OUTSIDE, 32, List.of(), "hostile: indirect table outside memory");
    }

    /** Writable element then readable element (2.8.4: device-writable descriptors come after readable ones). */
    public Chain writableBeforeReadable() {
        Placed w = place(Buffer.writable(64));
        Placed r = place(Buffer.readable(new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
        return chain(List.of(new long[] {w.address(), w.length(), DESC_F_WRITE}, new long[] {r.address(), r.length(), 0}),
                List.of(w, r), -1, 0, "hostile: writable before readable");
    }

    // ---- the packed ring's own rules ----

    /** A readable chain whose buffer ID is {@code size + offset} (2.8.6: IDs index the driver's buffers). */
    public Chain bufferIdOutOfRange(int offset) {
        Placed p = place(Buffer.readable(new byte[20]));
        Chain c = q.placeRaw(List.<long[]>of(new long[] {p.address(), p.length(), 0}), List.of(p), -1, 0,
                "hostile: buffer ID " + (q.size() + offset), q.size() + offset);
        q.publish();
        return c;
    }

    /**
     * The descriptor at the next avail slot with AVAIL and USED both equal to the avail wrap counter: a descriptor
     * used in this lap, where the device has not been yet (2.8.1). Nothing is outstanding.
     */
    public void flagsContradictWrap() {
        int slot = q.slotOfNextAvail();
        Placed p = place(Buffer.readable(new byte[20]));
        q.writeDescriptor(slot, p.address(), p.length(), 0,
                q.availWrap() ? PackedQueueDriver.DESC_F_AVAIL | PackedQueueDriver.DESC_F_USED : 0);
    }

    /** As many descriptors as the ring has, NEXT on every one, so the chain never ends (2.8.6). */
    public Chain chainWrapsRing() {
        int n = q.size();
        List<long[]> ring = new ArrayList<>();
        List<Placed> placed = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Placed p = place(Buffer.readable(new byte[] {(byte) i, 1}));
            placed.add(p);
            ring.add(new long[] {p.address(), p.length(), DESC_F_NEXT});
        }
        return chain(ring, placed, -1, 0, "hostile: NEXT on all " + n + " descriptors");
    }

    /**
     * A two-descriptor chain whose head is available and whose second descriptor keeps the flags it had (not
     * available in this lap): 2.8.21.3 has the driver make the rest of a chain available before its head.
     */
    public Chain laterDescriptorNotAvailable() {
        Placed a = place(Buffer.readable(new byte[12]));
        Placed b = place(Buffer.readable(new byte[40]));
        int id = q.takeId(2);
        Chain c = q.placeRaw(List.of(new long[] {a.address(), a.length(), 0}, new long[] {b.address(), b.length(), 0}),
                List.of(a, b), -1, 0, "hostile: second descriptor not available", id);
        int second = c.slots().get(1);
        // The chain's last slot is in the lap before the next avail position only if that position is slot 0.
        boolean wrapOfSecond = q.slotOfNextAvail() == 0 ? !q.availWrap() : q.availWrap();
        // Its own wrap counter inverted: AVAIL/USED as a driver leaves a slot it has not made available in this lap.
        q.writeDescriptor(second, b.address(), b.length(), id, PackedQueueDriver.availFlags(!wrapOfSecond));
        q.publish();
        return c;
    }

    private Placed place(Buffer b) {
        return Placement.place(q.allocator(), b, q.name());
    }

    private Chain indirectHead(long table, int tableLength, List<Placed> placed, String label) {
        boolean ownTable = table != HostileChains.OUTSIDE;
        return chain(List.<long[]>of(new long[] {table, tableLength, DESC_F_INDIRECT}), placed, ownTable ? table : -1,
                tableLength, label);
    }

    private Chain chain(List<long[]> ring, List<Placed> placed, long table, int tableLength, String label) {
        Chain c = q.placeRaw(ring, placed, table, tableLength, label, q.takeId(ring.size()));
        q.publish();
        return c;
    }
}
