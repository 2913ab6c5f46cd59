package org.virtionetd.virtio.net;

import org.virtionetd.virtio.queue.NotificationCounters;

import java.util.Map;
import java.util.concurrent.atomic.LongAdder;

/**
 * Named counters of one queue pair (Firecracker's metrics.rs idea): written by the pair's event-loop thread,
 * read by anyone (stats command, tests). Names are the field names in snake_case.
 */
public final class NetCounters implements NotificationCounters {
    public final LongAdder txPackets = new LongAdder();
    public final LongAdder txBytes = new LongAdder();
    /** The backend refused or dropped a packet. */
    public final LongAdder txDroppedBackend = new LongAdder();
    /** The vnet header broke a rule of {@link HeaderCheck}; the packet was dropped. */
    public final LongAdder txBadHeader = new LongAdder();
    /** A TX chain shorter than the vnet header, or with a writable descriptor. */
    public final LongAdder txBadChain = new LongAdder();
    public final LongAdder rxPackets = new LongAdder();
    public final LongAdder rxBytes = new LongAdder();
    /** Frames the RX filter (promiscuous/MAC/VLAN table, 5.1.6.5.1) kept from the guest. */
    public final LongAdder rxFiltered = new LongAdder();
    /** Frames larger than any chain the guest can post, dropped. */
    public final LongAdder rxDroppedTooBig = new LongAdder();
    /** Times a frame waited because the guest had not posted enough buffers. */
    public final LongAdder rxWaitedForBuffers = new LongAdder();
    /**
     * Frames copied twice: staged by the backend, then scattered into the guest's buffers, because the backend
     * cannot read into guest buffers or the chains held could not take its largest frame ({@link RxPath}).
     */
    public final LongAdder rxStaged = new LongAdder();
    /** Frames from the backend shorter than a vnet header plus an Ethernet header, dropped. */
    public final LongAdder rxDroppedRunt = new LongAdder();
    /** Frames the backend delivered with offloads the guest did not accept, dropped. */
    public final LongAdder rxBadOffload = new LongAdder();
    /**
     * Frames the backend held when the receive queue started after a reset or a stop (queued while no driver ran
     * the device), dropped then ({@link NetBackend#discardQueued}).
     */
    public final LongAdder rxDroppedStale = new LongAdder();
    /** Chains that broke a rule of 2.7 (loops, bad indirect, outside memory...), returned with length 0. */
    public final LongAdder invalidChains = new LongAdder();
    /** Times the device set NEEDS_RESET because the ring itself was unusable. */
    public final LongAdder needsReset = new LongAdder();
    public final LongAdder kicks = new LongAdder();
    public final LongAdder notifications = new LongAdder();
    /** Notifications suppressed by EVENT_IDX or VIRTQ_AVAIL_F_NO_INTERRUPT. */
    public final LongAdder notificationsSuppressed = new LongAdder();
    public final LongAdder controlOk = new LongAdder();
    public final LongAdder controlErr = new LongAdder();

    @Override
    public void notified() {
        notifications.increment();
    }

    @Override
    public void suppressed() {
        notificationsSuppressed.increment();
    }

    /** All counters by snake_case name, in declaration order. */
    public Map<String, Long> snapshot() {
        return org.virtionetd.virtio.device.Counters.snapshot(this);
    }
}
