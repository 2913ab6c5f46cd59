package org.virtionetd.glue.control;

import java.util.Map;
import java.util.Set;

/**
 * The Prometheus name of one counter of the stats answer ({@link StatsReport}): the one copy of the mapping, which
 * README.md ("Prometheus metrics") shows to users.
 * <ul>
 * <li>A counter of packets the device dropped is a sample of {@code virtio_netd_tx_dropped_total} or
 *     {@code virtio_netd_rx_dropped_total} with the cause as its {@code reason} label ({@link #DROP_REASONS}), so
 *     that a sum over {@code reason} is every drop of that direction.
 * <li>A gauge ({@link #GAUGES}) is {@code virtio_netd_NAME}, TYPE gauge.
 * <li>Every other counter is {@code virtio_netd_NAME_total}, TYPE counter.
 * </ul>
 * Counters the table does not know (one added to NetCounters later) still appear, as counters by their own name.
 */
record PrometheusMetric(String family, String type, String help, String reason) {
    static final String PREFIX = "virtio_netd_";

    /** Counter name to the reason of its drop family (the first two letters, "tx" or "rx", name the family). */
    private static final Map<String, String> DROP_REASONS = Map.of(
            "tx_dropped_backend", "backend",
            "tx_bad_header", "bad_header",
            "tx_bad_chain", "bad_chain",
            "rx_dropped_too_big", "too_big",
            "rx_dropped_runt", "runt",
            "rx_bad_offload", "bad_offload",
            "rx_dropped_stale", "stale");

    /** Values that go down as well as up; -1 in loop_allocated_bytes: the pair's loop is not running. */
    private static final Set<String> GAUGES = Set.of("memory_regions", "mapped_bytes", "loop_allocated_bytes");

    /** HELP text by counter name (drop families by family name); what NetCounters and LifecycleCounters say. */
    private static final Map<String, String> HELP = Map.ofEntries(
            Map.entry("tx_packets", "Packets the guest transmitted on the queue pair's transmit queue."),
            Map.entry("tx_bytes", "Bytes of the packets the guest transmitted."),
            Map.entry("tx_dropped", "Packets from the guest the device dropped, by reason: backend (the backend "
                    + "refused or dropped it), bad_header (the vnet header broke a rule), bad_chain (a chain "
                    + "shorter than the vnet header or with a writable descriptor)."),
            Map.entry("rx_packets", "Frames the device wrote into the guest's receive queue."),
            Map.entry("rx_bytes", "Bytes of the frames the device wrote into the guest's receive queue."),
            Map.entry("rx_filtered", "Frames the receive filter (promiscuous, MAC and VLAN tables) kept from the "
                    + "guest."),
            Map.entry("rx_dropped", "Frames for the guest the device dropped, by reason: too_big (larger than any "
                    + "chain the guest can post), runt (shorter than a vnet header and an Ethernet header), "
                    + "bad_offload (offloads the guest did not accept), stale (queued while no driver ran)."),
            Map.entry("rx_waited_for_buffers", "Times a frame waited because the guest had not posted enough "
                    + "receive buffers."),
            Map.entry("rx_staged", "Frames read into the backend's staging buffer and copied into the guest's, "
                    + "rather than read straight into the guest's buffers (too few or too small buffers posted)."),
            Map.entry("invalid_chains", "Descriptor chains that broke a rule of virtio 1.2 section 2.7, returned "
                    + "with length 0."),
            Map.entry("needs_reset", "Times the device set NEEDS_RESET because a ring was unusable."),
            Map.entry("kicks", "Notifications from the driver that the device handled."),
            Map.entry("notifications", "Used-buffer notifications the device sent to the driver."),
            Map.entry("notifications_suppressed", "Used-buffer notifications suppressed by EVENT_IDX or "
                    + "VIRTQ_AVAIL_F_NO_INTERRUPT."),
            Map.entry("control_ok", "Control queue commands answered VIRTIO_NET_OK."),
            Map.entry("control_err", "Control queue commands answered VIRTIO_NET_ERR."),
            Map.entry("loop_allocated_bytes", "Bytes allocated by the queue pair's event-loop thread since it "
                    + "started; -1 while it is not running."),
            Map.entry("connections", "vhost-user front-ends accepted on the device's socket."),
            Map.entry("reconnects", "vhost-user connections after the first."),
            Map.entry("disconnects", "vhost-user connections ended and cleaned up."),
            Map.entry("resets", "Device resets the front-end asked for (SET_STATUS 0 or RESET_DEVICE)."),
            Map.entry("memory_table_changes", "SET_MEM_TABLE, ADD_MEM_REG and REM_MEM_REG requests that changed "
                    + "the guest memory the device sees."),
            Map.entry("memory_regions", "Guest memory regions mapped now."),
            Map.entry("mapped_bytes", "Bytes of guest memory mapped now."),
            Map.entry("log_base_changes", "SET_LOG_BASE requests whose dirty log was mapped and installed."),
            Map.entry("dirty_pages_logged", "Bits of the dirty log the device set from 0 to 1."),
            Map.entry("memory_region_rx_buffers", "Receive buffers the device wrote frames into in the memory "
                    + "region since the memory was set (approximate while traffic runs)."));

    /** The region counters, labelled guest_address (hexadecimal, as in the stats table). */
    static final PrometheusMetric REGION_RX_BUFFERS = of("memory_region_rx_buffers");
    static final PrometheusMetric REGION_SIZE = new PrometheusMetric(PREFIX + "memory_region_size_bytes", "gauge",
            "Size of the guest memory region.", null);

    /** The metric that shows {@code counter}, a name of the stats answer. */
    static PrometheusMetric of(String counter) {
        String reason = DROP_REASONS.get(counter);
        if (reason != null) {
            String family = counter.substring(0, 2) + "_dropped";
            return new PrometheusMetric(PREFIX + family + "_total", "counter", HELP.get(family), reason);
        }
        String help = HELP.getOrDefault(counter, "The counter " + counter + " of 'virtio-netd stats'.");
        return GAUGES.contains(counter) ? new PrometheusMetric(PREFIX + counter, "gauge", help, null)
                : new PrometheusMetric(PREFIX + counter + "_total", "counter", help, null);
    }

    /** Whether the table has a HELP text of its own for {@code counter} (a test keeps it complete). */
    static boolean documented(String counter) {
        String reason = DROP_REASONS.get(counter);
        return HELP.containsKey(reason != null ? counter.substring(0, 2) + "_dropped" : counter);
    }
}
