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
 * before the device's position: the flags then step once, at that chain's second slot, and the position read is
 * wrong.
 */
final class PackedResume {
    private PackedResume() {
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
        return (desc.getShort(descBase + PackedQueue.DESC_SIZE * slot + 14) & PackedQueue.DESC_F_USED) != 0;
    }
}
