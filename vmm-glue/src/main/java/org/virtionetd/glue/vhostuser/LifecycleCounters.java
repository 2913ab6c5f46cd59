package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemoryRegion;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;

/**
 * What happened to one device over the lives of its front-ends (QEMU docs/interop/vhost-user.rst): connections,
 * device resets, memory-table changes and dirty logging. One per {@link VhostUserServer}, kept across connections;
 * every device of virtio-netd (the bhyve wrapper's too) is driven through vhost-user, so these events all arrive
 * here. Written by the server thread (the dirty-page count by the device's queue threads), read by anyone.
 *
 * <p>The names users see, in {@link #snapshot()} order:
 * <ul>
 * <li>{@code connections}: front-ends accepted on the socket. {@code reconnects}: connections after the first
 *     (QEMU {@code reconnect=1}, a restarted QEMU, the destination of a migration to the same socket).
 * <li>{@code disconnects}: connections ended and cleaned up (queues stopped, device reset, memory unmapped).
 * <li>{@code resets}: device resets the front-end asked for, SET_STATUS 0 (virtio 1.2, 2.1.2) or RESET_DEVICE,
 *     counted only when the device had left its initial state (a status or acked features), so that a reset of a
 *     device already reset is not counted again. QEMU 7.2 sends SET_STATUS 0 on every vhost_dev_stop (VM stop,
 *     migration source, reboot, driver unload) when STATUS is negotiated, and no reset at all without it. Not
 *     counted: RESET_OWNER ("no longer used" in vhost-user.rst; we only disable the rings, the device state stays)
 *     and the reset at disconnect (counted as {@code disconnects}).
 * <li>{@code memory_table_changes}: SET_MEM_TABLE, ADD_MEM_REG and REM_MEM_REG that changed the memory the
 *     device sees. A region added again identically, or removed while another reference keeps it (QEMU's shadow
 *     table per queue pair), changes nothing and is not counted; neither is a refused request.
 * <li>{@code memory_regions}, {@code mapped_bytes} (gauges): guest memory regions mapped now and their bytes; 0
 *     before the first table and after a disconnect (a migration source's device has let go of guest memory).
 * <li>{@code log_base_changes}: SET_LOG_BASE requests whose log was mapped and installed.
 * <li>{@code dirty_pages_logged}: bits of a dirty log the device set from 0 to 1 ("Migration" in vhost-user.rst).
 *     The front-end clears bits as it syncs the log, so a page written again after a sync counts again.
 * </ul>
 */
public final class LifecycleCounters {
    private final LongAdder connections = new LongAdder();
    private final LongAdder disconnects = new LongAdder();
    private final LongAdder resets = new LongAdder();
    private final LongAdder memoryTableChanges = new LongAdder();
    private final LongAdder logBaseChanges = new LongAdder();
    /** Added to by {@link DirtyPageLog} on the data path: striped, so queue threads do not contend. */
    private final LongAdder dirtyPagesLogged = new LongAdder();
    private volatile long memoryRegions;
    private volatile long mappedBytes;

    public long connections() {
        return connections.sum();
    }

    /** Connections after the first. */
    public long reconnects() {
        return Math.max(0, connections() - 1);
    }

    public long disconnects() {
        return disconnects.sum();
    }

    public long resets() {
        return resets.sum();
    }

    public long memoryTableChanges() {
        return memoryTableChanges.sum();
    }

    public long memoryRegions() {
        return memoryRegions;
    }

    public long mappedBytes() {
        return mappedBytes;
    }

    public long logBaseChanges() {
        return logBaseChanges.sum();
    }

    public long dirtyPagesLogged() {
        return dirtyPagesLogged.sum();
    }

    /** Every counter by the name users see (stats command), in the order of the class comment. */
    public Map<String, Long> snapshot() {
        Map<String, Long> m = new LinkedHashMap<>();
        m.put("connections", connections());
        m.put("reconnects", reconnects());
        m.put("disconnects", disconnects());
        m.put("resets", resets());
        m.put("memory_table_changes", memoryTableChanges());
        m.put("memory_regions", memoryRegions());
        m.put("mapped_bytes", mappedBytes());
        m.put("log_base_changes", logBaseChanges());
        m.put("dirty_pages_logged", dirtyPagesLogged());
        return m;
    }

    // ------------------------------------------------------------------ events (transport only)

    void connected() {
        connections.increment();
    }

    void disconnected() {
        disconnects.increment();
    }

    void reset() {
        resets.increment();
    }

    /** The device was given {@code now} by SET_MEM_TABLE, ADD_MEM_REG or REM_MEM_REG. */
    void memoryChanged(GuestMemory now) {
        memoryTableChanges.increment();
        mapped(now);
    }

    /** The gauges follow {@code now}; null: nothing is mapped. */
    void mapped(GuestMemory now) {
        long bytes = 0;
        int regions = 0;
        if (now != null) {
            for (MemoryRegion r : now.regions()) {
                bytes += r.size();
                regions++;
            }
        }
        memoryRegions = regions;
        mappedBytes = bytes;
    }

    void logBaseChanged() {
        logBaseChanges.increment();
    }

    /** What {@link DirtyPageLog} adds newly set bits to. */
    LongAdder dirtyPages() {
        return dirtyPagesLogged;
    }
}
