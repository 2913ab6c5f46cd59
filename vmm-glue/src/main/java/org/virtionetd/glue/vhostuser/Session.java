package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.EventFd;

import java.io.IOException;
import java.util.List;

import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.LOG_SHMFD;

/**
 * One front-end connection: the features it negotiated, its memory table, dirty log and vrings, and the changes
 * that move several of them together (new memory, new log, device reset). Everything here is dropped, every fd
 * closed, when the front-end goes.
 */
final class Session {
    /** The transport logs under one name, so that one level setting covers all of it. */
    private static final System.Logger LOG = System.getLogger(VhostUserServer.class.getName());

    private final UnixConnection connection;
    private final VirtioDevice device;
    private final long offeredProtocolFeatures;
    private final LifecycleCounters lifecycle;
    private final MemoryTable memory = new MemoryTable();
    private final DirtyLogControl dirtyLog;
    private final VringTable vrings;
    private boolean owner;
    /** Features as the front-end set them, vhost-user bits included. */
    private long features;
    /** What the device last accepted (-1: nothing yet). */
    private long deviceFeatures = -1;
    private long protocolFeatures;

    /** {@code name}: the socket's file name, which the transport's log lines about the rings carry. */
    Session(UnixConnection connection, VirtioDevice device, long offeredProtocolFeatures,
            LifecycleCounters lifecycle, String name) {
        this.connection = connection;
        this.device = device;
        this.offeredProtocolFeatures = offeredProtocolFeatures;
        this.lifecycle = lifecycle;
        this.dirtyLog = new DirtyLogControl(lifecycle.dirtyPages());
        this.vrings = new VringTable(device, memory, dirtyLog, this::protocolFeaturesAcked, name);
    }

    VringTable vrings() {
        return vrings;
    }

    void send(VhostUserMessage reply) throws IOException {
        connection.send(reply);
    }

    void setOwner() {
        owner = true;
    }

    // ------------------------------------------------------------------ features

    /** GET_FEATURES: the device's features and ours; VHOST_F_LOG_ALL only if LOG_SHMFD is offered. */
    long backendFeatures() {
        long f = device.offeredFeatures() | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES);
        if (LOG_SHMFD.in(offeredProtocolFeatures)) {
            f |= VirtioFeature.bit(VirtioFeature.VHOST_F_LOG_ALL);
        }
        return f;
    }

    void setFeatures(long features) throws VhostUserException {
        long offered = backendFeatures();
        if ((features & ~offered) != 0) {
            throw VhostUserException.refused("features 0x" + Long.toHexString(features) + " include bits 0x"
                    + Long.toHexString(features & ~offered) + " that were not offered (offered 0x"
                    + Long.toHexString(offered) + ")");
        }
        long deviceBits = features & ~VhostUserServer.VHOST_USER_ONLY_FEATURES;
        // QEMU sends SET_FEATURES again only to switch VHOST_F_LOG_ALL on a running device: do not make the
        // device renegotiate for that.
        if (deviceBits != deviceFeatures) {
            try {
                device.setDriverFeatures(deviceBits);
            } catch (VirtioException e) {
                throw VhostUserException.refused("features 0x" + Long.toHexString(features) + ": "
                        + e.getMessage(), e);
            }
            deviceFeatures = deviceBits;
        }
        this.features = features;
        installDirtyLog();
    }

    private boolean protocolFeaturesAcked() {
        return VirtioFeature.has(features, VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES);
    }

    long offeredProtocolFeatures() {
        return offeredProtocolFeatures;
    }

    void setProtocolFeatures(long v) throws VhostUserException {
        if ((v & ~offeredProtocolFeatures) != 0) {
            throw VhostUserException.refused("protocol features "
                    + VhostUserProtocolFeature.describe(v & ~offeredProtocolFeatures) + " were not offered");
        }
        protocolFeatures = v;
        LOG.log(System.Logger.Level.DEBUG, "protocol features " + VhostUserProtocolFeature.describe(v));
    }

    /** True if SET_PROTOCOL_FEATURES included {@code f}. */
    boolean negotiated(VhostUserProtocolFeature f) {
        return f.in(protocolFeatures);
    }

    // ------------------------------------------------------------------ memory and dirty log

    void setMemTable(VhostUserMessage m) throws VhostUserException {
        MemoryTable.Change change = memory.replaceTable(m);
        changeMemory(change);
        LOG.log(System.Logger.Level.DEBUG, "memory table: " + change.next().regions());
    }

    void addMemoryRegion(VhostUserMessage m) throws VhostUserException {
        changeMemory(memory.addRegion(m));
    }

    void removeMemoryRegion(VhostUserMessage m) throws VhostUserException {
        changeMemory(memory.removeRegion(m));
    }

    /**
     * Gives the device a new memory (null: nothing changes): running rings are stopped (the device needs that),
     * ring addresses are translated again in the new table, the rings restarted, and only then the retired
     * regions unmapped.
     */
    private void changeMemory(MemoryTable.Change change) {
        if (change == null) {
            return;
        }
        vrings.pauseRunning();
        memory.install(change);
        installDirtyLog();
        device.setMemory(change.next());
        vrings.moveToNewMemory();
        change.retire();
        lifecycle.memoryChanged(change.next());
    }

    /** Installs the log into the current memory when VHOST_F_LOG_ALL is on, removes it otherwise. */
    private void installDirtyLog() {
        memory.setDirtyLog(dirtyLog.forFeatures(features));
    }

    /** SET_LOG_BASE; returns the reply's value, 0 for success (the request always has a reply). */
    long setLogBase(VhostUserMessage m) {
        try {
            if (!LOG_SHMFD.in(protocolFeatures)) {
                throw VhostUserException.refused("SET_LOG_BASE without LOG_SHMFD negotiated");
            }
            DirtyPageLog log = dirtyLog.map(m);
            // A device thread may be marking into the old log: stop the rings before unmapping it.
            List<Vring> paused = vrings.pauseRunning();
            DirtyPageLog old = dirtyLog.replace(log);
            installDirtyLog();
            vrings.updateUsedRingLog();
            vrings.resume(paused);
            if (old != null) {
                old.close();
            }
            lifecycle.logBaseChanged();
            LOG.log(System.Logger.Level.DEBUG, "dirty log of " + log.pages() + " pages");
            return 0;
        } catch (VhostUserException e) {
            LOG.log(System.Logger.Level.WARNING, "SET_LOG_BASE refused: " + e.getMessage());
            return 1;
        }
    }

    void setLogFd(EventFd fd) {
        dirtyLog.setLogFd(fd);
    }

    // ------------------------------------------------------------------ device status and reset

    /** SET_STATUS. */
    void setStatus(long status) throws VhostUserException {
        if (status < 0 || status > 0xff) {
            throw VhostUserException.refused("device status 0x" + Long.toHexString(status)
                    + " is not an 8-bit value");
        }
        if (status == 0) {
            countReset();
            // 2.1.2: writing 0 resets the device, its queues with it (bases included); stop ours first so
            // that no queue runs on when the device forgets it.
            vrings.stopAllForDeviceReset();
            deviceFeatures = -1;
        }
        device.setStatus((int) status);
        if (status == 0) {
            giveMemoryAgain();
        }
    }

    /** RESET_DEVICE: rings, fds and features forgotten; the memory table and the log stay. */
    void resetDevice() {
        countReset();
        stopQueuesAndResetDevice();
        vrings.reset();
        features = 0;
        deviceFeatures = -1;
        installDirtyLog();
        giveMemoryAgain();
    }

    /**
     * Counts a reset the front-end asks for (SET_STATUS 0, RESET_DEVICE) if the device has left its initial state
     * (virtio 1.2, 2.4): a status, or features acked (a front-end without STATUS never sets one). A reset of a
     * device that is already reset changes nothing and is not counted again.
     */
    private void countReset() {
        if (device.status() != 0 || device.ackedFeatures() != 0) {
            lifecycle.reset();
        }
    }

    /** A device reset forgets the memory; the table is still ours. */
    private void giveMemoryAgain() {
        if (memory.mapped()) {
            device.setMemory(memory.current());
        }
    }

    private void stopQueuesAndResetDevice() {
        vrings.stopAll();
        device.reset();
        vrings.detachNotifiers();
    }

    // ------------------------------------------------------------------ end

    /** At disconnect, first: queues stopped, device reset and left with no memory. */
    void stopDevice() {
        stopQueuesAndResetDevice();
        device.setMemory(GuestMemory.empty());
    }

    /** At disconnect, after {@link #stopDevice} (even if it failed): memory and log unmapped, vring fds closed. */
    void release() {
        memory.close();
        lifecycle.mapped(null);
        dirtyLog.close();
        vrings.closeFds();
    }

    /** At disconnect, last: a front-end that sees the socket close knows the device is already reset. */
    void closeConnection() {
        connection.close();
    }
}
