package org.virtionetd.glue.control;

import org.virtionetd.virtio.net.NetCounters;
import org.virtionetd.virtio.net.RegionRxBuffers;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The counters of every queue pair, as a table (one row per counter, one column per pair) or as JSON, and the
 * device's lifecycle counters (connections, resets, memory changes, dirty logging) below them or in a top-level
 * {@code "lifecycle"} object.
 *
 * <p>When given, the regions of the device's guest memory come between the two: a MEMORY section, or a top-level
 * {@code "memory"} array of {@code {"guest_address", "size", "rx_buffers"}} (receive buffers the device wrote
 * frames into in that region since the memory was set, as {@link RegionRxBuffers} counts them: approximate while
 * traffic runs).
 *
 * <p>{@link PrometheusExposition} renders the same counters for Prometheus.
 */
public final class StatsReport {
    private final String device;
    private final List<Map<String, Long>> pairs = new ArrayList<>();
    /** By name, in the order shown; empty when the caller has none. */
    private final Map<String, Long> lifecycle;
    /** One map per memory region; null when the caller has none (no "memory" field then). */
    private final List<Map<String, Long>> memory;

    public StatsReport(String device, List<NetCounters> counters) {
        this(device, counters, null);
    }

    /** With {@code allocatedBytes[i]}: bytes allocated by pair i's event-loop thread (-1: not running). */
    public StatsReport(String device, List<NetCounters> counters, long[] allocatedBytes) {
        this(device, counters, allocatedBytes, Map.of());
    }

    /** With the device's lifecycle counters by name (LifecycleCounters.snapshot), shown in their order. */
    public StatsReport(String device, List<NetCounters> counters, long[] allocatedBytes,
                       Map<String, Long> lifecycle) {
        this(device, counters, allocatedBytes, lifecycle, null);
    }

    /** With the regions of the device's memory (VirtioNetDevice.rxBuffersByRegion); null: none shown. */
    public StatsReport(String device, List<NetCounters> counters, long[] allocatedBytes,
                       Map<String, Long> lifecycle, List<RegionRxBuffers> memory) {
        this.device = device;
        this.lifecycle = new LinkedHashMap<>(lifecycle);
        if (memory == null) {
            this.memory = null;
        } else {
            this.memory = new ArrayList<>();
            for (RegionRxBuffers r : memory) {
                Map<String, Long> m = new LinkedHashMap<>();
                m.put("guest_address", r.guestAddress());
                m.put("size", r.size());
                m.put("rx_buffers", r.rxBuffers());
                this.memory.add(m);
            }
        }
        for (int i = 0; i < counters.size(); i++) {
            Map<String, Long> m = new LinkedHashMap<>(counters.get(i).snapshot());
            if (allocatedBytes != null) {
                m.put("loop_allocated_bytes", allocatedBytes[i]);
            }
            pairs.add(m);
        }
    }

    /** The device's name, as the reports show it. */
    String device() {
        return device;
    }

    /** Counters by name, one map per queue pair (pair i at index i). */
    List<Map<String, Long>> pairs() {
        return pairs;
    }

    /** Lifecycle counters by name; empty when the caller has none. */
    Map<String, Long> lifecycle() {
        return lifecycle;
    }

    /** guest_address, size and rx_buffers of each memory region; null when the caller has none. */
    List<Map<String, Long>> memory() {
        return memory;
    }

    public String toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("device", device);
        List<Object> qs = new ArrayList<>();
        for (int i = 0; i < pairs.size(); i++) {
            Map<String, Object> q = new LinkedHashMap<>();
            q.put("pair", i);
            q.putAll(pairs.get(i));
            qs.add(q);
        }
        m.put("queue_pairs", qs);
        if (memory != null) {
            m.put("memory", memory);
        }
        if (!lifecycle.isEmpty()) {
            m.put("lifecycle", lifecycle);
        }
        return Json.write(m);
    }

    public String toTable() {
        StringBuilder sb = new StringBuilder("device ").append(device).append('\n');
        sb.append(String.format("%-28s", "COUNTER"));
        for (int i = 0; i < pairs.size(); i++) {
            sb.append(String.format(" %14s", "pair " + i));
        }
        sb.append('\n');
        if (!pairs.isEmpty()) {
            for (String name : pairs.get(0).keySet()) {
                sb.append(String.format("%-28s", name));
                for (Map<String, Long> p : pairs) {
                    sb.append(String.format(" %14d", p.get(name)));
                }
                sb.append('\n');
            }
        }
        if (memory != null) {
            sb.append(String.format("%-28s %18s %14s", "MEMORY", "size", "rx_buffers")).append('\n');
            for (Map<String, Long> r : memory) {
                sb.append(String.format("%-28s %18s %14d", "0x" + Long.toHexString(r.get("guest_address")),
                        "0x" + Long.toHexString(r.get("size")), r.get("rx_buffers"))).append('\n');
            }
        }
        if (!lifecycle.isEmpty()) {
            sb.append(String.format("%-28s %14s", "LIFECYCLE", "device")).append('\n');
            lifecycle.forEach((name, v) -> sb.append(String.format("%-28s %14d", name, v)).append('\n'));
        }
        return sb.toString();
    }
}
