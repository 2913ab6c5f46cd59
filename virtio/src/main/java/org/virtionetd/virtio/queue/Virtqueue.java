package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.EventFd;

/**
 * One virtqueue (virtio 1.2, 2.5): the one owner of its configuration (size, the three ring addresses, enabled,
 * kick and notifier) and of its runtime state (where the device reads and writes, held by the ring layout behind
 * it while it runs, kept here while it is stopped).
 *
 * <p>The transport configures it while it is stopped ({@link #configure}, {@link #setNextAvail}, {@link #setKick})
 * and starts it on guest memory ({@link #start}); from then on it belongs to the queue pair's thread, which uses
 * only the operations below: {@link #pop}, {@link #addUsed}, {@link #publishUsedAndNotify},
 * {@link #disableNotification} and {@link #enableNotification}. Only {@link #enabled} and the notifier may change
 * while it runs (volatile). The ring layout behind it is a {@link DeviceRing}: split today (2.7); nothing above
 * this class reads ring structures.
 */
public final class Virtqueue {
    private final int index;
    private int size;
    private long descAddress;
    private long driverArea;
    private long deviceArea;
    /** Where the device resumes while stopped: SET_VRING_BASE, or where it was at the last stop. */
    private int nextAvail;
    private int nextUsed;
    /** {@link #nextUsed} is the device's own (saved at a stop), not to be read back from the ring. */
    private boolean nextUsedKnown;
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

    /** A queue size the ring layout accepts (split, 2.7: a power of two up to 32768). */
    public static boolean validSize(int size) {
        return SplitQueue.validSize(size);
    }

    /** Bytes of the device area the device writes for a queue of {@code size} (split: the used ring, 2.7.8). */
    public static long deviceAreaBytes(int size) {
        return SplitQueue.usedRingBytes(size);
    }

    // ---- configuration (transport, while stopped) --------------------------------------------------------

    public int size() {
        return size;
    }

    /** The descriptor area (2.5: "Descriptor Area"), guest-physical. */
    public long descAddress() {
        return descAddress;
    }

    /** The driver area: the split ring's available ring (2.5 "Driver Area"). */
    public long driverArea() {
        return driverArea;
    }

    /** The device area: the split ring's used ring (2.5 "Device Area"). */
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

    /** Where the device starts reading (vhost-user SET_VRING_BASE); the used index is then read from the ring. */
    public void setNextAvail(int v) {
        requireStopped("set the base of");
        nextAvail = v & 0xffff;
        nextUsed = v & 0xffff;
        nextUsedKnown = false;
    }

    /** The next available index the device reads: from the running ring, or where it stopped. */
    public int nextAvail() {
        return ring != null ? ring.nextAvail() : nextAvail;
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
     * (EVENT_IDX, INDIRECT_DESC). Returns null, or why the rings cannot be used (the queue then stays stopped).
     */
    public String start(GuestMemory memory, long features) {
        requireStopped("start");
        SplitQueue r = new SplitQueue(size, descAddress, driverArea, deviceArea,
                VirtioFeature.has(features, VirtioFeature.RING_EVENT_IDX),
                VirtioFeature.has(features, VirtioFeature.RING_INDIRECT_DESC));
        String wrong = r.activate(memory);
        if (wrong != null) {
            return wrong;
        }
        // After SET_VRING_BASE (a new or reconnected front-end) the used index is what the ring says, as the
        // driver last saw it; after our own stop/start it is what we had.
        r.setPosition(nextAvail, nextUsedKnown ? nextUsed : r.readUsedIndex());
        ring = r;
        return null;
    }

    /** Stops the queue, remembering where it was. */
    public void stop() {
        if (ring != null) {
            nextAvail = ring.nextAvail();
            nextUsed = ring.nextUsed();
            nextUsedKnown = true;
        }
        ring = null;
    }

    /** Back to the state after construction (2.4 Device Reset). The kick fd is the transport's to close. */
    public void reset() {
        stop();
        size = 0;
        descAddress = driverArea = deviceArea = 0;
        nextAvail = nextUsed = 0;
        nextUsedKnown = false;
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
     * Takes the next available chain into {@code out} (walked and checked, 2.7.5). False when there is none.
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
     * Publishes every used entry added so far and notifies the driver if it asked for it (2.7.10), counting
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
     * Asks the driver to kick on new buffers, then looks again (2.7.10): returns true if work arrived, which the
     * driver may have added before it saw the request and so without kicking. Processing must then go on.
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
