package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.EventFd;

/**
 * One virtqueue (virtio 1.2, 2.5): the one owner of its configuration (size, the three ring addresses, enabled,
 * kick and notifier) and of its runtime state (where the device reads and writes, held by the ring layout behind
 * it while it runs, kept here while it is stopped).
 *
 * <p>The transport configures it while it is stopped ({@link #configure}, {@link #setBase}, {@link #setKick})
 * and starts it on guest memory ({@link #start}); from then on it belongs to the queue pair's thread, which uses
 * only the operations below: {@link #pop}, {@link #addUsed}, {@link #publishUsedAndNotify},
 * {@link #disableNotification} and {@link #enableNotification}. Only {@link #enabled} and the notifier may change
 * while it runs (volatile). The ring layout behind it is a {@link DeviceRing}, split (2.7) or packed (2.8) as the
 * features say (VIRTIO_F_RING_PACKED); nothing above this class reads ring structures.
 */
public final class Virtqueue {
    private final int index;
    private int size;
    private long descAddress;
    private long driverArea;
    private long deviceArea;
    /** The front-end's base (SET_VRING_BASE) while stopped, or where the device was at its last stop. */
    private int base;
    /** Where the device was at its last stop ({@link DeviceRing#nextAvail} / {@link DeviceRing#nextUsed} form). */
    private int stoppedAvail;
    private int stoppedUsed;
    /** The device stopped itself since the last base: it resumes at its own position, not at {@link #base}. */
    private boolean ownStop;
    /** VIRTIO_F_IN_ORDER negotiated for the running queue. */
    private boolean inOrder;
    private EventFd kick;
    private volatile Notifier notifier = Notifier.NONE;
    private volatile boolean enabled = true;
    /** The running layout; null while stopped. */
    private DeviceRing ring;

    public Virtqueue(int index) {
        this.index = index;
    }

    public int index() {
        return index;
    }

    /** A queue size the ring layout accepts: split (2.7) a power of two up to 32768, packed (2.8) 1..32768. */
    public static boolean validSize(int size, boolean packed) {
        return packed ? PackedQueue.validSize(size) : SplitQueue.validSize(size);
    }

    /**
     * Bytes of the device area for a queue of {@code size}: split, the used ring (2.7.8); packed, the device event
     * suppression structure (2.8.10). A packed ring's used descriptors are written in its descriptor area.
     */
    public static long deviceAreaBytes(int size, boolean packed) {
        return packed ? PackedQueue.EVENT_SUPPRESS_BYTES : SplitQueue.usedRingBytes(size);
    }

    // ---- configuration (transport, while stopped) --------------------------------------------------------

    public int size() {
        return size;
    }

    /** The descriptor area (2.5: "Descriptor Area"), guest-physical. */
    public long descAddress() {
        return descAddress;
    }

    /** The driver area (2.5): the split ring's available ring, the packed ring's driver event suppression. */
    public long driverArea() {
        return driverArea;
    }

    /** The device area (2.5): the split ring's used ring, the packed ring's device event suppression. */
    public long deviceArea() {
        return deviceArea;
    }

    /** Size and guest-physical addresses as the driver wrote them; checked when the queue starts. */
    public void configure(int queueSize, long desc, long driver, long device) {
        requireStopped("configure");
        this.size = queueSize;
        this.descAddress = desc;
        this.driverArea = driver;
        this.deviceArea = device;
    }

    /**
     * Where the device starts (vhost-user SET_VRING_BASE), laid out as vhost-user.rst says for the ring layout:
     * split, the 16-bit avail index (the used index is then read from the ring); packed, avail index and wrap
     * counter in bits 0-15, used in 16-31. Checked when the queue starts, when the layout is known.
     */
    public void setBase(int vhostBase) {
        requireStopped("set the base of");
        base = vhostBase;
        ownStop = false;
    }

    /** Where the device is, as GET_VRING_BASE gives it: from the running ring, where it stopped, or the base set. */
    public int base() {
        return ring != null ? ring.base() : base;
    }

    /** The next available entry the device reads (split: the avail index; packed: slot, wrap counter in bit 15). */
    public int nextAvail() {
        return ring != null ? ring.nextAvail() : ownStop ? stoppedAvail : base & 0xffff;
    }

    /** Whether the running queue uses buffers in the order they were made available (VIRTIO_F_IN_ORDER). */
    public boolean inOrder() {
        return inOrder;
    }

    public EventFd kick() {
        return kick;
    }

    /** The kick eventfd belongs to the transport, which closes it; the queue only waits on it (null: poll). */
    public void setKick(EventFd k) {
        kick = k;
    }

    public Notifier notifier() {
        return notifier;
    }

    /** Replaced at any time (vhost-user SET_VRING_CALL): the running thread reads it once per burst. */
    public void setNotifier(Notifier n) {
        notifier = n == null ? Notifier.NONE : n;
    }

    public boolean enabled() {
        return enabled;
    }

    public void setEnabled(boolean e) {
        enabled = e;
    }

    public boolean started() {
        return ring != null;
    }

    // ---- start and stop (transport) ---------------------------------------------------------------------

    /**
     * Starts the queue on {@code memory} with the ring layout and options the negotiated {@code features} select
     * (RING_PACKED, EVENT_IDX, INDIRECT_DESC, IN_ORDER). Returns null, or why the rings cannot be used (the queue
     * then stays stopped).
     */
    public String start(GuestMemory memory, long features) {
        requireStopped("start");
        boolean eventIdx = VirtioFeature.has(features, VirtioFeature.RING_EVENT_IDX);
        boolean indirect = VirtioFeature.has(features, VirtioFeature.RING_INDIRECT_DESC);
        boolean order = VirtioFeature.has(features, VirtioFeature.IN_ORDER);
        DeviceRing r = VirtioFeature.has(features, VirtioFeature.RING_PACKED)
                ? new PackedQueue(size, descAddress, driverArea, deviceArea, eventIdx, indirect, order)
                : new SplitQueue(size, descAddress, driverArea, deviceArea, eventIdx, indirect, order);
        String wrong = r.activate(memory);
        if (wrong != null) {
            return wrong;
        }
        // After SET_VRING_BASE (a new or reconnected front-end) the layout reads what it lacks from the ring;
        // after our own stop/start the device resumes where it was.
        if (ownStop) {
            r.setPosition(stoppedAvail, stoppedUsed);
        } else if ((wrong = r.resumeAt(base)) != null) {
            return wrong;
        }
        inOrder = order;
        ring = r;
        return null;
    }

    /** Stops the queue, remembering where it was. */
    public void stop() {
        if (ring != null) {
            stoppedAvail = ring.nextAvail();
            stoppedUsed = ring.nextUsed();
            base = ring.base();
            ownStop = true;
        }
        ring = null;
    }

    /** Back to the state after construction (2.4 Device Reset). The kick fd is the transport's to close. */
    public void reset() {
        stop();
        size = 0;
        descAddress = driverArea = deviceArea = 0;
        base = stoppedAvail = stoppedUsed = 0;
        ownStop = false;
        inOrder = false;
        kick = null;
        notifier = Notifier.NONE;
        enabled = true;
    }

    private void requireStopped(String what) {
        if (ring != null) {
            throw new IllegalStateException("cannot " + what + " queue " + index + " while it runs");
        }
    }

    // ---- the data path (the queue pair's thread, while started) -------------------------------------------

    /** The guest memory the running rings and their buffers are in. */
    public GuestMemory memory() {
        return ring.memory();
    }

    /**
     * Takes the next available chain into {@code out} (walked and checked, 2.7.5 / 2.8.6). False when there is none.
     *
     * @throws QueueException a fatal kind: the ring lies, mark the device NEEDS_RESET; any other kind: the chain
     *         was taken, {@code out.head()} names it, and it goes back with {@code addUsed(out, 0)}
     */
    public boolean pop(DescriptorChain out) throws QueueException {
        return ring.pop(out);
    }

    /** Gives back the last {@code chains} chains taken, unused (an RX frame that must wait for more buffers). */
    public void giveBack(int chains) {
        ring.giveBack(chains);
    }

    /** Returns {@code chain} to the driver with {@code writtenLength} bytes written, at the next publish. */
    public void addUsed(DescriptorChain chain, int writtenLength) {
        ring.addUsed(chain, writtenLength);
    }

    /**
     * Publishes every used entry added so far and notifies the driver if it asked for it (2.7.10 / 2.8.10), counting
     * which of the two happened. Call once per burst.
     */
    public void publishUsedAndNotify(NotificationCounters counters) {
        ring.publishUsed();
        if (ring.needsNotification()) {
            counters.notified();
            notifier.notifyUsed();
        } else {
            counters.suppressed();
        }
    }

    /** Tells the driver it need not kick: the device will come back to the ring by itself. */
    public void disableNotification() {
        ring.setKickWanted(false);
    }

    /**
     * Asks the driver to kick on new buffers, then looks again (2.7.10 / 2.8.10): returns true if work arrived,
     * which the driver may have added before it saw the request and so without kicking. Processing must then go on.
     */
    public boolean enableNotification() {
        ring.setKickWanted(true);
        return ring.hasAvailable();
    }

    @Override
    public String toString() {
        return "Virtqueue[" + index + (ring != null ? " " + ring : " stopped, size " + size) + "]";
    }
}
