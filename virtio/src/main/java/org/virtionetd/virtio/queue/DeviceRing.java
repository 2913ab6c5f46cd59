package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.memory.GuestMemory;

/**
 * The device's side of one ring layout, as {@link Virtqueue} drives it: the split virtqueue (virtio 1.2, 2.7) is
 * {@link SplitQueue}; the packed virtqueue (2.8) is the second layout this interface is shaped for. Nothing outside
 * this package sees a layout: the data paths talk to {@link Virtqueue}.
 *
 * <p>A layout holds only what the spec gives the device (its private indices, wrap counters, the event-index
 * choice) and is owned by the one thread that runs the queue. It is bound to guest memory by {@link #activate}.
 */
interface DeviceRing {

    /** Binds the rings to guest memory; null on success, otherwise why they cannot be used. */
    String activate(GuestMemory memory);

    GuestMemory memory();

    /** The next available entry the device will read, as a 16-bit ring index (vhost-user GET_VRING_BASE). */
    int nextAvail();

    /** The next used entry the device will write, as a 16-bit ring index. */
    int nextUsed();

    /** Where the device resumes: after SET_VRING_BASE, or after its own stop. */
    void setPosition(int nextAvail, int nextUsed);

    /** The used index as the ring shows it (what the driver last saw: the resume point after a reconnect). */
    int readUsedIndex();

    /**
     * Takes the next available chain into {@code out} and walks it. False when none is available.
     *
     * @throws QueueException a broken rule: if {@link QueueException.Kind#fatal()} the ring cannot be trusted;
     *         otherwise the chain was taken, {@code out.head()} names it, and it must be returned unused
     */
    boolean pop(DescriptorChain out) throws QueueException;

    /** Gives back the last {@code chains} chains popped, in reverse order, as if they had never been taken. */
    void giveBack(int chains);

    /** Records {@code chain} as used with {@code writtenLength} bytes written; invisible until {@link #publishUsed}. */
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
