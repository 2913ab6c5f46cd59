package org.virtionetd.virtio.queue;

/**
 * A rule of the split (virtio 1.2, section 2.7) or packed (2.8) virtqueue broken by the driver. {@link #kind()}
 * says which rule; {@link Kind#fatal()} says whether the queue can go on (the chain is returned with length 0) or
 * the device must be marked NEEDS_RESET because the ring itself cannot be trusted.
 */
public final class QueueException extends Exception {
    private static final long serialVersionUID = 1L;

    /** The rule that broke. */
    public enum Kind {
        /** avail.idx moved more than the queue size ahead of what the device consumed (2.7.6): ring corrupt. */
        AVAIL_INDEX_TOO_FAR(true),
        /** A head index in the available ring is not below the queue size (2.7.6): no chain to return. */
        HEAD_OUT_OF_RANGE(true),
        /** A next index is not below the queue (or indirect table) size (2.7.5). */
        NEXT_OUT_OF_RANGE(false),
        /** More descriptors than the queue size: a loop or an over-long chain (2.7.5.3.1 / 2.7.4.2). */
        CHAIN_TOO_LONG(false),
        /** INDIRECT inside an indirect table (2.7.5.3.1: "MUST NOT set VIRTQ_DESC_F_INDIRECT" in it). */
        NESTED_INDIRECT(false),
        /** INDIRECT and NEXT both set (2.7.5.3.1). */
        INDIRECT_WITH_NEXT(false),
        /** Indirect table length 0 or not a multiple of 16 (2.7.5.3). */
        INDIRECT_BAD_LENGTH(false),
        /** INDIRECT used but VIRTIO_F_INDIRECT_DESC not negotiated (2.7.5.3.1). */
        INDIRECT_NOT_NEGOTIATED(false),
        /** A buffer or table not inside guest memory, or address + length wrapping. */
        OUTSIDE_MEMORY(false),
        /** A device-readable descriptor after a device-writable one (2.7.4.2). */
        READABLE_AFTER_WRITABLE(false),
        /** A chain whose total length exceeds what the device accepts (2^32-1 by the used ring's len). */
        CHAIN_TOO_BIG(false),
        /**
         * Packed: descriptor flags that contradict the wrap counter, so the ring cannot be read: AVAIL and USED
         * both equal to the device's avail wrap counter where it reads next (2.8.1: that is a descriptor the device
         * used in this lap, which it cannot meet ahead of itself), or a later descriptor of a chain not made
         * available with its head (2.8.6: the driver makes the rest of a list available before its first).
         */
        FLAGS_CONTRADICT_WRAP(true),
        /** Packed: NEXT set on as many descriptors as the ring has (2.8.6): where the chain ends is unknown. */
        CHAIN_WRAPS_RING(true),
        /** Packed: a buffer ID not below the queue size; returned with length 0 under that ID. */
        BUFFER_ID_OUT_OF_RANGE(false);

        private final boolean fatal;

        Kind(boolean fatal) {
            this.fatal = fatal;
        }

        /** True when the device must set NEEDS_RESET rather than return the chain. */
        public boolean fatal() {
            return fatal;
        }
    }

    private final Kind kind;

    public QueueException(Kind kind, String message) {
        super(message, null, false, false);
        this.kind = kind;
    }

    public Kind kind() {
        return kind;
    }
}
