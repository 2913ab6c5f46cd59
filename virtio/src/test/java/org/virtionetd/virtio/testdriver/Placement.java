package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;

import java.util.Arrays;

/**
 * Puts one {@link Buffer} into guest memory for a queue driver of either format: scattered by the allocator (or
 * at its fixed address), readable bytes written, writable room filled with {@link SplitQueueDriver#WRITABLE_FILL}
 * so that bytes the device did not write show.
 */
final class Placement {
    private Placement() {
    }

    static Placed place(GuestAllocator allocator, Buffer b, String queue) {
        long addr;
        boolean allocated;
        int room = Math.max(1, b.length());
        if (b.fixedAddress() >= 0) {
            addr = b.fixedAddress();
            allocated = false;
        } else if (b.acrossRegions()) {
            addr = allocator.allocateAcrossBoundary(room);
            allocated = true;
        } else {
            addr = allocator.allocate(room);
            allocated = true;
        }
        GuestMemory memory = allocator.memory();
        if (b.writable()) {
            if (memory.contains(addr, b.length())) {
                byte[] fill = new byte[b.length()];
                Arrays.fill(fill, SplitQueueDriver.WRITABLE_FILL);
                write(memory, addr, fill, queue);
            }
        } else if (memory.contains(addr, b.length())) {
            write(memory, addr, b.rawData(), queue);
        }
        return new Placed(addr, b.length(), b.writable(), allocated);
    }

    static void write(GuestMemory memory, long gpa, byte[] data, String queue) {
        try {
            memory.write(gpa, data, 0, data.length);
        } catch (GuestMemoryException e) {
            throw new IllegalStateException("queue " + queue + ": cannot write " + data.length + " bytes at 0x"
                    + Long.toHexString(gpa) + ": " + e.getMessage(), e);
        }
    }

    /** Frees the buffers and indirect table the driver allocated for {@code chain}. */
    static void release(GuestAllocator allocator, Chain chain) {
        for (Placed p : chain.elements()) {
            if (p.allocated()) {
                allocator.free(p.address());
            }
        }
        if (chain.indirectTable() >= 0) {
            allocator.free(chain.indirectTable());
        }
    }
}
