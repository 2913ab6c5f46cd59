package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.EventFd;

import java.util.List;
import java.util.Map;

/**
 * What {@link VirtioNetDriver} and the device tests need from the driver side of one virtqueue, whichever format
 * the rings have: split ({@link SplitQueueDriver}, virtio 1.2 section 2.7) or packed ({@link PackedQueueDriver},
 * 2.8). What only one format has (avail/used indices, event suppression structures) stays on its class.
 *
 * <p>A chain is named by {@link Chain#head()}: the head descriptor index (split) or the buffer ID (packed).
 * Every method fails with an {@link AssertionError} that names the wrong value when the device broke a rule.
 */
public interface QueueDriver {
    String name();

    int size();

    GuestMemory memory();

    GuestAllocator allocator();

    /** The descriptor area (2.5): split descriptor table, packed descriptor ring. */
    long descAddress();

    /** The driver area (2.5): split available ring, packed driver event suppression. */
    long driverAreaAddress();

    /** The device area (2.5): split used ring, packed device event suppression. */
    long deviceAreaAddress();

    /** Whether VIRTIO_F_EVENT_IDX (RING_EVENT_IDX) was negotiated: it changes notification suppression. */
    void setEventIdx(boolean negotiated);

    boolean eventIdx();

    /** Where {@link #publish()} sends available buffer notifications; null: the device polls. */
    void setKick(EventFd kick);

    /** Available buffer notifications the driver sent (or would have sent, without a kick fd). */
    long notificationsSent();

    /** Publishes after which the device's suppression said no notification was needed. */
    long notificationsSuppressed();

    /** Descriptors the driver may still place (split: free table entries; packed: ring slots not in flight). */
    int freeSlotCount();

    /** Chains made available and not yet returned by the device, by {@link Chain#head()}. */
    Map<Integer, Chain> outstanding();

    /** Places a chain of direct descriptors and publishes it. */
    Chain addChain(Buffer... buffers);

    /** Places one descriptor referring to an indirect table of {@code buffers} and publishes it. */
    Chain addIndirectChain(Buffer... buffers);

    /**
     * Places, without publishing, direct descriptors followed, if {@code indirect} is not empty, by one descriptor
     * referring to an indirect table of them. Readable elements come before writable ones (2.7.4.2 / 2.8.4).
     */
    Chain placeChain(List<Buffer> direct, List<Buffer> indirect);

    /** Makes the placed chains visible to the device at once and kicks if it asks for it; returns whether it did. */
    boolean publish();

    /** Reads what the device used since the last poll, checks it against the chains made available, recycles. */
    List<UsedElement> pollUsed();

    /** True if the device published used entries this driver has not read. */
    boolean hasUsed();

    /** Frees the buffers and indirect table the driver allocated for a chain the device returned. */
    void releaseBuffers(Chain chain);

    /**
     * Asks the device not to send used buffer notifications (true) or to send them again (false): split
     * VIRTQ_AVAIL_F_NO_INTERRUPT (2.7.7), packed RING_EVENT_FLAGS_DISABLE / ENABLE (2.8.10).
     */
    void suppressUsedNotifications(boolean suppress);

    /**
     * After a poll, as Linux's virtqueue_enable_cb: with EVENT_IDX asks for a notification at the next used
     * entry (split used_event; packed RING_EVENT_FLAGS_DESC at the next used position). Without it nothing changes.
     */
    void armUsedNotification();

    /**
     * With EVENT_IDX: asks for a notification only once the used entry {@code entries} past the last one read is
     * written (split used_event, packed RING_EVENT_FLAGS_DESC; one-descriptor chains make both count alike).
     */
    void notifyOnlyAfter(int entries);

    /** A one-paragraph picture of the queue for failure messages. */
    String describe();

    /**
     * Readable elements before writable ones (2.7.4.2 / 2.8.4) and at least one element: the rule every format's
     * placeChain checks before writing anything.
     */
    static void requireReadableFirst(String queue, List<Buffer> all) {
        if (all.isEmpty()) {
            throw new IllegalArgumentException("queue " + queue + ": a chain needs at least one buffer element");
        }
        boolean seenWritable = false;
        for (Buffer b : all) {
            if (seenWritable && !b.writable()) {
                throw new IllegalArgumentException("queue " + queue + ": readable element after a writable one in "
                        + all + " (2.7.4.2 forbids it; use HostileChains.writableBeforeReadable)");
            }
            seenWritable |= b.writable();
        }
    }
}
