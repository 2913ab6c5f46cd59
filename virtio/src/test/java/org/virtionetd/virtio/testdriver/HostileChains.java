package org.virtionetd.virtio.testdriver;

import java.util.ArrayList;
import java.util.List;

import static org.virtionetd.virtio.testdriver.SplitQueueDriver.VIRTQ_DESC_F_INDIRECT;
import static org.virtionetd.virtio.testdriver.SplitQueueDriver.VIRTQ_DESC_F_NEXT;
import static org.virtionetd.virtio.testdriver.SplitQueueDriver.VIRTQ_DESC_F_WRITE;

/**
 * Chains a conforming driver must never make, one builder per rule of the spec, for testing that the device
 * refuses them without crashing (a guest is hostile input: docs/security.md). Each builder places the chain in the
 * available ring and publishes it. Chains the device can return are tracked as outstanding, so a device that
 * answers them with {@code addUsed(head, 0)} is read back normally by {@link SplitQueueDriver#pollUsed()}.
 */
public final class HostileChains {
    /** A guest address far above any test memory. */
    public static final long OUTSIDE = 0x7fff_0000_0000L;

    private final SplitQueueDriver q;

    public HostileChains(SplitQueueDriver queue) {
        this.q = queue;
    }

    /** The same on a queue the caller knows is split ({@link VirtioNetDriver#queue} without RING_PACKED). */
    public HostileChains(QueueDriver queue) {
        if (!(queue instanceof SplitQueueDriver split)) {
            throw new IllegalArgumentException("queue " + queue.name() + " is not split: use PackedHostileChains");
        }
        this.q = split;
    }

    /** Descriptors d0 -> d1 -> ... -> d(n-1) -> d0 (2.7.5.2: "loops in the descriptor chain are forbidden"). */
    public Chain descriptorLoop(int length) {
        List<Integer> slots = q.takeSlots(length);
        List<Placed> placed = new ArrayList<>();
        for (int i = 0; i < length; i++) {
            Placed p = q.place(Buffer.readable(new byte[] {(byte) i, 1, 2, 3}));
            placed.add(p);
            q.writeDescriptor(slots.get(i), p.address(), p.length(), VIRTQ_DESC_F_NEXT,
                    slots.get((i + 1) % length));
        }
        return publish(new Chain(slots.get(0), slots, placed, -1, 0, "hostile: descriptor loop of " + length));
    }

    /**
     * An indirect table of queue size + 1 linear entries: a chain longer than the queue size without a loop
     * (2.7.5.3.1: "A driver MUST NOT create a descriptor chain longer than the Queue Size").
     */
    public Chain chainLongerThanQueue() {
        int n = q.size() + 1;
        List<Placed> placed = new ArrayList<>();
        long table = q.allocator().allocate(16L * n, 16, false);
        for (int i = 0; i < n; i++) {
            Placed p = q.place(Buffer.readable(new byte[] {(byte) i}));
            placed.add(p);
            boolean more = i + 1 < n;
            q.writeIndirectEntry(table, i, p.address(), p.length(), more ? VIRTQ_DESC_F_NEXT : 0, more ? i + 1 : 0);
        }
        return indirectHead(table, 16 * n, placed, "hostile: indirect chain of " + n + " > queue size");
    }

    /** An indirect table whose entry 1 is itself INDIRECT (2.7.5.3.1: only one table per descriptor). */
    public Chain nestedIndirect() {
        long inner = q.allocator().allocate(16, 16, false);
        Placed data = q.place(Buffer.readable(new byte[] {9, 9, 9, 9}));
        q.writeIndirectEntry(inner, 0, data.address(), data.length(), 0, 0);
        long outer = q.allocator().allocate(32, 16, false);
        Placed first = q.place(Buffer.readable(new byte[] {1, 2, 3}));
        q.writeIndirectEntry(outer, 0, first.address(), first.length(), VIRTQ_DESC_F_NEXT, 1);
        q.writeIndirectEntry(outer, 1, inner, 16, VIRTQ_DESC_F_INDIRECT, 0);
        List<Placed> placed = List.of(first, data, new Placed(inner, 16, false, true));
        return indirectHead(outer, 32, placed, "hostile: indirect inside indirect");
    }

    /** An INDIRECT descriptor whose len is {@code tableLength} (not a multiple of 16, or 0). */
    public Chain indirectTableLength(int tableLength) {
        long table = q.allocator().allocate(Math.max(32, tableLength + 16), 16, false);
        Placed a = q.place(Buffer.readable(new byte[] {1, 2, 3, 4}));
        Placed b = q.place(Buffer.readable(new byte[] {5, 6, 7, 8}));
        q.writeIndirectEntry(table, 0, a.address(), a.length(), VIRTQ_DESC_F_NEXT, 1);
        q.writeIndirectEntry(table, 1, b.address(), b.length(), 0, 0);
        return indirectHead(table, tableLength, List.of(a, b), "hostile: indirect table of " + tableLength + " bytes");
    }

    /** A descriptor with both INDIRECT and NEXT (2.7.5.3.1: MUST NOT set both). */
    public Chain indirectWithNext() {
        long table = q.allocator().allocate(16, 16, false);
        Placed a = q.place(Buffer.readable(new byte[] {1, 2, 3, 4}));
        q.writeIndirectEntry(table, 0, a.address(), a.length(), 0, 0);
        Placed b = q.place(Buffer.readable(new byte[] {5, 6, 7, 8}));
        List<Integer> slots = q.takeSlots(2);
        q.writeDescriptor(slots.get(0), table, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, slots.get(1));
        q.writeDescriptor(slots.get(1), b.address(), b.length(), 0, 0);
        return publish(new Chain(slots.get(0), slots, List.of(a, b), table, 16, "hostile: INDIRECT with NEXT"));
    }

    /** One descriptor {@code [addr, addr + len)} that need not be guest memory (outside, straddling the end...). */
    public Chain rawDescriptor(long addr, int len, boolean writable) {
        List<Integer> slots = q.takeSlots(1);
        q.writeDescriptor(slots.get(0), addr, len, writable ? VIRTQ_DESC_F_WRITE : 0, 0);
        return publish(new Chain(slots.get(0), slots, List.of(new Placed(addr, len, writable, false)), -1, 0,
                "hostile: descriptor 0x" + Long.toHexString(addr) + "+" + Integer.toUnsignedString(len)));
    }

    /** A readable header followed by a descriptor whose address is outside guest memory. */
    public Chain addressOutsideMemory(boolean writable) {
        Placed head = q.place(Buffer.readable(new byte[12]));
        List<Integer> slots = q.takeSlots(2);
        q.writeDescriptor(slots.get(0), head.address(), head.length(), VIRTQ_DESC_F_NEXT, slots.get(1));
        q.writeDescriptor(slots.get(1), OUTSIDE, 64, writable ? VIRTQ_DESC_F_WRITE : 0, 0);
        return publish(new Chain(slots.get(0), slots, List.of(head, new Placed(OUTSIDE, 64, writable, false)),
                -1, 0, "hostile: address outside guest memory"));
    }

    /** A descriptor whose address + length wraps past 2^64. */
    public Chain addressWrapping(boolean writable) {
        return rawDescriptor(0xffff_ffff_ffff_f000L, 0x2000, writable);
    }

    /** A descriptor of length 0xffffffff starting inside guest memory. */
    public Chain hugeLength(boolean writable) {
        Placed p = q.place(Buffer.readable(new byte[16]));
        return rawDescriptor(p.address(), -1, writable);
    }

    /** A descriptor whose next is {@code size} (2.7.5: next must index the table). */
    public Chain nextOutOfRange() {
        Placed p = q.place(Buffer.readable(new byte[] {1, 2}));
        List<Integer> slots = q.takeSlots(1);
        q.writeDescriptor(slots.get(0), p.address(), p.length(), VIRTQ_DESC_F_NEXT, q.size());
        return publish(new Chain(slots.get(0), slots, List.of(p), -1, 0, "hostile: next out of range"));
    }

    /** An indirect table outside guest memory. */
    public Chain indirectTableOutsideMemory() {
        return indirectHead(OUTSIDE, 32, List.of(), "hostile: indirect table outside memory");
    }

    /** Writable element then readable element (2.7.4.2: writable elements come after readable ones). */
    public Chain writableBeforeReadable() {
        Placed w = q.place(Buffer.writable(64));
        Placed r = q.place(Buffer.readable(new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
        List<Integer> slots = q.takeSlots(2);
        q.writeDescriptor(slots.get(0), w.address(), w.length(), VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                slots.get(1));
        q.writeDescriptor(slots.get(1), r.address(), r.length(), 0, 0);
        return publish(new Chain(slots.get(0), slots, List.of(w, r), -1, 0, "hostile: writable before readable"));
    }

    /** An available ring entry naming head {@code size + offset} (>= queue size); nothing is outstanding. */
    public void headOutOfRange(int offset) {
        q.placeRaw(q.size() + offset);
        q.publish();
    }

    /**
     * Stores avail idx {@code ahead} entries past what the driver published, with ahead > queue size
     * (2.7.13.3: idx can only move by the chains added, at most the queue size). The driver's own count does not
     * move: the queue is unusable afterwards, which is what the device must detect.
     */
    public void availIdxAhead(int ahead) {
        q.storeAvailIdxRaw((q.availIdx() + ahead) & 0xffff);
    }

    private Chain indirectHead(long table, int tableLength, List<Placed> placed, String label) {
        List<Integer> slots = q.takeSlots(1);
        q.writeDescriptor(slots.get(0), table, tableLength, VIRTQ_DESC_F_INDIRECT, 0);
        boolean ownTable = table != OUTSIDE;
        return publish(new Chain(slots.get(0), slots, placed, ownTable ? table : -1, tableLength, label));
    }

    private Chain publish(Chain c) {
        q.placeHead(c);
        q.publish();
        return c;
    }
}
