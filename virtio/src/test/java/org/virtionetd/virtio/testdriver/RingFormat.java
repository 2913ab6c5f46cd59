package org.virtionetd.virtio.testdriver;

/**
 * The virtqueue format a device test runs with (virtio 1.2, 2.6: "split" or "packed" virtqueues), for
 * {@code @ParameterizedTest @EnumSource(RingFormat.class)}: the same test, the driver asking for RING_PACKED and
 * IN_ORDER or not. (Where a split ring's three parts lie is {@link RingLayout}.)
 */
public enum RingFormat {
    /** 2.7, what Linux uses unless told otherwise. */
    SPLIT(false, false),
    /** 2.7 with VIRTIO_F_IN_ORDER: one used element may return a batch, used idx moving by its size (2.7.9). */
    SPLIT_IN_ORDER(false, true),
    /** 2.8: VIRTIO_F_RING_PACKED. */
    PACKED(true, false),
    /** 2.8 with VIRTIO_F_IN_ORDER: one used descriptor may return a batch (2.8.9). */
    PACKED_IN_ORDER(true, true);

    private final boolean packed;
    private final boolean inOrder;

    RingFormat(boolean packed, boolean inOrder) {
        this.packed = packed;
        this.inOrder = inOrder;
    }

    public boolean packed() {
        return packed;
    }

    public boolean inOrder() {
        return inOrder;
    }

    /** Default driver options asking for this format. */
    public VirtioNetDriver.Options options() {
        return apply(new VirtioNetDriver.Options());
    }

    /** {@code o} asking for this format. */
    public VirtioNetDriver.Options apply(VirtioNetDriver.Options o) {
        return o.packed(packed).inOrder(inOrder);
    }
}
