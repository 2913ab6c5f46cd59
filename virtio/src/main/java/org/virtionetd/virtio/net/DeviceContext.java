package org.virtionetd.virtio.net;

import org.virtionetd.virtio.device.LogOnce;

/** What the data paths of a queue pair read from their device: negotiated state, filter, error reporting. */
interface DeviceContext {
    long negotiated();

    /** 10 or 12 (5.1.6.1). */
    int headerLength();

    RxFilter rxFilter();

    /** GUEST_* offloads in effect (acked, or narrowed by CTRL_GUEST_OFFLOADS_SET). */
    long guestOffloads();

    /** Number of queue pairs the driver uses (MQ_VQ_PAIRS_SET); pairs at or beyond it receive nothing. */
    int activePairs();

    /** The ring of {@code queueIndex} is unusable: set NEEDS_RESET and tell the driver (2.1.2). */
    void needsReset(int queueIndex, String reason);

    LogOnce logOnce();

    /** A backend lost its host side or got it back ({@link NetBackend#attached()}): the link follows. */
    default void backendAttachmentChanged() {
    }
}
