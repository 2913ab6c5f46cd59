package org.virtionetd.virtio.testdriver;

/**
 * Where the three parts of a split virtqueue live (virtio 1.2, 2.7): descriptor table (16 * size bytes,
 * 16-aligned), available ring (6 + 2 * size, 2-aligned), used ring (6 + 8 * size, 4-aligned). The sizes include
 * used_event / avail_event, which exist only with VIRTIO_F_EVENT_IDX but are always reserved here.
 */
public record RingLayout(int size, long descTable, long availRing, long usedRing) {
    public static final int DESC_ALIGN = 16;
    public static final int AVAIL_ALIGN = 2;
    public static final int USED_ALIGN = 4;
    /** Queue Align of the legacy layout (4.1.5.1.x / 2.7.2 "Legacy Interfaces: A Note on Virtqueue Layout"). */
    public static final int LEGACY_QUEUE_ALIGN = 4096;

    public RingLayout {
        checkSize(size);
    }

    public static void checkSize(int size) {
        if (size < 1 || size > 32768 || Integer.bitCount(size) != 1) {
            throw new IllegalArgumentException("queue size " + size + " must be a power of two in 1..32768");
        }
    }

    public static int descTableBytes(int size) {
        return 16 * size;
    }

    public static int availRingBytes(int size) {
        return 6 + 2 * size;
    }

    public static int usedRingBytes(int size) {
        return 6 + 8 * size;
    }

    /**
     * The legacy layout: one physically contiguous area starting at {@code base} (Queue Align aligned),
     * descriptor table, then the available ring, padding to the next Queue Align boundary, then the used ring.
     */
    public static RingLayout legacy(long base, int size) {
        if (base % LEGACY_QUEUE_ALIGN != 0) {
            throw new IllegalArgumentException("legacy virtqueue base 0x" + Long.toHexString(base)
                    + " is not aligned to " + LEGACY_QUEUE_ALIGN);
        }
        long avail = base + descTableBytes(size);
        long used = GuestAllocator.alignUp(avail + availRingBytes(size), LEGACY_QUEUE_ALIGN);
        return new RingLayout(size, base, avail, used);
    }

    /** Bytes of the legacy area: the spec's virtq_size(qsz) formula with qalign 4096. */
    public static long legacyBytes(int size) {
        return GuestAllocator.alignUp(descTableBytes(size) + availRingBytes(size), LEGACY_QUEUE_ALIGN)
                + GuestAllocator.alignUp(usedRingBytes(size), LEGACY_QUEUE_ALIGN);
    }

    @Override
    public String toString() {
        return "RingLayout[size=" + size + " desc=0x" + Long.toHexString(descTable) + " avail=0x"
                + Long.toHexString(availRing) + " used=0x" + Long.toHexString(usedRing) + "]";
    }
}
