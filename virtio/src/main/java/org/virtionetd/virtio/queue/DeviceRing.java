package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.memory.GuestMemory;

/**
 * The device's side of one ring layout, as {@link Virtqueue} drives it: the split virtqueue (virtio 1.2, 2.7) is
 * {@link SplitQueue}, the packed virtqueue (2.8) {@link PackedQueue}. Nothing outside this package sees a layout:
 * the data paths talk to {@link Virtqueue}.
 *
 * <p>A layout holds only what the spec gives the device (its private indices, wrap counters, the event-index
 * choice) and is owned by the one thread that runs the queue. It is bound to guest memory by {@link #activate}.
 */
interface DeviceRing {

    /** Binds the rings to guest memory; null on success, otherwise why they cannot be used. */
    String activate(GuestMemory memory);

    GuestMemory memory();

    /**
     * The next available entry the device will read, in 16 bits: split, the free-running avail index; packed, the
     * slot with the avail wrap counter in bit 15.
     */
    int nextAvail();

    /** The next used entry the device will write, in the same 16-bit form. */
    int nextUsed();

    /** The position as vhost-user GET_VRING_BASE gives it (vhost-user.rst, "Vring descriptor indices"). */
    int base();

    /** Where the device resumes after its own stop: what {@link #nextAvail} and {@link #nextUsed} said. */
    void setPosition(int nextAvail, int nextUsed);

    /**
     * Where the device resumes after a front-end's SET_VRING_BASE ({@code base} as vhost-user.rst lays it out for
     * this layout); the rest is read from the ring. Null, or why the base cannot be used.
     */
    String resumeAt(int base);

    /**
     * Takes the next available chain into {@code out} and walks it. False when none is available.
     *
     * @throws QueueException a broken rule: if {@link QueueException.Kind#fatal()} the ring cannot be trusted;
     *         otherwise the chain was taken, {@code out.head()} names it, and it must be returned unused
     */
    boolean pop(DescriptorChain out) throws QueueException;

    /** Gives back the last {@code chains} chains popped, in reverse order, as if they had never been taken. */
    void giveBack(int chains);

    /**
     * Records {@code chain} as used with {@code writtenLength} bytes written; invisible until {@link #publishUsed}.
     * With VIRTIO_F_IN_ORDER, chains used one after another with nothing written may become one used entry.
     */
    void addUsed(DescriptorChain chain, int writtenLength);

    /** Makes every used entry added so far visible to the driver. */
    void publishUsed();

    /** Whether the driver asked to be notified of what was published since the last call (2.7.10 / 2.8.10). */
    boolean needsNotification();

    /** Asks the driver to notify (kick) on new available buffers, or not to. */
    void setKickWanted(boolean wanted);

    /** True if the driver made a chain available that the device has not taken (no validation). */
    boolean hasAvailable();
}
