package org.virtionetd.virtio.queue;

import java.nio.ByteBuffer;

/**
 * Reads from a packed ring where the device was (virtio 1.2, 2.8.1), for a front-end whose base cannot be
 * trusted: QEMU cannot read a packed ring's position back from guest memory, so after its back-end was killed it
 * sends the last base it had again (the one of the driver's start, or of its last GET_VRING_BASE).
 *
 * <p>Why the USED flags tell: the driver makes a descriptor available with USED = !wrap, the device makes it used
 * with USED = wrap, where wrap is the counter of the lap the slot is in. With the device at slot U of a lap with
 * wrap counter W and nothing in flight, every slot before U was last written in this lap (used by the device:
 * USED = W; or made available again by the driver in the next lap: USED = !(!W) = W), and every slot from U on
 * in the lap before or by the driver in this one (USED = !W). So the USED flags step once, at U: slots [0, U) hold
 * W and [U, size) hold !W; when they do not step, U is 0 and W is the opposite of them all. Buffers the device
 * took but had not used when it stopped are still marked available, so they are taken again (as QEMU resumes a
 * split ring at its used index).
 *
 * <p>This holds when each buffer is one ring descriptor (a Linux driver with INDIRECT_DESC). A chain of several
 * descriptors, or an in-order batch, leaves slots the device skipped with the driver's flags: the flags then step
 * more than once, and no position is read; except when the only such chain in the ring is the last one used
 * before the device's position: the flags then step once, at that chain's second slot. {@link #resumePoint} tells
 * that case from a stale base: a stale base is behind the device, the tails of that chain are ahead of the step.
 */
final class PackedResume {
    /**
     * The most slots after a chain's first that {@link #resumePoint} takes for that chain's: a Linux virtio-net
     * driver without INDIRECT_DESC chains at most the header, the linear part and MAX_SKB_FRAGS (17) fragments.
     */
    static final int MAX_TAILS = 18;

    private PackedResume() {
    }

    /**
     * Where to resume given a front-end's {@code base} (slot with the wrap counter in bit 15): the base, unless the
     * ring shows another position ({@link #position}); then that one, unless the base is at most
     * {@link #MAX_TAILS} slots ahead of it and those slots are the rest of the chain used just before it: the
     * driver's available flags on each, the last one holding the buffer ID of the used descriptor before them
     * (2.8.6: the ID is in a chain's last descriptor; the device writes it in the used one). A base QEMU kept from
     * an earlier time is behind the device, never ahead.
     */
    static int resumePoint(ByteBuffer desc, int descBase, int size, int base) {
        int shown = position(desc, descBase, size);
        if (shown < 0 || shown == base) {
            return base;
        }
        int ahead = Math.floorMod(sequence(base, size) - sequence(shown, size), 2 * size);
        if (ahead == 0 || ahead > MAX_TAILS || ahead >= size) {
            return shown;
        }
        int head = (shown & (PackedQueue.WRAP - 1)) == 0 ? size - 1 : (shown & (PackedQueue.WRAP - 1)) - 1;
        int headFlags = flags(desc, descBase, head);
        if (((headFlags & PackedQueue.DESC_F_AVAIL) != 0) != ((headFlags & PackedQueue.DESC_F_USED) != 0)) {
            return shown;
        }
        int slot = shown & (PackedQueue.WRAP - 1);
        boolean wrap = (shown & PackedQueue.WRAP) != 0;
        for (int i = 0; i < ahead; i++) {
            if (!PackedQueue.isAvailable(flags(desc, descBase, slot), wrap)) {
                return shown;
            }
            if (i == ahead - 1 && id(desc, descBase, slot) != id(desc, descBase, head)) {
                return shown;
            }
            if (++slot == size) {
                slot = 0;
                wrap = !wrap;
            }
        }
        return base;
    }

    /** A position's place in the two-lap sequence: laps with wrap counter 1 first, then 0 (2.8.1). */
    private static int sequence(int position, int size) {
        return (position & (PackedQueue.WRAP - 1)) + ((position & PackedQueue.WRAP) != 0 ? 0 : size);
    }

    /** The position the ring shows (slot, with the wrap counter in bit 15), or -1 if the flags step more than once. */
    static int position(ByteBuffer desc, int descBase, int size) {
        boolean first = used(desc, descBase, 0);
        boolean previous = first;
        int step = -1;
        for (int slot = 1; slot < size; slot++) {
            boolean u = used(desc, descBase, slot);
            if (u != previous) {
                if (step >= 0) {
                    return -1;
                }
                step = slot;
            }
            previous = u;
        }
        if (step < 0) {
            return first ? 0 : PackedQueue.WRAP;
        }
        return step | (first ? PackedQueue.WRAP : 0);
    }

    private static boolean used(ByteBuffer desc, int descBase, int slot) {
        return (flags(desc, descBase, slot) & PackedQueue.DESC_F_USED) != 0;
    }

    private static int flags(ByteBuffer desc, int descBase, int slot) {
        return desc.getShort(descBase + PackedQueue.DESC_SIZE * slot + 14) & 0xffff;
    }

    private static int id(ByteBuffer desc, int descBase, int slot) {
        return desc.getShort(descBase + PackedQueue.DESC_SIZE * slot + 12) & 0xffff;
    }
}
