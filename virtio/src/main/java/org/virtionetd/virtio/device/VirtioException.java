package org.virtionetd.virtio.device;

/**
 * A request from the driver or the transport that the device refuses. {@link #kind()} says which rule broke;
 * the message names the value that was wrong.
 */
public final class VirtioException extends Exception {
    private static final long serialVersionUID = 1L;

    /** The rule that broke. */
    public enum Kind {
        /** The driver acked a feature that was not offered, or broke a dependency between bits (5.1.3.1). */
        FEATURES,
        /** A queue index beyond the device's queues. */
        QUEUE_INDEX,
        /** A queue size of 0, above 32768, or not a power of two (2.7 "Split Virtqueues"). */
        QUEUE_SIZE,
        /** Ring addresses unaligned or outside guest memory (2.7, alignment table). */
        QUEUE_ADDRESS,
        /** An operation not allowed in the current status (e.g. starting a queue without memory). */
        STATE,
        /** Config space access outside the config structure. */
        CONFIG
    }

    private final Kind kind;

    public VirtioException(Kind kind, String message) {
        super(message);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
