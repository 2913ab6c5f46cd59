package org.virtionetd.virtio.fuzz;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.memory.MemoryRegion;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A second, deliberately plain reading of virtio 1.2 2.7.5 (descriptor chains, indirect tables) for differential
 * fuzzing of {@code SplitQueue.walk}: descriptors are copied out with {@link GuestMemory#read}, and "inside guest
 * memory" is decided from the region list with overflow-free arithmetic, not with the production lookups.
 *
 * <p>It applies the same limits the device documents (at most queue-size descriptors visited, indirect tables of at
 * most queue-size entries inside one region, no nesting, no INDIRECT with NEXT, readable before writable, zero-length
 * buffers skipped, at most 4 GiB in all).
 */
final class ReferenceWalk {
    static final int F_NEXT = 1;
    static final int F_WRITE = 2;
    static final int F_INDIRECT = 4;

    private ReferenceWalk() {
    }

    /** The buffers {addr, len, writable ? 1 : 0} of the chain at {@code head}, or null if the chain is invalid. */
    static List<long[]> walk(GuestMemory mem, long descTable, int size, int head, boolean indirectNegotiated) {
        return walk(mem, descTable, size, head, indirectNegotiated, null);
    }

    /** As above, also adding every descriptor read ({addr, 16}) to {@code reads} when it is not null. */
    static List<long[]> walk(GuestMemory mem, long descTable, int size, int head, boolean indirectNegotiated,
                             List<long[]> reads) {
        List<long[]> out = new ArrayList<>();
        long table = descTable;
        int tableSize = size;
        boolean inIndirect = false;
        int index = head;
        boolean sawWritable = false;
        long total = 0;
        byte[] d = new byte[16];
        ByteBuffer b = ByteBuffer.wrap(d).order(ByteOrder.LITTLE_ENDIAN);
        for (int visited = 0; ; visited++) {
            if (visited == size) {
                return null; // longer than the queue: a loop or an over-long chain
            }
            if (reads != null) {
                reads.add(new long[] {table + 16L * index, 16});
            }
            try {
                mem.read(table + 16L * index, d, 0, 16);
            } catch (GuestMemoryException e) {
                return null;
            }
            long addr = b.getLong(0);
            long len = b.getInt(8) & 0xffffffffL;
            int flags = b.getShort(12) & 0xffff;
            int next = b.getShort(14) & 0xffff;
            if ((flags & F_INDIRECT) != 0) {
                if (!indirectNegotiated || inIndirect || (flags & F_NEXT) != 0 || len == 0 || len % 16 != 0
                        || len / 16 > size || !insideOneRegion(mem, addr, len)) {
                    return null;
                }
                table = addr;
                tableSize = (int) (len / 16);
                inIndirect = true;
                index = 0;
                continue;
            }
            if (len != 0 && !insideMemory(mem, addr, len)) {
                return null;
            }
            boolean w = (flags & F_WRITE) != 0;
            if (!w && sawWritable) {
                return null;
            }
            sawWritable |= w;
            if (len != 0) {
                if (out.size() == size) {
                    return null;
                }
                out.add(new long[] {addr, len, w ? 1 : 0});
                total += len;
                if (total > 0xffffffffL) {
                    return null;
                }
            }
            if ((flags & F_NEXT) == 0) {
                return out;
            }
            if (next >= tableSize) {
                return null;
            }
            index = next;
        }
    }

    /** [addr, addr + len) inside a single region, computed without overflow (len > 0). */
    static boolean insideOneRegion(GuestMemory mem, long addr, long len) {
        for (MemoryRegion r : mem.regions()) {
            long off = addr - r.guestAddress();
            if (Long.compareUnsigned(addr, r.guestAddress()) >= 0 && Long.compareUnsigned(len, r.size()) <= 0
                    && Long.compareUnsigned(off, r.size() - len) <= 0) {
                return true;
            }
        }
        return false;
    }

    /** Every byte of [addr, addr + len) in some region (regions may be adjacent), no wrap past 2^64. */
    static boolean insideMemory(GuestMemory mem, long addr, long len) {
        long cursor = addr;
        long left = len;
        while (left > 0) {
            MemoryRegion hit = null;
            for (MemoryRegion r : mem.regions()) {
                if (Long.compareUnsigned(cursor, r.guestAddress()) >= 0
                        && Long.compareUnsigned(cursor - r.guestAddress(), r.size()) < 0) {
                    hit = r;
                }
            }
            if (hit == null) {
                return false;
            }
            long room = hit.size() - (cursor - hit.guestAddress());
            if (Long.compareUnsigned(left, room) <= 0) {
                return true;
            }
            left -= room;
            cursor += room;
            if (cursor == 0) {
                return false; // wrapped past the top of the address space
            }
        }
        return true;
    }
}
