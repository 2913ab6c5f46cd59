package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.memory.GuestMemory;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The device's writing side of a packed ring (virtio 1.2, 2.8.6 - 2.8.9): the slot its next used descriptor goes
 * to with the used wrap counter, the used descriptors of the current burst whose flags are still to be written,
 * and with VIRTIO_F_IN_ORDER the batch being gathered. Part of {@link PackedQueue}, owned by the same thread.
 *
 * <p>A used descriptor's ID and length are written when the chain is returned, its flags (AVAIL and USED equal to
 * the used wrap counter, WRITE when the length counts written bytes, 2.8.4) at {@link #publish} with release, the
 * burst's first one last (2.8.22: flags after ID and length).
 */
final class PackedUsedDescriptors {
    private static final VarHandle U16 = MethodHandles.byteBufferViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);

    private final int size;
    private final long descAddress;
    private GuestMemory memory;
    private ByteBuffer desc;
    private int descBase;

    private int slot;
    private boolean wrap = true;

    private final int[] pendingSlot;
    private final short[] pendingFlags;
    private int pendingCount;

    /**
     * VIRTIO_F_IN_ORDER (2.8.9 / 2.7.9): buffers used in the order they were made available may be returned as one
     * used descriptor, at the batch's first slot with the last buffer's ID, the device skipping the whole batch.
     * Only buffers the device wrote nothing to are batched: a driver learns one length per used descriptor.
     */
    private final boolean inOrder;
    private boolean batchOpen;
    private int batchId;
    private int batchSlots;

    PackedUsedDescriptors(int size, long descAddress, boolean inOrder) {
        this.size = size;
        this.descAddress = descAddress;
        this.inOrder = inOrder;
        int n = PackedQueue.validSize(size) ? size : 1;
        this.pendingSlot = new int[n];
        this.pendingFlags = new short[n];
    }

    void bind(GuestMemory mem, ByteBuffer descChunk, int base) {
        memory = mem;
        desc = descChunk;
        descBase = base;
    }

    /** The next used slot. */
    int slot() {
        return slot;
    }

    /** The used wrap counter. */
    boolean wrap() {
        return wrap;
    }

    /** Where the next used descriptor goes, with the used wrap counter in bit 15; forgets what is pending. */
    void setPosition(int position) {
        slot = position & (PackedQueue.WRAP - 1);
        wrap = (position & PackedQueue.WRAP) != 0;
        pendingCount = 0;
        batchOpen = false;
    }

    int position() {
        return slot | (wrap ? PackedQueue.WRAP : 0);
    }

    /** Returns a chain of {@code slots} ring descriptors under {@code id} with {@code writtenLength} bytes written. */
    void add(int id, int writtenLength, int slots) {
        if (inOrder) {
            if (writtenLength == 0) {
                if (batchOpen && batchSlots + slots > size) {
                    closeBatch();
                }
                batchSlots = batchOpen ? batchSlots + slots : slots;
                batchId = id;
                batchOpen = true;
                return;
            }
            closeBatch();
        }
        write(id, writtenLength, slots);
    }

    private void closeBatch() {
        if (batchOpen) {
            batchOpen = false;
            write(batchId, 0, batchSlots);
        }
    }

    /** Writes ID and length at the next used slot and skips the chain's slots (2.8.6); the flags wait for publish. */
    private void write(int id, int writtenLength, int slots) {
        if (pendingCount == pendingSlot.length) {
            // More chains than slots before a publish: only a driver that made slots available again before it
            // got them back gets here. Publish what is pending rather than lose track of it.
            publishPending();
        }
        int at = descBase + PackedQueue.DESC_SIZE * slot;
        desc.putInt(at + 8, writtenLength);
        desc.putShort(at + 12, (short) id);
        pendingSlot[pendingCount] = slot;
        pendingFlags[pendingCount] = (short) ((wrap ? PackedQueue.DESC_F_AVAIL | PackedQueue.DESC_F_USED : 0)
                | (writtenLength != 0 ? PackedQueue.DESC_F_WRITE : 0));
        pendingCount++;
        slot += slots;
        if (slot >= size) {
            slot -= size;
            wrap = !wrap;
        }
    }

    /** Makes every used descriptor added so far visible to the driver. */
    void publish() {
        closeBatch();
        publishPending();
    }

    private void publishPending() {
        // The first one last: until it is written the driver, which reads used descriptors in ring order, sees
        // none of the burst, and then all of it.
        for (int i = pendingCount - 1; i >= 0; i--) {
            int s = pendingSlot[i];
            U16.setRelease(desc, descBase + PackedQueue.DESC_SIZE * s + 14, pendingFlags[i]);
            memory.markDirty(descAddress + (long) PackedQueue.DESC_SIZE * s + 8, 8);
        }
        pendingCount = 0;
    }
}
