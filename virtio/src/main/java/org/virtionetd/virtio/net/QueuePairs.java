package org.virtionetd.virtio.net;

import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.queue.Notifier;
import org.virtionetd.virtio.queue.Virtqueue;

import java.io.IOException;
import java.util.Arrays;

/**
 * The device's virtqueues, numbered as 5.1.2 says (receiveq(p) = 2p, transmitq(p) = 2p+1, controlq = 2 * pairs),
 * and the event-loop thread of each pair: a queue is configured, started and stopped only while its pair's loop is
 * stopped, so that the loop is the one user of a running queue. The control queue runs on pair 0's loop.
 *
 * <p>A pair's receive queue starting for the first time, after a reset or after a stop drops first what the
 * backend queued meanwhile ({@link NetBackend#discardQueued}): the tap outlives the front-end (a migration source,
 * a disconnected or rebooted VM), the host goes on forwarding to it, and what it queued is seconds or minutes old
 * when a driver runs the device again. A pause (the transport restarting a ring at once around a memory table
 * change, the driver running all along) keeps it.
 *
 * <p>Called by {@link VirtioNetDevice} under its monitor.
 */
final class QueuePairs {
    private static final System.Logger LOG = System.getLogger(VirtioNetDevice.class.getName());

    private final int pairs;
    private final Virtqueue[] queues;
    private final QueuePairLoop[] loops;
    private final NetBackend[] backends;
    private final NetCounters[] counters;
    private final VirtioNetDevice device;
    private final long busyPollNanos;
    /**
     * Pair p's receive buffer counts, for the memory its receive queue last ran on: kept across loop restarts on
     * the same memory (a pause, the other queue of the pair starting), made anew, before the loop starts, for a new
     * one. Written under the device's monitor, read racily by {@link #rxBufferCounts} (its fields are final).
     */
    private final RxBufferCounts[] rxBuffers;
    /** Whether pair p's backend may hold frames from before its receive queue ran: set at reset and stop. */
    private final boolean[] rxStale;

    /** Frames read one by one from a backend at a start, at most: a flood must not hold the start up. */
    static final int STALE_DISCARD_LIMIT = 4096;

    QueuePairs(int pairs, NetBackend[] backends, NetCounters[] counters, VirtioNetDevice device, long busyPollNanos) {
        this.pairs = pairs;
        this.backends = backends;
        this.counters = counters;
        this.device = device;
        this.busyPollNanos = busyPollNanos;
        this.queues = new Virtqueue[2 * pairs + 1];
        for (int i = 0; i < queues.length; i++) {
            queues[i] = new Virtqueue(i);
        }
        this.loops = new QueuePairLoop[pairs];
        this.rxStale = new boolean[pairs];
        this.rxBuffers = new RxBufferCounts[pairs];
        Arrays.fill(rxStale, true);
    }

    int count() {
        return queues.length;
    }

    boolean exists(int index) {
        return index >= 0 && index < queues.length;
    }

    /** Queue {@code index}; refused with the valid range when the device has no such queue. */
    Virtqueue queue(int index) throws VirtioException {
        if (!exists(index)) {
            throw new VirtioException(VirtioException.Kind.QUEUE_INDEX,
                    "queue index " + index + " is outside 0.." + (queues.length - 1));
        }
        return queues[index];
    }

    /** Queue {@code index}, which {@link #exists}. */
    Virtqueue at(int index) {
        return queues[index];
    }

    /** The receive queue of {@code pair}: whether it is enabled says whether the driver reads the pair. */
    Virtqueue receiveQueue(int pair) {
        return queues[2 * pair];
    }

    /** The pair whose loop serves queue {@code index}. */
    int pairOf(int index) {
        return index == 2 * pairs ? 0 : index / 2;
    }

    /** Starts queue {@code index} on {@code memory}; its pair's loop restarts with it. */
    void start(int index, GuestMemory memory, long features, EventFd kick, Notifier notifier) throws VirtioException {
        Virtqueue q = queue(index);
        if (q.size() == 0) {
            throw new VirtioException(VirtioException.Kind.STATE, "queue " + index + " has no size and addresses yet");
        }
        int pair = pairOf(index);
        stopLoop(pair);
        if (q.started()) {
            q.stop();
        }
        String wrong = q.start(memory, features);
        if (wrong != null) {
            startLoop(pair);
            throw new VirtioException(VirtioException.Kind.QUEUE_ADDRESS, "queue " + index + ": " + wrong);
        }
        q.setKick(kick);
        q.setNotifier(notifier);
        if (isReceiveQueue(index) && rxStale[pair]) {
            rxStale[pair] = false;
            discardStale(pair);
        }
        startLoop(pair);
    }

    /** Stops queue {@code index} (its pair's loop goes on with the others) and returns its base (GET_VRING_BASE). */
    int stop(int index) {
        return stop(index, true);
    }

    /** As {@link #stop}, for a restart that follows at once: what the backend queues meanwhile is delivered. */
    int pause(int index) {
        return stop(index, false);
    }

    private int stop(int index, boolean stale) {
        if (!exists(index)) {
            return 0;
        }
        int pair = pairOf(index);
        stopLoop(pair);
        queues[index].stop();
        if (stale && isReceiveQueue(index)) {
            rxStale[pair] = true;
        }
        startLoop(pair);
        return queues[index].base();
    }

    /** Whether {@code index} is a receive queue, receiveq(p) = 2p (5.1.2); {@link #pairOf} gives its pair. */
    boolean isReceiveQueue(int index) {
        return index < 2 * pairs && index % 2 == 0;
    }

    /** Drops what pair {@code pair}'s backend queued before its receive queue started; its loop is stopped. */
    private void discardStale(int pair) {
        NetBackend b = backends[pair];
        int n;
        try {
            n = b.discardQueued(STALE_DISCARD_LIMIT);
        } catch (IOException | RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "queue pair " + pair + ": cannot drop the frames backend " + b.name()
                    + " queued before the receive queue started: " + e.getMessage() + "; they are delivered");
            return;
        }
        if (n > 0) {
            counters[pair].rxDroppedStale.add(n);
            LOG.log(System.Logger.Level.INFO, "queue pair " + pair + ": dropped " + n + " frames backend " + b.name()
                    + " queued while no driver ran the device" + (n >= STALE_DISCARD_LIMIT
                    ? " (the limit of one start; later ones are delivered)" : ""));
        }
    }

    /** Asks the loop of the pair serving {@code index} to look at its queues again. */
    void wake(int index) {
        QueuePairLoop l = loops[pairOf(index)];
        if (l != null) {
            l.wakeUp();
        }
    }

    void wakeAll() {
        for (QueuePairLoop l : loops) {
            if (l != null) {
                l.wakeUp();
            }
        }
    }

    /** Runs {@code action} with pair {@code pair}'s loop stopped, so that it may use the pair's backend. */
    void withLoopStopped(int pair, Runnable action) {
        stopLoop(pair);
        try {
            action.run();
        } finally {
            startLoop(pair);
        }
    }

    /** Every loop stopped and every queue back to its reset state (2.4). */
    void reset() {
        for (int p = 0; p < pairs; p++) {
            stopLoop(p);
        }
        for (Virtqueue q : queues) {
            q.reset();
        }
        Arrays.fill(rxStale, true);
    }

    /** Bytes allocated by the loop of {@code pair} since it started, or -1 if it is not running. */
    long loopAllocatedBytes(int pair) {
        QueuePairLoop l = loops[pair];
        return l == null ? -1 : l.allocatedBytes();
    }

    /** Pair {@code pair}'s receive buffer counts and the memory they are for; null before its receive queue ran. */
    RxBufferCounts rxBufferCounts(int pair) {
        return rxBuffers[pair];
    }

    private void stopLoop(int pair) {
        QueuePairLoop l = loops[pair];
        if (l != null) {
            loops[pair] = null;
            l.stop();
        }
    }

    private void startLoop(int pair) {
        Virtqueue rx = queues[2 * pair].started() ? queues[2 * pair] : null;
        Virtqueue tx = queues[2 * pair + 1].started() ? queues[2 * pair + 1] : null;
        Virtqueue ctrl = pair == 0 && queues[2 * pairs].started() ? queues[2 * pairs] : null;
        if (rx == null && tx == null && ctrl == null) {
            return;
        }
        if (rx != null && (rxBuffers[pair] == null || rxBuffers[pair].memory() != rx.memory())) {
            rxBuffers[pair] = new RxBufferCounts(rx.memory());
        }
        try {
            QueuePairLoop l = new QueuePairLoop(pair, rx, tx, ctrl, backends[pair], counters[pair],
                    rx != null ? rxBuffers[pair] : null, device, device, busyPollNanos);
            loops[pair] = l;
            l.start("virtio-net-pair-" + pair);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.ERROR, "cannot start the loop of queue pair " + pair + ": " + e.getMessage());
            device.needsReset(2 * pair, "event loop could not start: " + e.getMessage());
        }
    }
}
