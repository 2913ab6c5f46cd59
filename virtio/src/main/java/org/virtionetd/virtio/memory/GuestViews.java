package org.virtionetd.virtio.memory;

import java.nio.ByteBuffer;

/**
 * Reusable ByteBuffer views over guest memory for scatter/gather I/O, owned by one thread.
 *
 * <p>A view is a duplicate of a whole chunk whose position and limit are moved for each use; one duplicate is
 * kept per (slot, chunk), created the first time it is needed. After warm-up, filling a slice array allocates
 * nothing.
 */
public final class GuestViews {
    private final GuestMemory memory;
    private final ByteBuffer[][] cache;

    public GuestViews(GuestMemory memory, int slots) {
        this.memory = memory;
        this.cache = new ByteBuffer[slots][];
    }

    public GuestMemory memory() {
        return memory;
    }

    public int slots() {
        return cache.length;
    }

    /** A view of {@code length} bytes at {@code location}, valid until the same slot is used again. */
    public ByteBuffer view(int slot, long location, int length) {
        int c = GuestMemory.chunkId(location);
        ByteBuffer[] perChunk = cache[slot];
        if (perChunk == null) {
            perChunk = new ByteBuffer[memory.chunkCount()];
            cache[slot] = perChunk;
        }
        ByteBuffer b = perChunk[c];
        if (b == null) {
            b = memory.chunk(c).duplicate();
            perChunk[c] = b;
        }
        int off = GuestMemory.offset(location);
        b.limit(off + length).position(off);
        return b;
    }
}
