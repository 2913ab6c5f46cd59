package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.queue.Notifier;

/**
 * What the front-end told us about one vring that the device does not hold, kept by the server thread
 * (vhost-user.rst, "Ring states"): the message values not yet given to the device, the user addresses (translated
 * again when the memory table changes), the logging flags, and the fds the front-end sent, which the transport
 * owns and closes. The queue's own state (accepted size and guest addresses, base, enabled, started) lives in the
 * device's virtqueue and is asked from there. Only {@link VringTable} reads or writes these fields.
 */
final class Vring {
    final int index;
    /** SET_VRING_NUM, as given (0 included: the device refuses it once the addresses come too). */
    int requestedSize;
    boolean sizeSet;
    boolean addressSet;
    long descUser;
    long availUser;
    long usedUser;
    int addressFlags;
    long logGuestAddress;
    /** The guest-physical addresses of the three areas as last configured, for the log. */
    String guestAddresses = "";
    /** The device accepted size and addresses, translated in the current memory table. */
    boolean configured;
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
    /**
     * SET_VRING_ENABLE arrived since the ring was initialized, so the device's enabled state is the front-end's
     * word; until then it depends on PROTOCOL_FEATURES ({@link VringTable}).
     */
    boolean enableReceived;
    /**
     * Where the ring stood when SET_STATUS 0 reset the device, for the GET_VRING_BASE that QEMU 7.2 sends after it
     * ({@link VringTable#stopAllForDeviceReset}); kept until the ring is given a base or starts again.
     */
    int baseAtReset;
    boolean baseAtResetKept;

    Vring(int index) {
        this.index = index;
    }

    Notifier notifier() {
        return callActive ? callNotifier : Notifier.NONE;
    }
}
