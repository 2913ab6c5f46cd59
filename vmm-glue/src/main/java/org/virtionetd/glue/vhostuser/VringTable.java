package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.queue.Notifier;
import org.virtionetd.virtio.queue.Virtqueue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * One connection's vrings (vhost-user.rst, "Ring states"): what SET_VRING_* said about each ring, its kick, call
 * and err fds, and when the ring starts and stops on the device. The only reader of {@link Vring}'s fields. Whether
 * a ring runs and where it stands (its base) are the device's: asked from it, copied here only when a device reset
 * forgets it ({@link #stopAllForDeviceReset}).
 */
final class VringTable {
    /** The transport logs under one name, so that one level setting covers all of it. */
    private static final System.Logger LOG = System.getLogger(VhostUserServer.class.getName());

    private final VirtioDevice device;
    private final MemoryTable memory;
    private final DirtyLogControl dirtyLog;
    /** True once the front-end acked VHOST_USER_F_PROTOCOL_FEATURES: rings then start disabled. */
    private final BooleanSupplier protocolFeaturesAcked;
    private Vring[] vrings;

    /** The socket's file name, in the log lines about rings (several devices share one process's log). */
    private final String name;

    VringTable(VirtioDevice device, MemoryTable memory, DirtyLogControl dirtyLog,
               BooleanSupplier protocolFeaturesAcked, String name) {
        this.name = name;
        this.device = device;
        this.memory = memory;
        this.dirtyLog = dirtyLog;
        this.protocolFeaturesAcked = protocolFeaturesAcked;
        this.vrings = newVrings(device.queueCount());
    }

    private static Vring[] newVrings(int n) {
        Vring[] v = new Vring[n];
        for (int i = 0; i < n; i++) {
            v[i] = new Vring(i);
        }
        return v;
    }

    private Vring vring(int index, VhostUserRequest request) throws VhostUserException {
        if (index < 0 || index >= vrings.length) {
            throw VhostUserException.refused(request.name() + ": queue index " + Integer.toUnsignedString(index)
                    + ", the device has " + vrings.length + " queues");
        }
        return vrings[index];
    }

    // ------------------------------------------------------------------ SET_VRING_* and GET_VRING_BASE

    void setNum(int index, int num) throws VhostUserException {
        Vring v = vring(index, VhostUserRequest.SET_VRING_NUM);
        if (started(v)) {
            throw VhostUserException.refused("SET_VRING_NUM on queue " + v.index + " while it runs");
        }
        v.requestedSize = num;
        v.sizeSet = true;
        v.configured = false;
        if (v.addressSet) {
            configure(v);
            updateUsedRingLog();
            maybeStart(v);
        }
    }

    void setAddress(VhostUserMessage m) throws VhostUserException {
        Vring v = vring(m.addressIndex(), VhostUserRequest.SET_VRING_ADDR);
        if (!memory.mapped()) {
            throw VhostUserException.refused("SET_VRING_ADDR for queue " + v.index + " before any memory table");
        }
        long desc = m.descriptorAddress();
        long avail = m.availableAddress();
        long used = m.usedAddress();
        // Translate first, so that a bad message changes nothing.
        translate(v, "descriptor table", desc);
        translate(v, "available ring", avail);
        translate(v, "used ring", used);
        // In one memory table a user address names one guest address (regions do not overlap in either space).
        boolean sameRing = v.configured && desc == v.descUser && avail == v.availUser && used == v.usedUser;
        if (sameRing && started(v)) {
            // Same ring, new flags: QEMU switches used-ring logging this way on a running ring (migration).
            v.addressFlags = m.addressFlags();
            v.logGuestAddress = m.logGuestAddress();
            updateUsedRingLog();
            return;
        }
        List<Vring> paused = new ArrayList<>();
        if (started(v)) {
            stopVring(v, false);
            paused.add(v);
        }
        long oldDesc = v.descUser;
        long oldAvail = v.availUser;
        long oldUsed = v.usedUser;
        boolean oldSet = v.addressSet;
        v.descUser = desc;
        v.availUser = avail;
        v.usedUser = used;
        v.addressSet = true;
        v.configured = false;
        try {
            if (v.sizeSet) {
                configure(v);
            }
        } catch (VhostUserException e) {
            v.descUser = oldDesc;
            v.availUser = oldAvail;
            v.usedUser = oldUsed;
            v.addressSet = oldSet;
            if (oldSet && v.sizeSet) {
                try {
                    configure(v);
                } catch (VhostUserException again) {
                    LOG.log(System.Logger.Level.WARNING, again.getMessage());
                }
            }
            resume(paused);
            throw e;
        }
        v.addressFlags = m.addressFlags();
        v.logGuestAddress = m.logGuestAddress();
        updateUsedRingLog();
        resume(paused);
        maybeStart(v);
    }

    /** The rings are packed (VIRTIO_F_RING_PACKED acked): what a base and a device area look like. */
    private boolean packed() {
        return VirtioFeature.has(device.ackedFeatures(), VirtioFeature.RING_PACKED);
    }

    void setBase(int index, int base) throws VhostUserException {
        Vring v = vring(index, VhostUserRequest.SET_VRING_BASE);
        if (started(v)) {
            throw VhostUserException.refused("SET_VRING_BASE on queue " + v.index + " while it runs");
        }
        // vhost-user.rst, "Vring descriptor index for split virtqueues": bits 16-31 reserved; the packed form uses
        // all 32 bits (avail index and wrap counter, used index and wrap counter).
        if (!packed() && (base < 0 || base > 0xffff)) {
            throw VhostUserException.refused("queue " + v.index + ": base "
                    + Integer.toUnsignedString(base) + " is not a 16-bit ring index");
        }
        try {
            device.setQueueBase(v.index, base);
        } catch (VirtioException e) {
            throw VhostUserException.refused("queue " + v.index + " base " + base + ": " + e.getMessage(), e);
        }
        v.baseAtResetKept = false;
    }

    /** GET_VRING_BASE: stops the ring for good and returns its base (as for SET_VRING_BASE, split or packed). */
    int stopAndGetBase(int index) throws VhostUserException {
        if (index < 0 || index >= vrings.length) {
            // The front-end waits for a vring state we cannot give: end the connection.
            throw VhostUserException.malformed("GET_VRING_BASE for queue " + Integer.toUnsignedString(index)
                    + ", the device has " + vrings.length);
        }
        Vring v = vrings[index];
        stopVring(v, true);
        return v.baseAtResetKept ? v.baseAtReset : device.queueBase(index);
    }

    void setKick(VhostUserMessage m) throws VhostUserException {
        long u = m.u64();
        Vring v = vring((int) (u & VhostUserMessage.VRING_INDEX_MASK), VhostUserRequest.SET_VRING_KICK);
        EventFd kick = (u & VhostUserMessage.VRING_NOFD_MASK) != 0 ? null : EventFd.adopt(m.takeFd(0));
        if (kick != null) {
            String what = fdTarget(kick.fd());
            if (!what.equals("anon_inode:[eventfd]")) {
                kick.close();
                // The queue loop polls the kick: a file that cannot be polled would stop the whole pair.
                throw VhostUserException.refused("queue " + v.index + ": the kick fd is " + what + ", not an eventfd");
            }
        }
        if (started(v)) {
            stopVring(v, false);
        }
        if (v.kick != null) {
            v.kick.close();
        }
        v.kick = kick;
        // "The back-end must start ring upon receiving a kick": the device waits on the kick fd itself, so the
        // ring starts now (or, with no fd, polls).
        v.kickReceived = true;
        maybeStart(v);
        if (!started(v)) {
            LOG.log(System.Logger.Level.DEBUG, "queue " + v.index + " has its kick; it starts once its size,"
                    + " addresses and memory are set");
        }
    }

    /** What an fd refers to, as /proc shows it (e.g. "anon_inode:[eventfd]"). */
    private static String fdTarget(int fd) {
        try {
            return java.nio.file.Files.readSymbolicLink(java.nio.file.Path.of("/proc/self/fd/" + fd)).toString();
        } catch (IOException | RuntimeException e) {
            return "unknown (" + e.getMessage() + ")";
        }
    }

    void setCall(VhostUserMessage m) throws VhostUserException {
        long u = m.u64();
        Vring v = vring((int) (u & VhostUserMessage.VRING_INDEX_MASK), VhostUserRequest.SET_VRING_CALL);
        if ((u & VhostUserMessage.VRING_NOFD_MASK) != 0) {
            v.callActive = false;
        } else {
            int fd = m.takeFd(0);
            if (v.callSlot == null) {
                v.callSlot = EventFd.adopt(fd);
                EventFd slot = v.callSlot;
                v.callNotifier = slot::signal;
            } else {
                try {
                    LinuxNative.dup3(fd, v.callSlot.fd());
                } catch (IOException e) {
                    throw VhostUserException.refused("queue " + v.index + ": cannot install call fd: "
                            + e.getMessage(), e);
                } finally {
                    LinuxNative.close(fd);
                }
            }
            v.callActive = true;
        }
        device.setNotifier(v.index, v.notifier());
    }

    void setErr(VhostUserMessage m) throws VhostUserException {
        long u = m.u64();
        Vring v = vring((int) (u & VhostUserMessage.VRING_INDEX_MASK), VhostUserRequest.SET_VRING_ERR);
        EventFd fd = (u & VhostUserMessage.VRING_NOFD_MASK) != 0 ? null : EventFd.adopt(m.takeFd(0));
        if (v.err != null) {
            v.err.close();
        }
        v.err = fd;
    }

    void setEnable(int index, int num) throws VhostUserException {
        Vring v = vring(index, VhostUserRequest.SET_VRING_ENABLE);
        if (num != 0 && num != 1) {
            throw VhostUserException.refused("SET_VRING_ENABLE queue " + v.index + " with "
                    + Integer.toUnsignedString(num) + ", expected 0 or 1");
        }
        v.enableReceived = true;
        device.setQueueEnabled(v.index, num == 1);
    }

    /** RESET_OWNER: deprecated; the spec recommends ignoring it or disabling all rings. We disable them. */
    void disableAll() {
        for (Vring v : vrings) {
            v.enableReceived = true;
            device.setQueueEnabled(v.index, false);
        }
    }

    // ------------------------------------------------------------------ start and stop

    private boolean started(Vring v) {
        return device.queueStarted(v.index);
    }

    private long translate(Vring v, String what, long user) throws VhostUserException {
        long gpa = memory.guestAddressOfUser(user);
        if (gpa == GuestMemory.NOWHERE) {
            throw VhostUserException.refused("queue " + v.index + ": " + what + " user address 0x"
                    + Long.toHexString(user) + " is in no memory region");
        }
        return gpa;
    }

    /** Translates the ring's user addresses and gives them to the device (which checks size and addresses). */
    private void configure(Vring v) throws VhostUserException {
        long desc = translate(v, "descriptor table", v.descUser);
        long avail = translate(v, "available ring", v.availUser);
        long used = translate(v, "used ring", v.usedUser);
        v.guestAddresses = String.format("desc 0x%x driver 0x%x device 0x%x", desc, avail, used);
        try {
            device.setQueue(v.index, v.requestedSize, desc, avail, used);
        } catch (VirtioException e) {
            v.configured = false;
            throw VhostUserException.refused("queue " + v.index + " size " + Integer.toUnsignedString(v.requestedSize)
                    + ": " + e.getMessage(), e);
        }
        v.configured = true;
    }

    private void maybeStart(Vring v) throws VhostUserException {
        if (started(v) || !v.kickReceived || !v.configured || !memory.mapped()) {
            return;
        }
        try {
            device.startQueue(v.index, v.kick, v.notifier());
        } catch (VirtioException e) {
            throw VhostUserException.refused("queue " + v.index + " cannot start: " + e.getMessage(), e);
        }
        v.baseAtResetKept = false;
        if (!v.enableReceived) {
            // "If VHOST_USER_F_PROTOCOL_FEATURES has not been negotiated, the ring starts directly in the enabled
            // state ... If it has been negotiated, the ring is initialized in a disabled state".
            device.setQueueEnabled(v.index, !protocolFeaturesAcked.getAsBoolean());
        }
        LOG.log(System.Logger.Level.INFO, name + ": queue " + v.index + " started, size " + v.requestedSize + ", base 0x"
                + Integer.toHexString(device.queueBase(v.index)) + ", " + v.guestAddresses
                + ((v.addressFlags & 1) != 0 ? ", used ring logged at 0x" + Long.toHexString(v.logGuestAddress) : ""));
    }

    /**
     * Stops a running ring; the device keeps where it stopped as its base. {@code forGood} (GET_VRING_BASE) also
     * drops the kick: the ring starts again only with a new SET_VRING_KICK. Otherwise it is a pause: the ring starts
     * again at once and the driver runs on, so what the backend queued meanwhile is still delivered.
     */
    private void stopVring(Vring v, boolean forGood) {
        if (started(v)) {
            if (forGood) {
                device.stopQueue(v.index);
            } else {
                device.pauseQueue(v.index);
            }
        }
        if (forGood) {
            v.kickReceived = false;
            if (v.kick != null) {
                v.kick.close();
                v.kick = null;
            }
        }
    }

    /** Stops the running rings (bases kept) and returns them, for {@link #resume}. */
    List<Vring> pauseRunning() {
        List<Vring> paused = new ArrayList<>();
        for (Vring v : vrings) {
            if (started(v)) {
                stopVring(v, false);
                paused.add(v);
            }
        }
        return paused;
    }

    /** Starts the given rings again where they can start; one that cannot is logged and stays stopped. */
    void resume(List<Vring> paused) {
        for (Vring v : paused) {
            try {
                maybeStart(v);
            } catch (VhostUserException e) {
                LOG.log(System.Logger.Level.WARNING, "queue " + v.index + " cannot restart: " + e.getMessage());
            }
        }
    }

    /**
     * After a new memory table: ring addresses are translated again in it and every ring that has its kick starts
     * if it can, also one stopped by an earlier table that lost its ring. The rings were paused before.
     */
    void moveToNewMemory() {
        for (Vring v : vrings) {
            v.configured = false;
            if (v.addressSet && v.sizeSet) {
                try {
                    configure(v);
                } catch (VhostUserException e) {
                    LOG.log(System.Logger.Level.WARNING, "queue " + v.index + " no longer fits the new memory table: "
                            + e.getMessage());
                }
            }
        }
        resume(List.of(vrings));
        updateUsedRingLog();
    }

    /** Tells the dirty log where the configured rings' used rings are (and which ones to log). */
    void updateUsedRingLog() {
        DirtyPageLog log = dirtyLog.log();
        if (log == null) {
            return;
        }
        List<DirtyPageLog.UsedRing> rings = new ArrayList<>();
        for (Vring v : vrings) {
            if (v.configured) {
                // configured: the used ring's user address translates in the current table.
                rings.add(new DirtyPageLog.UsedRing(memory.guestAddressOfUser(v.usedUser),
                        Virtqueue.deviceAreaBytes(v.requestedSize, packed()), v.logGuestAddress,
                        (v.addressFlags & VhostUserMessage.VRING_F_LOG) != 0));
            }
        }
        log.setUsedRings(rings.toArray(new DirtyPageLog.UsedRing[0]));
    }

    // ------------------------------------------------------------------ device status, reset and teardown

    /** Every ring stopped for good (bases kept, kicks closed). */
    void stopAll() {
        for (Vring v : vrings) {
            stopVring(v, true);
        }
    }

    /**
     * SET_STATUS 0 resets the device's queues: ours stop for good and must be configured again, and each ring is
     * initialized again, so its enabled state is the PROTOCOL_FEATURES default until the next SET_VRING_ENABLE.
     * Where each ring stood is kept for GET_VRING_BASE: QEMU 7.2's vhost_dev_stop (VM stop, migration) sends
     * SET_STATUS 0 before GET_VRING_BASE and later resumes the ring at the base it got (later QEMUs send
     * GET_VRING_BASE first); a base of the reset device would restart the ring at its beginning.
     */
    void stopAllForDeviceReset() {
        for (Vring v : vrings) {
            stopVring(v, true);
            v.baseAtReset = device.queueBase(v.index);
            v.baseAtResetKept = true;
            v.configured = false;
            v.enableReceived = false;
        }
    }

    /** The device forgets our call eventfds before they are closed. */
    void detachNotifiers() {
        for (Vring v : vrings) {
            if (v.callSlot != null) {
                device.setNotifier(v.index, Notifier.NONE);
            }
        }
    }

    /** Closes every kick, call and err fd the front-end sent. */
    void closeFds() {
        for (Vring v : vrings) {
            for (EventFd e : new EventFd[] {v.kick, v.callSlot, v.err}) {
                if (e != null) {
                    e.close();
                }
            }
            v.kick = null;
            v.callSlot = null;
            v.err = null;
            v.callActive = false;
            v.callNotifier = Notifier.NONE;
        }
    }

    /** RESET_DEVICE: fds closed and every ring forgotten, as on a new connection. */
    void reset() {
        closeFds();
        vrings = newVrings(vrings.length);
    }
}
