package org.virtionetd.backends.offload;

import org.virtionetd.virtio.device.Counters;

import java.util.Map;
import java.util.concurrent.atomic.LongAdder;

/**
 * What an {@link OffloadingBackend} did, as named lock-free counters: written by the queue pair's event-loop
 * thread, read by anyone. {@link #snapshot()} names them in snake_case, drops as {@code tx_drop_<reason>} /
 * {@code rx_drop_<reason>}.
 */
public final class OffloadCounters {
    /** Guest packets handed to the inner backend with their metadata (the inner carries the offload). */
    public final LongAdder txPassedThrough = new LongAdder();
    /** Guest packets whose NEEDS_CSUM checksum was completed in software. */
    public final LongAdder txChecksumsCompleted = new LongAdder();
    /** Guest GSO packets segmented in software. */
    public final LongAdder txPacketsSegmented = new LongAdder();
    /** Frames produced by TX segmentation and sent. */
    public final LongAdder txSegmentsMade = new LongAdder();
    /** The inner backend refused a produced frame. */
    public final LongAdder txInnerRefused = new LongAdder();
    /** Frames from the inner backend delivered to the guest unchanged. */
    public final LongAdder rxPassedThrough = new LongAdder();
    /** Inner frames whose NEEDS_CSUM checksum was completed because the guest did not accept GUEST_CSUM. */
    public final LongAdder rxChecksumsCompleted = new LongAdder();
    /** Inner GSO frames segmented because the guest did not accept that GSO type. */
    public final LongAdder rxPacketsSegmented = new LongAdder();
    /** Frames produced by RX segmentation. */
    public final LongAdder rxSegmentsMade = new LongAdder();

    /** A pending frame longer than the buffers the device offered, dropped. */
    public final LongAdder rxDroppedNoRoom = new LongAdder();

    private final LongAdder[] txDrops = adders();
    private final LongAdder[] rxDrops = adders();

    private static LongAdder[] adders() {
        LongAdder[] a = new LongAdder[OffloadResult.values().length];
        for (int i = 0; i < a.length; i++) {
            a[i] = new LongAdder();
        }
        return a;
    }

    /** Guest packets dropped for {@code reason}. */
    public LongAdder txDrops(OffloadResult reason) {
        return txDrops[reason.ordinal()];
    }

    /** Inner frames dropped for {@code reason}. */
    public LongAdder rxDrops(OffloadResult reason) {
        return rxDrops[reason.ordinal()];
    }

    /** All counters by snake_case name; drop counters only when non-zero. */
    public Map<String, Long> snapshot() {
        Map<String, Long> m = Counters.snapshot(this);
        Counters.putNonZero(m, "tx_drop_", OffloadResult.values(), txDrops);
        Counters.putNonZero(m, "rx_drop_", OffloadResult.values(), rxDrops);
        return m;
    }
}
