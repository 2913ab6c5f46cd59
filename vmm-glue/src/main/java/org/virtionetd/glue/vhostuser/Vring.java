package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.queue.Notifier;

/**
 * What the front-end told us about one vring, kept by the server thread (vhost-user.rst, "Ring states").
 * Addresses are kept as the front-end gave them (user addresses) so that they can be translated again when the
 * memory table changes. Only {@link VringTable} reads or writes these fields.
 */
final class Vring {
    final int index;
    /** SET_VRING_NUM, as given (0 included: the device refuses it). */
    int size;
    boolean sizeSet;
    boolean addressSet;
    long descUser;
    long availUser;
    long usedUser;
    int addressFlags;
    long logGuestAddress;
    /** Guest-physical addresses of the last successful {@code setQueue}, valid while {@link #configured}. */
    long descGpa;
    long availGpa;
    long usedGpa;
    /** The device accepted size and addresses for the current memory. */
    boolean configured;
    /** SET_VRING_BASE, or what GET_VRING_BASE returned. */
    int base;
    /** A SET_VRING_KICK arrived since the ring was last stopped; {@link #kick} null then means "poll". */
    boolean kickReceived;
    EventFd kick;
    /**
     * The call eventfd the device signals. Replaced with dup3 onto the same fd number, so that a data-path thread
     * holding {@link #callNotifier} never writes to a closed or recycled fd.
     */
    EventFd callSlot;
    Notifier callNotifier = Notifier.NONE;
    boolean callActive;
    EventFd err;
    /** SET_VRING_ENABLE; null until received (the default then depends on PROTOCOL_FEATURES). */
    Boolean enabled;
    boolean started;

    Vring(int index) {
        this.index = index;
    }

    Notifier notifier() {
        return callActive ? callNotifier : Notifier.NONE;
    }

    /** Used ring length for a split ring (2.7.8): flags, idx, ring[size] of 8 bytes, avail_event. */
    long usedLength() {
        return 4 + 8L * size + 2;
    }
}
