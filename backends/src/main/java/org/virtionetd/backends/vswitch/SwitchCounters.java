package org.virtionetd.backends.vswitch;

import org.virtionetd.virtio.device.Counters;

import org.virtionetd.backends.offload.OffloadResult;

import java.util.Map;
import java.util.concurrent.atomic.LongAdder;

/**
 * What one switch port saw, as named lock-free counters. "tx" is what the port's device sent into the switch,
 * "rx" what the switch delivered to the port (other ports' threads write the enqueue counters, the port's own
 * thread the delivery ones). {@link #snapshot()} names them in snake_case.
 */
public final class SwitchCounters {
    /** Frames the device sent into the switch. */
    public final LongAdder txFrames = new LongAdder();
    /** Frames sent to the one port their destination was learned on. */
    public final LongAdder txUnicast = new LongAdder();
    /** Frames flooded (broadcast, multicast, unknown destination) to every other port of their VLAN. */
    public final LongAdder txFlooded = new LongAdder();
    /** Frames shorter than an Ethernet header, or with a multicast source address: dropped. */
    public final LongAdder txDroppedInvalid = new LongAdder();
    /** Frames on a VLAN this port is not a member of: dropped. */
    public final LongAdder txDroppedVlan = new LongAdder();
    /** Frames whose destination was learned on this same port: not sent back (filtered). */
    public final LongAdder txFilteredSamePort = new LongAdder();

    /** Frames put into this port's receive ring. */
    public final LongAdder rxEnqueued = new LongAdder();
    /** Frames for this port dropped because its receive ring was full. */
    public final LongAdder rxDroppedRingFull = new LongAdder();
    /** Frames delivered with their metadata (the driver accepted every offload they carry). */
    public final LongAdder rxPassedThrough = new LongAdder();
    /** Frames whose partial checksum was completed because the driver did not accept GUEST_CSUM. */
    public final LongAdder rxChecksumsCompleted = new LongAdder();
    /** GSO frames segmented because the driver did not accept their GSO type. */
    public final LongAdder rxPacketsSegmented = new LongAdder();
    /** Frames made by that segmentation. */
    public final LongAdder rxSegmentsMade = new LongAdder();
    /** Frames longer than the buffers the device offered for them, dropped. */
    public final LongAdder rxDroppedNoRoom = new LongAdder();

    private final LongAdder[] rxOffloadDrops = new LongAdder[OffloadResult.values().length];

    SwitchCounters() {
        for (int i = 0; i < rxOffloadDrops.length; i++) {
            rxOffloadDrops[i] = new LongAdder();
        }
    }

    /** Frames the software engine refused to complete for this port (malformed metadata), by reason. */
    public LongAdder rxOffloadDrops(OffloadResult reason) {
        return rxOffloadDrops[reason.ordinal()];
    }

    /** All counters by snake_case name; offload drops ({@code rx_drop_<reason>}) only when non-zero. */
    public Map<String, Long> snapshot() {
        Map<String, Long> m = Counters.snapshot(this);
        Counters.putNonZero(m, "rx_drop_", OffloadResult.values(), rxOffloadDrops);
        return m;
    }
}
