package org.virtionetd.virtio.net;

import org.virtionetd.virtio.os.Epoll;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.queue.Virtqueue;

import java.io.IOException;

/**
 * The event loop of one queue pair: one thread per pair, so that each virtqueue has a single owner while it runs
 * and no lock is taken on the data path (docs/architecture.md). It waits with epoll on the kicks of its
 * queues, the backend's readiness fd and a wake-up eventfd, and then works in bursts: TX until the ring is empty
 * (re-enabling kicks and re-checking before sleeping, 2.7.10), RX until the backend is empty or the driver has no
 * buffers (then the backend fd is left out of epoll until the driver kicks the RX queue).
 *
 * <p>A backend that loses its host side (a tap deleted under us, {@link NetBackend#attached()} false) is taken out
 * of epoll altogether (a detached tun fd polls as EPOLLERR, which epoll reports even with no events asked for:
 * leaving it in would spin), the device's link goes down, and {@link NetBackend#reattach()} is tried after 100 ms,
 * then at doubling intervals up to 2 s, until it is back. TX keeps draining the ring meanwhile (the backend drops
 * and the device counts), so the driver never stalls on a full TX ring.
 *
 * <p>Queues without a kick fd (vhost-user "no fd" bit) and backends without a readiness fd are polled every
 * millisecond. The thread is never interrupted: {@link #stop()} signals the wake-up fd.
 */
final class QueuePairLoop implements Runnable {
    private static final System.Logger LOG = System.getLogger(QueuePairLoop.class.getName());
    private static final long TAG_WAKE = 0;
    private static final long TAG_RX_KICK = 1;
    private static final long TAG_TX_KICK = 2;
    private static final long TAG_BACKEND = 3;
    private static final long TAG_CTRL_KICK = 4;
    static final int TX_BURST = 256;
    static final int RX_BURST = 64;
    private static final int POLL_MILLIS = 1;
    /** Rounds of work between two epoll looks while there is always more to do. */
    private static final int BUSY_ROUNDS_PER_EPOLL = 8;
    private static final int BACKEND_ERROR_BACKOFF_MILLIS = 100;
    /**
     * Packets in one round that show a backlog: the driver filled the ring faster than a kick could wake us. Only
     * then does the loop start polling; a guest that sends now and then keeps waking the thread through kicks.
     */
    static final int BUSY_ROUND_PACKETS = 32;
    static final int REATTACH_FIRST_MILLIS = 100;
    static final int REATTACH_MAX_MILLIS = 2000;

    private final int pairIndex;
    private final Virtqueue rxQueue;
    private final Virtqueue txQueue;
    private final Virtqueue ctrlQueue;
    private final RxPath rx;
    private final TxPath tx;
    private final ControlQueue ctrl;
    private final NetBackend backend;
    private final NetCounters counters;
    private final DeviceContext device;
    private final EventFd wake;
    private final Epoll epoll;
    private volatile boolean running = true;
    private Thread thread;
    private boolean backendArmed;
    /** The backend fd is in the epoll set (armed or not: EPOLLERR is reported even with no events asked for). */
    private boolean backendRegistered;
    /** A queue whose ring broke (NEEDS_RESET) is left alone until the driver resets the device. */
    private boolean txBroken;
    private boolean ctrlBroken;
    private int backendFd = -1;
    /** The backend lost its host side: its fd is out of epoll and reattach is tried at {@link #reattachAt}. */
    private boolean backendLost;
    private long reattachAt;
    private int reattachDelayMillis;
    /** How long to keep polling after work (0: never); see {@link #BUSY_ROUND_PACKETS}. */
    private final long busyPollNanos;
    /** Until when the loop polls the rings instead of asking for kicks and sleeping. */
    private long pollUntil;
    private boolean polling;
    /** Chains the last {@link #serviceTx} call transmitted. */
    private int txDone;

    /** {@code rxBuffers}: the receive buffer counts for rxQueue's memory (null without rxQueue). */
    QueuePairLoop(int pairIndex, Virtqueue rxQueue, Virtqueue txQueue, Virtqueue ctrlQueue,
                  NetBackend backend, NetCounters counters, RxBufferCounts rxBuffers, DeviceContext device,
                  ControlCommands commands, long busyPollNanos)
            throws IOException {
        this.pairIndex = pairIndex;
        this.busyPollNanos = busyPollNanos;
        // System.nanoTime() has an arbitrary origin (it may be negative): start with a window already closed.
        this.pollUntil = System.nanoTime();
        this.rxQueue = rxQueue;
        this.txQueue = txQueue;
        this.ctrlQueue = ctrlQueue;
        this.backend = backend;
        this.counters = counters;
        this.device = device;
        this.rx = rxQueue != null ? new RxPath(rxQueue, pairIndex, backend, counters, device, rxBuffers) : null;
        this.tx = txQueue != null ? new TxPath(txQueue, backend, counters, device) : null;
        this.ctrl = ctrlQueue != null ? new ControlQueue(ctrlQueue, counters, device, commands) : null;
        this.wake = EventFd.create();
        try {
            this.epoll = new Epoll(8);
        } catch (IOException | RuntimeException e) {
            wake.close();
            throw e;
        }
        try {
            epoll.add(wake.fd(), LinuxNative.EPOLLIN, TAG_WAKE);
            // A front-end may hand over any fd as a kick (a regular file cannot be polled): the loop then cannot
            // start, and what it opened so far must not outlive it.
            addKick(rxQueue, TAG_RX_KICK);
            addKick(txQueue, TAG_TX_KICK);
            addKick(ctrlQueue, TAG_CTRL_KICK);
            if (rx != null) {
                backendFd = backend.receiveReadyFd();
                if (!backend.attached()) {
                    lose(); // lost while no loop ran (the driver restarted its queues meanwhile)
                } else if (backendFd >= 0) {
                    epoll.add(backendFd, LinuxNative.EPOLLIN, TAG_BACKEND);
                    backendArmed = true;
                    backendRegistered = true;
                }
            } else if (!backend.attached()) {
                lose();
            }
        } catch (IOException | RuntimeException e) {
            epoll.close();
            wake.close();
            throw e;
        }
    }

    private void addKick(Virtqueue q, long tag) throws IOException {
        if (q != null && q.kick() != null) {
            epoll.add(q.kick().fd(), LinuxNative.EPOLLIN, tag);
        }
    }

    void start(String name) {
        thread = new Thread(this, name);
        thread.setDaemon(true);
        thread.start();
    }

    /** Bytes this loop's thread has allocated since it started (-1 if the JVM cannot tell). */
    long allocatedBytes() {
        java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
        if (thread == null || !(mx instanceof com.sun.management.ThreadMXBean)) {
            return -1;
        }
        return ((com.sun.management.ThreadMXBean) mx).getThreadAllocatedBytes(thread.getId());
    }

    /** Asks the loop to look at its queues again (enable state, active pairs changed). */
    void wakeUp() {
        wake.signal();
    }

    /** Stops the thread and waits for it; chains it holds are given back to the ring. */
    void stop() {
        running = false;
        wake.signal();
        if (thread != null && thread != Thread.currentThread()) {
            try {
                thread.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (thread.isAlive()) {
                LOG.log(System.Logger.Level.ERROR, "queue pair " + pairIndex + " loop did not stop in 10 s");
            }
        }
        if (rx != null) {
            rx.release();
        }
        epoll.close();
        wake.close();
    }

    @Override
    public void run() {
        boolean more = true;
        boolean rxWaiting = false;
        int timeout;
        int busyRounds = 0;
        while (running) {
            boolean polled = needsPolling(rxWaiting);
            timeout = more ? 0 : (polled ? POLL_MILLIS : -1);
            if (backendLost) {
                int untilAttempt = (int) Math.max(0, (reattachAt - System.nanoTime()) / 1_000_000L);
                timeout = timeout < 0 ? untilAttempt : Math.min(timeout, untilAttempt);
            }
            int ready = 0;
            // While work keeps coming, look at epoll only every few rounds: a kick that arrives meanwhile stays
            // readable, and each look is a system call that would otherwise cost more than a burst of packets.
            if (!more || ++busyRounds >= BUSY_ROUNDS_PER_EPOLL) {
                busyRounds = 0;
                try {
                    ready = epoll.await(timeout);
                } catch (IOException e) {
                    LOG.log(System.Logger.Level.ERROR, "queue pair " + pairIndex + ": " + e.getMessage());
                    return;
                }
            }
            boolean rxKicked = false;
            boolean backendError = false;
            for (int i = 0; i < ready; i++) {
                long tag = epoll.readyTag(i);
                if (tag == TAG_WAKE) {
                    wake.drain();
                    rxKicked = true; // re-evaluate RX (enable state / pairs changed)
                } else if (tag == TAG_RX_KICK) {
                    rxQueue.kick().drain();
                    counters.kicks.increment();
                    rxKicked = true;
                } else if (tag == TAG_TX_KICK) {
                    txQueue.kick().drain();
                    counters.kicks.increment();
                } else if (tag == TAG_CTRL_KICK) {
                    ctrlQueue.kick().drain();
                    counters.kicks.increment();
                } else if (tag == TAG_BACKEND
                        && (epoll.readyEvents(i) & (LinuxNative.EPOLLERR | LinuxNative.EPOLLHUP)) != 0) {
                    backendError = true;
                }
            }
            if (backendError && !backendLost) {
                // Also while RX waits for buffers (the fd disarmed, nothing read): a deleted tap shows up here.
                backend.checkAttachment();
            }
            if (!running) {
                break;
            }
            if (backendLost && System.nanoTime() - reattachAt >= 0 && tryReattach()) {
                rxWaiting = false;
            }
            more = false;
            polling = busyPollNanos > 0 && System.nanoTime() - pollUntil < 0;
            txDone = 0;
            try {
                if (tx != null && !txBroken) {
                    more |= serviceTx();
                }
                if (ctrl != null && !ctrlBroken) {
                    ctrlBroken = !ctrl.process();
                    // Ask for the next kick only after consuming: with EVENT_IDX, avail_event must name the
                    // index after what we took, or the driver's next command would not kick (2.7.10).
                    boolean arrived = ctrlQueue.enableNotification();
                    more |= !ctrlBroken && arrived;
                }
                if (rx != null && !backendLost) {
                    if (rxWaiting && (rxKicked || polled || polling)) {
                        rxWaiting = false;
                    }
                    if (!rxWaiting) {
                        RxPath.Result r = rx.process(RX_BURST);
                        switch (r) {
                            case MORE:
                                more = true;
                                armBackend(true);
                                break;
                            case IDLE:
                                armBackend(true);
                                break;
                            case WAITING_FOR_BUFFERS:
                            case DISABLED:
                            case BROKEN:
                                rxWaiting = true;
                                armBackend(false);
                                break;
                            case BACKEND_ERROR:
                                armBackend(false);
                                rxWaiting = true;
                                epoll.await(BACKEND_ERROR_BACKOFF_MILLIS);
                                break;
                            default:
                                break;
                        }
                    }
                }
                if (!backendLost && !backend.attached()) {
                    lose();
                }
                more |= keepPolling();
            } catch (IOException | RuntimeException e) {
                // A bug or an unexpected backend failure must not kill the NIC: log it and keep serving.
                LOG.log(System.Logger.Level.ERROR, "queue pair " + pairIndex + " loop error, continuing", e);
            }
        }
    }

    /** The backend lost its host side: out of epoll, link down, first re-attach soon. */
    private void lose() {
        backendLost = true;
        if (backendRegistered) {
            epoll.remove(backendFd);
            backendRegistered = false;
        }
        backendArmed = false;
        reattachDelayMillis = REATTACH_FIRST_MILLIS;
        reattachAt = System.nanoTime() + reattachDelayMillis * 1_000_000L;
        device.backendAttachmentChanged();
    }

    /** One re-attach attempt; on failure the next one is twice as far, at most {@link #REATTACH_MAX_MILLIS}. */
    private boolean tryReattach() {
        if (!backend.reattach()) {
            reattachDelayMillis = Math.min(reattachDelayMillis * 2, REATTACH_MAX_MILLIS);
            reattachAt = System.nanoTime() + reattachDelayMillis * 1_000_000L;
            return false;
        }
        backendLost = false;
        if (rx != null && backendFd >= 0) {
            try {
                epoll.add(backendFd, LinuxNative.EPOLLIN, TAG_BACKEND);
                backendArmed = true;
                backendRegistered = true;
            } catch (IOException e) {
                LOG.log(System.Logger.Level.ERROR, "queue pair " + pairIndex + ": cannot watch the backend again: "
                        + e.getMessage() + "; polling it");
                backendFd = -1;
            }
        }
        device.backendAttachmentChanged();
        return true;
    }

    private boolean needsPolling(boolean rxWaiting) {
        return (txQueue != null && txQueue.kick() == null)
                || (ctrlQueue != null && ctrlQueue.kick() == null)
                || (rx != null && (rxQueue.kick() == null && rxWaiting || backendFd < 0 && !rxWaiting));
    }

    /**
     * TX until empty, then ask for kicks and re-check (2.7.10). Returns true if work remains. While {@link #polling}
     * the kicks stay off: the loop comes back to the ring by itself, and a driver that need not kick saves a
     * system call per refill.
     */
    private boolean serviceTx() {
        txQueue.disableNotification();
        int n;
        do {
            n = tx.process(TX_BURST);
            txDone += Math.max(n, 0);
        } while (n == TX_BURST);
        if (n < 0) {
            txBroken = true;
            return false;
        }
        if (polling) {
            return false;
        }
        return txQueue.enableNotification();
    }

    /**
     * Whether the next round should come without waiting: after a round that found a backlog, and then as long
     * as work keeps arriving within the busy-poll window. When the window closes, the round after this one asks
     * for kicks again before the thread sleeps (serviceTx with polling off), so no kick can be missed.
     */
    private boolean keepPolling() {
        if (busyPollNanos == 0) {
            return false;
        }
        int work = txDone + (rx != null ? rx.delivered() : 0);
        if (work >= BUSY_ROUND_PACKETS || polling && work > 0) {
            pollUntil = System.nanoTime() + busyPollNanos;
            return true;
        }
        if (polling) {
            Thread.onSpinWait();
            return true; // one more round: it re-arms the kicks if the window has closed meanwhile
        }
        return false;
    }

    private void armBackend(boolean armed) throws IOException {
        if (backendFd < 0 || backendLost || armed == backendArmed) {
            return;
        }
        epoll.modify(backendFd, armed ? LinuxNative.EPOLLIN : 0, TAG_BACKEND);
        backendArmed = armed;
    }
}
