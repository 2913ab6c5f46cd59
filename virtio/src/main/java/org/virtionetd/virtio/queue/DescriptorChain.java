package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.memory.GuestMemory;

/**
 * The buffers of one available chain after {@link SplitQueue#walk}: each descriptor's guest address, length and
 * direction, all checked to be inside guest memory. Reused per chain (arrays sized to the queue).
 *
 * <p>Indirect tables are flattened: the chain lists data buffers only, device-readable first, then writable
 * (2.7.4.2 requires that order and the walk enforces it).
 */
public final class DescriptorChain {
    private final long[] addresses;
    /** Where each buffer lies when it is inside one chunk ({@link GuestMemory#locate}), else NOWHERE. */
    private final long[] locations;
    private final int[] lengths;
    private final boolean[] writable;
    private int head;
    private int count;
    private int readableCount;
    private long readableBytes;
    private long writableBytes;

    public DescriptorChain(int capacity) {
        addresses = new long[capacity];
        locations = new long[capacity];
        lengths = new int[capacity];
        writable = new boolean[capacity];
    }

    void reset(int headIndex) {
        head = headIndex;
        count = 0;
        readableCount = 0;
        readableBytes = 0;
        writableBytes = 0;
    }

    void add(long address, long location, int length, boolean isWritable) {
        addresses[count] = address;
        locations[count] = location;
        lengths[count] = length;
        writable[count] = isWritable;
        count++;
        if (isWritable) {
            writableBytes += length & 0xffffffffL;
        } else {
            readableCount++;
            readableBytes += length & 0xffffffffL;
        }
    }

    int capacity() {
        return addresses.length;
    }

    /** The head descriptor index: what goes into the used ring. */
    public int head() {
        return head;
    }

    /** Number of data descriptors. */
    public int count() {
        return count;
    }

    /** Descriptors {@code [0, readableCount())} are device-readable, the rest device-writable. */
    public int readableCount() {
        return readableCount;
    }

    public long readableBytes() {
        return readableBytes;
    }

    public long writableBytes() {
        return writableBytes;
    }

    public long address(int i) {
        return addresses[i];
    }

    /**
     * The buffer's location in guest memory (chunk and offset, as {@link GuestMemory#locate} gives it) when it lies
     * inside one chunk, which is nearly always; {@link GuestMemory#NOWHERE} when it crosses a region or chunk
     * boundary and must be resolved piece by piece. Saves looking up again what the walk already found.
     */
    public long location(int i) {
        return locations[i];
    }

    /** Length as an unsigned 32-bit value held in an int (use {@code & 0xffffffffL} for arithmetic). */
    public int length(int i) {
        return lengths[i];
    }

    public boolean writable(int i) {
        return writable[i];
    }
}
