package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.os.EventFd;

/**
 * The transport's view of one virtqueue: what the driver configured (size, addresses, start index), the kick
 * and notifier, and whether it runs. The {@link SplitQueue} is built from it when the queue starts and belongs
 * to the queue pair's thread while it runs.
 */
public final class DeviceQueue {
    private final int index;
    private int size;
    private long descAddress;
    private long availAddress;
    private long usedAddress;
    private int nextAvail;
    private int nextUsed;
    private boolean nextUsedKnown;
    private EventFd kick;
    private volatile Notifier notifier = Notifier.NONE;
    private volatile boolean enabled = true;
    private boolean started;
    private SplitQueue ring;

    public DeviceQueue(int index) {
        this.index = index;
    }

    public int index() {
        return index;
    }

    public int size() {
        return size;
    }

    public long descAddress() {
        return descAddress;
    }

    public long availAddress() {
        return availAddress;
    }

    public long usedAddress() {
        return usedAddress;
    }

    public void configure(int queueSize, long desc, long avail, long used) {
        this.size = queueSize;
        this.descAddress = desc;
        this.availAddress = avail;
        this.usedAddress = used;
    }

    public int nextAvail() {
        return ring != null ? ring.nextAvail() : nextAvail;
    }

    public void setNextAvail(int v) {
        nextAvail = v & 0xffff;
        nextUsed = v & 0xffff;
        nextUsedKnown = false;
    }

    public EventFd kick() {
        return kick;
    }

    /** The kick eventfd belongs to the transport, which closes it; the queue only waits on it. */
    public void setKick(EventFd k) {
        kick = k;
    }

    public Notifier notifier() {
        return notifier;
    }

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
        return started;
    }

    public SplitQueue ring() {
        return ring;
    }

    /** Marks the queue running on {@code r} (already activated on guest memory). */
    public void start(SplitQueue r) {
        r.setNextAvail(nextAvail);
        // After SET_VRING_BASE (a new or reconnected front-end) the used index is what the ring says, as the
        // driver last saw it; after our own stop/start it is what we had.
        r.setNextUsed(nextUsedKnown ? nextUsed : r.readUsedIndex());
        ring = r;
        started = true;
    }

    /** Stops the queue, remembering where it was. */
    public void stop() {
        if (ring != null) {
            nextAvail = ring.nextAvail();
            nextUsed = ring.nextUsed();
            nextUsedKnown = true;
        }
        ring = null;
        started = false;
    }

    /** Back to the reset state; closes the kick fd. */
    public void reset() {
        stop();
        size = 0;
        descAddress = availAddress = usedAddress = 0;
        nextAvail = nextUsed = 0;
        nextUsedKnown = false;
        setKick(null);
        notifier = Notifier.NONE;
        enabled = true;
    }
}
