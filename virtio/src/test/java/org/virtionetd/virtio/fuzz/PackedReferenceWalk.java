package org.virtionetd.virtio.fuzz;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.queue.QueueException;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A second, deliberately plain reading of virtio 1.2 2.8 (packed virtqueue) for differential fuzzing of
 * {@code PackedQueue.pop}: descriptors are copied out with {@link GuestMemory#read} one at a time, the chain's
 * extent is found from the flags first (2.8.1 availability, 2.8.6 chains of consecutive slots, the wrap counter
 * flipping at the end of the ring), then its buffers are judged (2.8.4 readable before writable, 2.8.7 indirect
 * tables whose entries follow one another, with no flag but WRITE). "Inside guest memory" is decided by
 * {@link ReferenceWalk}'s region arithmetic, not by the production lookups.
 *
 * <p>The device's limits are those {@link ReferenceWalk} applies: at most {@code capacity} non-empty buffers, at
 * most 4 GiB in all, indirect tables of at most queue-size entries inside one region, zero-length buffers skipped.
 */
final class PackedReferenceWalk {
    static final int F_NEXT = 1;
    static final int F_WRITE = 2;
    static final int F_INDIRECT = 4;
    static final int F_AVAIL = 1 << 7;
    static final int F_USED = 1 << 15;

    /** What the device must make of the slot it reads next. */
    enum Outcome {
        /** Nothing available there. */
        NONE,
        /** The ring cannot be read ({@link Walk#fatal} says why). */
        FATAL,
        /** A chain that breaks a rule: taken and returned with length 0. */
        BROKEN,
        /** A chain the device accepts. */
        ACCEPTED
    }

    /**
     * The verdict on one slot. {@code slots}: ring descriptors of the chain; {@code id}: its buffer ID (from its last
     * descriptor); {@code buffersBroken}: a buffer or table rule broke (otherwise a BROKEN chain has only a bad ID).
     */
    record Walk(Outcome outcome, QueueException.Kind fatal, boolean buffersBroken, List<long[]> buffers, int id,
                int slots) {
    }

    private PackedReferenceWalk() {
    }

    /** The flags of ring slot {@code slot}, read through {@link GuestMemory#read}. */
    static int flags(GuestMemory mem, long ring, int slot) {
        return descriptor(mem, ring + 16L * slot).getShort(14) & 0xffff;
    }

    /** 2.8.1: available for wrap counter {@code w} when AVAIL equals it and USED does not. */
    static boolean available(int flags, boolean w) {
        return ((flags & F_AVAIL) != 0) == w && ((flags & F_USED) != 0) != w;
    }

    /** The chain at {@code slot} for the device's avail wrap counter {@code wrap}. */
    static Walk walk(GuestMemory mem, long ring, int size, int slot, boolean wrap, boolean indirectNegotiated,
                     int capacity) {
        int first = flags(mem, ring, slot);
        if (!available(first, wrap)) {
            // AVAIL and USED both equal to the counter: a descriptor used in this lap, ahead of the device.
            return ((first & F_AVAIL) != 0) == wrap ? fatal(QueueException.Kind.FLAGS_CONTRADICT_WRAP) : NONE_WALK;
        }
        List<ByteBuffer> chain = new ArrayList<>();
        int s = slot;
        boolean w = wrap;
        while (true) {
            ByteBuffer d = descriptor(mem, ring + 16L * s);
            if (!available(d.getShort(14) & 0xffff, w)) {
                return fatal(QueueException.Kind.FLAGS_CONTRADICT_WRAP);
            }
            chain.add(d);
            s++;
            if (s == size) {
                s = 0;
                w = !w;
            }
            if ((d.getShort(14) & F_NEXT) == 0) {
                break;
            }
            if (chain.size() == size) {
                return fatal(QueueException.Kind.CHAIN_WRAPS_RING);
            }
        }
        int id = chain.get(chain.size() - 1).getShort(12) & 0xffff;
        List<long[]> buffers = buffers(mem, chain, size, indirectNegotiated, capacity);
        if (buffers == null) {
            return new Walk(Outcome.BROKEN, null, true, null, id, chain.size());
        }
        return new Walk(id < size ? Outcome.ACCEPTED : Outcome.BROKEN, null, false, buffers, id, chain.size());
    }

    /** The data buffers {addr, len, writable ? 1 : 0} of the chain's descriptors, or null if a rule breaks. */
    private static List<long[]> buffers(GuestMemory mem, List<ByteBuffer> chain, int size, boolean indirectNegotiated,
                                        int capacity) {
        Buffers out = new Buffers(capacity);
        for (ByteBuffer d : chain) {
            long addr = d.getLong(0);
            long len = d.getInt(8) & 0xffffffffL;
            int flags = d.getShort(14) & 0xffff;
            if ((flags & F_INDIRECT) == 0) {
                if (!out.add(mem, addr, len, (flags & F_WRITE) != 0)) {
                    return null;
                }
                continue;
            }
            if (!indirectNegotiated || (flags & F_NEXT) != 0 || len == 0 || len % 16 != 0 || len / 16 > size
                    || !ReferenceWalk.insideOneRegion(mem, addr, len)) {
                return null;
            }
            for (long i = 0; i < len / 16; i++) {
                ByteBuffer e = descriptor(mem, addr + 16 * i);
                int f = e.getShort(14) & 0xffff;
                if ((f & F_INDIRECT) != 0
                        || !out.add(mem, e.getLong(0), e.getInt(8) & 0xffffffffL, (f & F_WRITE) != 0)) {
                    return null;
                }
            }
        }
        return out.list;
    }

    /** The buffers found so far and the rules they must keep together. */
    private static final class Buffers {
        final List<long[]> list = new ArrayList<>();
        final int capacity;
        boolean sawWritable;
        long total;

        Buffers(int capacity) {
            this.capacity = capacity;
        }

        boolean add(GuestMemory mem, long addr, long len, boolean writable) {
            if (len != 0 && !ReferenceWalk.insideMemory(mem, addr, len)) {
                return false;
            }
            // 2.8.4: every device-writable descriptor after every device-readable one, empty or not.
            if (!writable && sawWritable) {
                return false;
            }
            sawWritable |= writable;
            if (len == 0) {
                return true;
            }
            if (list.size() == capacity) {
                return false;
            }
            list.add(new long[] {addr, len, writable ? 1 : 0});
            total += len;
            return total <= 0xffffffffL;
        }
    }

    private static final Walk NONE_WALK = new Walk(Outcome.NONE, null, false, null, -1, 0);

    private static Walk fatal(QueueException.Kind kind) {
        return new Walk(Outcome.FATAL, kind, false, null, -1, 0);
    }

    /** One 16-byte descriptor (le64 addr, le32 len, le16 id, le16 flags: 2.8.13) copied out of guest memory. */
    private static ByteBuffer descriptor(GuestMemory mem, long gpa) {
        byte[] d = new byte[16];
        try {
            mem.read(gpa, d, 0, 16);
        } catch (GuestMemoryException e) {
            throw new AssertionError("descriptor at 0x" + Long.toHexString(gpa) + " not in guest memory", e);
        }
        return ByteBuffer.wrap(d).order(ByteOrder.LITTLE_ENDIAN);
    }
}
