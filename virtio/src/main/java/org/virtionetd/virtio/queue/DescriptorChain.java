package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.memory.GuestMemory;

/**
 * The buffers of one available chain after a ring layout walked it ({@link SplitQueue#walk}, {@link PackedQueue}):
 * each descriptor's guest address, length and direction, all checked to be inside guest memory. Reused per chain
 * (arrays sized to the queue).
 *
 * <p>Indirect tables are flattened: the chain lists data buffers only, device-readable first, then writable
 * (2.7.4.2 / 2.8.4 require that order and {@link #addBuffer} enforces it).
 */
public final class DescriptorChain {
    private final long[] addresses;
    /** Where each buffer lies when it is inside one chunk ({@link GuestMemory#locate}), else NOWHERE. */
    private final long[] locations;
    private final int[] lengths;
    private final boolean[] writable;
    private int head;
    /** Ring descriptors the chain occupies (packed ring, 2.8.6: the device skips that many when it uses it). */
    private int slots;
    private int count;
    private int readableCount;
    /** A device-writable descriptor was seen, empty or not (those are skipped, but still order the chain). */
    private boolean sawWritable;
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
        slots = 1;
        count = 0;
        readableCount = 0;
        sawWritable = false;
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

    /** Names the chain by its buffer ID once the walk found it (packed: in the chain's last descriptor, 2.8.6). */
    void identify(int bufferId, int ringSlots) {
        head = bufferId;
        slots = ringSlots;
    }

    int slots() {
        return slots;
    }

    /**
     * Adds one data descriptor after checking the rules every ring layout shares: the buffer lies in guest
     * memory and does not wrap, no device-readable buffer follows a writable one (2.7.4.2, 2.8.4), at most
     * {@link #capacity()} buffers, at most 2^32-1 bytes in all (the used length is 32 bits). Zero-length
     * descriptors carry nothing and are skipped. {@code chainId} names the chain in an error ({@link #name}).
     */
    void addBuffer(GuestMemory memory, long addr, int len, boolean isWritable, int chainId) throws QueueException {
        long ulen = len & 0xffffffffL;
        long location = ulen == 0 ? GuestMemory.NOWHERE : memory.locate(addr, ulen);
        if (location == GuestMemory.NOWHERE && ulen != 0 && !memory.contains(addr, ulen)) {
            throw new QueueException(QueueException.Kind.OUTSIDE_MEMORY, "buffer 0x" + Long.toHexString(addr) + "+"
                    + ulen + " of " + name(chainId) + " is outside guest memory");
        }
        if (!isWritable && sawWritable) {
            throw new QueueException(QueueException.Kind.READABLE_AFTER_WRITABLE,
                    name(chainId) + " has a device-readable descriptor after a device-writable one");
        }
        sawWritable |= isWritable;
        if (ulen == 0) {
            return;
        }
        if (count == capacity()) {
            throw new QueueException(QueueException.Kind.CHAIN_TOO_LONG,
                    name(chainId) + " has more than " + capacity() + " buffers");
        }
        add(addr, location, len, isWritable);
        if (readableBytes + writableBytes > 0xffffffffL) {
            throw new QueueException(QueueException.Kind.CHAIN_TOO_BIG, name(chainId) + " is larger than 4 GiB");
        }
    }

    /**
     * How an error names a chain: a split chain by its head index, a packed one (whose buffer ID is only in its
     * last descriptor) by the ring slot it starts at, given as {@code -1 - slot}. Built only on the error path.
     */
    static String name(int chainId) {
        return chainId >= 0 ? "chain " + chainId : "chain at slot " + (-1 - chainId);
    }

    /**
     * Checks a descriptor that refers to an indirect table (2.7.5.3 / 2.8.8) and returns where the table lies
     * ({@link GuestMemory#locate}): INDIRECT_DESC negotiated, not inside another table, not with NEXT, a positive
     * multiple of 16 bytes, at most {@code queueSize} entries, inside one guest memory region.
     */
    static long locateIndirect(GuestMemory memory, long addr, int len, boolean negotiated, boolean nested,
                               boolean withNext, int queueSize, int chainId) throws QueueException {
        if (!negotiated || nested || withNext || (len & 15) != 0 || len == 0 || (len & 0xffffffffL) / 16 > queueSize) {
            refuseIndirect(len, negotiated, nested, withNext, queueSize, name(chainId));
        }
        long loc = memory.locate(addr, len & 0xffffffffL);
        if (loc == GuestMemory.NOWHERE) {
            throw new QueueException(QueueException.Kind.OUTSIDE_MEMORY, "indirect table 0x" + Long.toHexString(addr)
                    + "+" + (len & 0xffffffffL) + " of " + name(chainId) + " is not inside one guest memory region");
        }
        return loc;
    }

    private static void refuseIndirect(int len, boolean negotiated, boolean nested, boolean withNext, int queueSize,
                                       String chain) throws QueueException {
        if (!negotiated) {
            throw new QueueException(QueueException.Kind.INDIRECT_NOT_NEGOTIATED,
                    chain + " has an INDIRECT descriptor but INDIRECT_DESC was not negotiated");
        }
        if (nested) {
            throw new QueueException(QueueException.Kind.NESTED_INDIRECT,
                    "indirect table of " + chain + " holds another INDIRECT descriptor");
        }
        if (withNext) {
            throw new QueueException(QueueException.Kind.INDIRECT_WITH_NEXT,
                    chain + " has a descriptor with both INDIRECT and NEXT");
        }
        long tableLen = len & 0xffffffffL;
        if (tableLen == 0 || tableLen % 16 != 0) {
            throw new QueueException(QueueException.Kind.INDIRECT_BAD_LENGTH,
                    "indirect table of " + chain + " has length " + tableLen + ", not a positive multiple of 16");
        }
        throw new QueueException(QueueException.Kind.CHAIN_TOO_LONG, "indirect table of " + chain + " has "
                + tableLen / 16 + " descriptors, more than the queue size " + queueSize);
    }

    /** The chain's name for the driver: the head descriptor index (split), the buffer ID (packed). */
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
