package org.virtionetd.virtio.net;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.queue.DescriptorChain;

/**
 * How many receive buffers of one queue pair the device wrote frames into, per chunk of the guest memory the pair's
 * receive queue runs on: which memory region the driver's buffers come from (memory hot-plug: buffers move into
 * a region added at run time, vhost-user.rst "VHOST_USER_ADD_MEM_REG").
 *
 * <p>One buffer is one descriptor chain the device used for a frame (the unit num_buffers counts, 5.1.6.4): with
 * MRG_RXBUF a frame spread over three buffers counts three, each in the region of its own first byte; without it
 * a frame counts one. Frames dropped after they were written (filtered, runts, refused offloads) leave their
 * buffers pending for the next frame and are not counted.
 *
 * <p>The counts are plain longs, written only by the pair's loop thread ({@link RxPath}): no atomic on the
 * per-packet path. A reader on another thread ({@link #addTo}) sees them racily, so a figure is approximate while
 * traffic runs (64-bit plain reads are not torn on the 64-bit JVMs we run). The array is sized for its memory once;
 * a new memory (a new table, a region added or removed) gets a new instance, so counts start again from zero.
 */
final class RxBufferCounts {
    private final GuestMemory memory;
    private final long[] perChunk;

    RxBufferCounts(GuestMemory memory) {
        this.memory = memory;
        this.perChunk = new long[memory.chunkCount()];
    }

    /** The memory these counts are for. */
    GuestMemory memory() {
        return memory;
    }

    /** Counts one buffer the device wrote into, by its first non-empty writable descriptor; loop thread only. */
    void count(DescriptorChain chain) {
        for (int d = chain.readableCount(); d < chain.count(); d++) {
            if (chain.length(d) == 0) {
                continue;
            }
            long location = chain.location(d);
            if (location == GuestMemory.NOWHERE) {
                // The descriptor crosses a region or chunk boundary: it counts where it starts.
                location = memory.locate(chain.address(d), 1);
                if (location == GuestMemory.NOWHERE) {
                    return;
                }
            }
            perChunk[GuestMemory.chunkId(location)]++;
            return;
        }
    }

    /** Adds the counts into {@code perRegion}, indexed as {@link GuestMemory#regions()}; read racily. */
    void addTo(long[] perRegion) {
        for (int c = 0; c < perChunk.length; c++) {
            perRegion[memory.regionOfChunk(c)] += perChunk[c];
        }
    }
}
