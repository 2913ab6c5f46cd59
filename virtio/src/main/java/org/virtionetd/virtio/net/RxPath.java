package org.virtionetd.virtio.net;

import org.virtionetd.virtio.memory.DirtyLog;
import org.virtionetd.virtio.queue.DescriptorChain;
import org.virtionetd.virtio.queue.QueueException;
import org.virtionetd.virtio.queue.Virtqueue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The receive queue of one pair (5.1.6.3 - 5.1.6.4): takes frames from the backend into buffers the driver posted.
 *
 * <p>Three buffer modes: mergeable (MRG_RXBUF: a frame spans as many chains as needed, num_buffers says how
 * many), big packets (no MRG_RXBUF, guest TSO: each chain holds a 64 KiB frame), small (each chain holds one MTU
 * frame). A frame that does not fit in what the driver has posted waits in the backend until the driver adds
 * buffers (no loss while the guest is only slow); chains taken meanwhile are kept pending, in order, and given
 * back on stop.
 *
 * <p>A backend that can read into guest memory ({@link NetBackend#directReceiveRoom()}, a tap with a vnet header)
 * gets the frame read straight into the chains held, with one readv(2) through {@link ReceiveIovec}: enough chains
 * are held for the largest frame it may give, so nothing is cut, and the ones a frame does not use are kept for the
 * next. When the ring does not hold that much now (or a chain cannot hold a large frame: small buffers without
 * MRG_RXBUF), the frame's length is peeked and it is staged and scattered as before.
 */
final class RxPath {
    /** The outcome of a call to {@link #process(int)}. */
    enum Result {
        /** The backend has nothing more. */
        IDLE,
        /** The burst ended with frames still waiting. */
        MORE,
        /** A frame waits for the driver to post buffers: wait for a kick. */
        WAITING_FOR_BUFFERS,
        /** The queue is disabled or beyond the active pairs: do not receive. */
        DISABLED,
        /** The ring cannot be trusted; NEEDS_RESET was set. */
        BROKEN,
        /** The backend failed; back off. */
        BACKEND_ERROR
    }

    /** Chains held at most (a power of two: {@link #pending} is a ring). */
    static final int MAX_CHAINS = 64;
    private static final int MAX_SLICES = 512;
    private static final int MAX_CHAIN_DESCRIPTORS = 256;

    private final Virtqueue queue;
    private final int pairIndex;
    private final NetBackend backend;
    private final NetCounters counters;
    private final DeviceContext device;
    private final ReceivedFrame frame;
    private final ReceiveIovec iovec;
    /** The iovec no longer matches the pending chains (an append failed): unused until they are all gone. */
    private boolean iovecStale;
    /**
     * The backend reads into guest memory ({@link NetBackend#directReceiveRoom()} > 0, as last asked): only then are
     * the chains taken put in the iovec, which costs a staging backend time per chain for nothing.
     */
    private boolean direct;
    /**
     * The backend may hold a frame peeked and not received yet: it goes the staged way. True at first: a loop that
     * restarted may find a frame its predecessor peeked.
     */
    private boolean peeked = true;
    /** Buffers used for frames, per chunk of the queue's memory (memory hot-plug shows where they come from). */
    private final RxBufferCounts rxBuffers;
    /** The chains taken and not used yet, oldest first: a ring of {@link #MAX_CHAINS} from pendingHead. */
    private final DescriptorChain[] pending = new DescriptorChain[MAX_CHAINS];
    private int pendingHead;
    private int pendingCount;
    private long pendingCapacity;
    /** Pending chains are exactly the last ones popped, so stop can give them back by rewinding. */
    private boolean pendingContiguous = true;
    private final ByteBuffer discard = ByteBuffer.allocateDirect(128 * 1024).order(ByteOrder.LITTLE_ENDIAN);
    private final ByteBuffer[] discardSlices = {discard};
    private boolean usedSinceNotify;
    /** Frames, bytes and staged frames of the current burst, added to the shared counters once per burst. */
    private long burstPackets;
    private long burstBytes;
    private long burstStaged;
    /** Frames delivered by the last {@link #process} call. */
    private int delivered;
    /** We asked the driver to kick when it adds RX buffers. */
    private boolean kickWanted;
    /** Set by {@link #gather} when the frame can never fit what the driver posts. */
    private boolean tooBig;

    RxPath(Virtqueue queue, int pairIndex, NetBackend backend, NetCounters counters, DeviceContext device) {
        this(queue, pairIndex, backend, counters, device, new RxBufferCounts(queue.memory()));
    }

    /** With {@code rxBuffers} kept by the caller across loop restarts; it must count for the queue's memory. */
    RxPath(Virtqueue queue, int pairIndex, NetBackend backend, NetCounters counters, DeviceContext device,
           RxBufferCounts rxBuffers) {
        if (rxBuffers.memory() != queue.memory()) {
            throw new IllegalArgumentException("RX queue " + queue.index() + ": buffer counts are for another "
                    + "guest memory (" + rxBuffers.memory().regions() + ") than the queue's ("
                    + queue.memory().regions() + ")");
        }
        this.rxBuffers = rxBuffers;
        this.queue = queue;
        this.pairIndex = pairIndex;
        this.backend = backend;
        this.counters = counters;
        this.device = device;
        this.frame = new ReceivedFrame(queue.memory(), MAX_SLICES);
        this.iovec = new ReceiveIovec(queue.memory(), MAX_CHAINS);
        this.direct = backend.directReceiveRoom() > 0;
        int cap = Math.min(queue.size(), MAX_CHAIN_DESCRIPTORS);
        for (int i = 0; i < MAX_CHAINS; i++) {
            pending[i] = new DescriptorChain(cap);
        }
    }

    /** The {@code i}-th oldest chain held. */
    private DescriptorChain held(int i) {
        return pending[(pendingHead + i) & (MAX_CHAINS - 1)];
    }

    /** Frames the last {@link #process} call delivered to the driver. */
    int delivered() {
        return delivered;
    }

    /** Receives up to {@code burst} frames; publishes used entries and notifies once at the end. */
    Result process(int burst) {
        if (kickWanted) {
            // Buffers came (or we look again): the driver need not kick for every refill while we are busy
            // (2.7.10); a driver that posts buffers and kicks needlessly pays a system call each time.
            queue.disableNotification();
            kickWanted = false;
        }
        Result result = Result.MORE;
        try {
            for (int i = 0; i < burst; i++) {
                result = receiveOne();
                if (result != Result.MORE) {
                    break;
                }
            }
        } catch (QueueException e) {
            counters.needsReset.increment();
            device.needsReset(queue.index(), e.getMessage());
            result = Result.BROKEN;
        }
        delivered = (int) burstPackets;
        if (burstPackets != 0) {
            counters.rxPackets.add(burstPackets);
            counters.rxBytes.add(burstBytes);
            burstPackets = 0;
            burstBytes = 0;
        }
        if (burstStaged != 0) {
            counters.rxStaged.add(burstStaged);
            burstStaged = 0;
        }
        if (usedSinceNotify) {
            usedSinceNotify = false;
            queue.publishUsedAndNotify(counters);
        }
        return result;
    }

    private Result receiveOne() throws QueueException {
        if (!queue.enabled() || pairIndex >= device.activePairs()) {
            return Result.DISABLED;
        }
        int hdrLen = device.headerLength();
        boolean mergeable = VirtioNetFeature.has(device.negotiated(), VirtioNetFeature.MRG_RXBUF);
        if (!peeked) {
            int room = backend.directReceiveRoom();
            direct = room > 0;
            if (direct && !iovecStale && gather(room, mergeable, hdrLen)) {
                return receiveDirect(hdrLen, mergeable);
            }
            tooBig = false; // the frame's own length decides below
        }
        int length;
        try {
            length = backend.peekLength();
        } catch (IOException | RuntimeException e) {
            device.logOnce().warn("rx-backend-error", "RX queue " + queue.index() + ": backend " + backend.name()
                    + " failed: " + e);
            return Result.BACKEND_ERROR;
        }
        peeked = length > 0;
        if (length <= 0) {
            return Result.IDLE;
        }
        if (!gather(length, mergeable, hdrLen)) {
            if (tooBig) {
                tooBig = false;
                counters.rxDroppedTooBig.increment();
                device.logOnce().warn("rx-too-big", "RX queue " + queue.index() + ": dropped a " + length
                        + "-byte frame larger than the buffers the driver posts");
                return discardFrame();
            }
            // 2.7.10: ask for a kick, then look again: a buffer added before the driver saw the request is
            // seen here, one added after makes the driver kick.
            kickWanted = true;
            if (queue.enableNotification()) {
                return Result.MORE;
            }
            counters.rxWaitedForBuffers.increment();
            return Result.WAITING_FOR_BUFFERS;
        }
        int chains = mergeable ? chainsFor(length) : 1;
        if (!frame.build(pending, pendingHead, chains)) {
            counters.rxDroppedTooBig.increment();
            return discardFrame();
        }
        int n;
        try {
            peeked = false;
            n = backend.receive(frame.slices(), frame.sliceCount());
        } catch (IOException | RuntimeException e) {
            device.logOnce().warn("rx-backend-error", "RX queue " + queue.index() + ": backend " + backend.name()
                    + " failed: " + e);
            return Result.BACKEND_ERROR;
        }
        if (n <= 0) {
            return Result.IDLE;
        }
        burstStaged++;
        return deliver(n, chains, hdrLen, mergeable);
    }

    /**
     * One readv into the chains held ({@link #gather} took enough for the backend's largest frame). In big-packet
     * mode only the first chain receives (5.1.6.3.1: each buffer holds a whole frame).
     */
    private Result receiveDirect(int hdrLen, boolean mergeable) {
        long room = mergeable ? pendingCapacity : held(0).writableBytes();
        int n;
        try {
            n = backend.receiveDirect(iovec.address(), mergeable ? iovec.count() : iovec.firstChainCount());
        } catch (IOException | RuntimeException e) {
            device.logOnce().warn("rx-backend-error", "RX queue " + queue.index() + ": backend " + backend.name()
                    + " failed: " + e);
            return Result.BACKEND_ERROR;
        }
        if (n <= 0) {
            return Result.IDLE;
        }
        if (n > room) {
            // Longer than the backend said a frame can be: the kernel cut it, the rest is lost.
            counters.rxDroppedTooBig.increment();
            device.logOnce().warn("rx-cut", "RX queue " + queue.index() + ": backend " + backend.name()
                    + " delivered a " + n + "-byte frame, more than the " + room + " bytes it may need; dropped");
            markReceived(mergeable ? pendingCount : 1, room);
            return Result.MORE;
        }
        int chains = mergeable ? chainsFor(n) : 1;
        if (!frame.build(pending, pendingHead, chains)) {
            counters.rxDroppedTooBig.increment();
            markReceived(chains, n);
            return Result.MORE;
        }
        return deliver(n, chains, hdrLen, mergeable);
    }

    /** Judges a frame of {@code n} bytes written into the first {@code chains} pending chains, then publishes it. */
    private Result deliver(int n, int chains, int hdrLen, boolean mergeable) {
        if (n < hdrLen + 14) {
            counters.rxDroppedRunt.increment(); // shorter than an Ethernet header: the chains stay pending
            markReceived(chains, n);
            return Result.MORE;
        }
        if (!offloadsAllowed(n - hdrLen)) {
            counters.rxBadOffload.increment();
            device.logOnce().warn("rx-offload", "RX queue " + queue.index() + ": backend " + backend.name()
                    + " delivered a frame with offloads the driver did not accept (flags=" + frame.byteAt(0)
                    + " gso_type=" + frame.byteAt(1) + ")");
            markReceived(chains, n);
            return Result.MORE;
        }
        if (!device.rxFilter().accepts(frame.destination(hdrLen), frame.vlanId(hdrLen))) {
            counters.rxFiltered.increment();
            markReceived(chains, n);
            return Result.MORE; // the chains stay pending for the next frame
        }
        complete(n, hdrLen, mergeable);
        return Result.MORE;
    }

    /** Takes chains until they can hold {@code length} bytes. False: wait for buffers, or {@link #tooBig}. */
    private boolean gather(int length, boolean mergeable, int hdrLen) throws QueueException {
        while (mergeable ? pendingCapacity < length : pendingCount == 0) {
            if (pendingCount == MAX_CHAINS || pendingCount == queue.size()) {
                tooBig = true;
                return false;
            }
            DescriptorChain c = held(pendingCount);
            String bad = null;
            try {
                if (!queue.pop(c)) {
                    return false;
                }
                if (c.readableCount() != 0) {
                    bad = "chain " + c.head() + " has device-readable descriptors";
                } else if (c.writableBytes() < hdrLen) {
                    bad = "chain " + c.head() + " holds " + c.writableBytes() + " bytes, less than the "
                            + hdrLen + "-byte header";
                }
            } catch (QueueException e) {
                if (e.kind().fatal()) {
                    throw e;
                }
                device.logOnce().warn("rx-chain-" + e.kind(), "RX queue " + queue.index() + ": " + e.getMessage());
                bad = "";
            }
            if (bad != null) {
                if (!bad.isEmpty()) {
                    device.logOnce().warn("rx-bad-chain", "RX queue " + queue.index() + ": " + bad);
                }
                counters.invalidChains.increment();
                if (pendingCount > 0 && queue.inOrder()) {
                    // IN_ORDER (2.7.9 / 2.8.9): buffers are used in the order they were made available, so the
                    // ones taken before the bad one go back first (unwritten: this frame waits for new ones).
                    for (int i = 0; i < pendingCount; i++) {
                        queue.addUsed(held(i), 0);
                    }
                    pendingCount = 0;
                    pendingCapacity = 0;
                    resetIovec();
                }
                queue.addUsed(c, 0);
                usedSinceNotify = true;
                if (pendingCount > 0) {
                    pendingContiguous = false;
                }
                continue;
            }
            pendingCount++;
            pendingCapacity += c.writableBytes();
            if (!iovecStale && (!direct || !iovec.append(c))) {
                iovecStale = true; // the staged way until the chains held now are used
            }
        }
        if (!mergeable && held(0).writableBytes() < length) {
            tooBig = true;
            return false;
        }
        return true;
    }

    private int chainsFor(int length) {
        long cap = 0;
        for (int i = 0; i < pendingCount; i++) {
            cap += held(i).writableBytes();
            if (cap >= length) {
                return i + 1;
            }
        }
        return pendingCount;
    }

    private Result discardFrame() {
        peeked = false;
        try {
            discard.clear();
            backend.receive(discardSlices, 1);
        } catch (IOException | RuntimeException e) {
            return Result.BACKEND_ERROR;
        }
        return Result.MORE;
    }

    /**
     * 5.1.6.4.1, by {@link GuestOffloadRule}: a frame whose header asks for an offload the driver did not accept
     * cannot be fixed here and is dropped; DATA_VALID without GUEST_CSUM is cleared (flags must then be zero).
     * A USO frame is judged by its IP version ({@link EthernetFrame#ipVersionOf}), read back from the guest buffers.
     */
    private boolean offloadsAllowed(int frameLength) {
        int flags = frame.byteAt(VirtioNetHeader.FLAGS_OFFSET);
        int gso = frame.byteAt(VirtioNetHeader.GSO_TYPE_OFFSET);
        int ipVersion = GuestOffloadRule.needsIpVersion(gso) ? frame.ipVersion(device.headerLength(), frameLength) : 0;
        GuestOffloadRule.Verdict v = GuestOffloadRule.verdict(device.guestOffloads(), flags, gso, ipVersion);
        if (v == GuestOffloadRule.Verdict.DELIVER_WITHOUT_FLAGS) {
            frame.putByte(VirtioNetHeader.FLAGS_OFFSET, 0);
        }
        return v.deliverable();
    }

    /**
     * Publishes a received frame of {@code n} bytes: num_buffers (5.1.6.4), then the chains' pages marked in the
     * dirty log, then their used entries. num_buffers is the last write to the guest's buffers, so it comes before the
     * marks: a log sync between a mark and a later write to the same page would miss that write
     * (vhost-user.rst, "Migration": the back-end marks the pages it wrote).
     */
    private void complete(int n, int hdrLen, boolean mergeable) {
        int used = 0;
        long left = n;
        while (left > 0 && used < pendingCount) {
            left -= Math.min(held(used).writableBytes(), left);
            used++;
            if (!mergeable) {
                break;
            }
        }
        if (hdrLen == VirtioNetHeader.LENGTH_MRG) {
            // 5.1.6.4: num_buffers is the number of buffers used; 1 when MRG_RXBUF is not negotiated.
            frame.putByte(VirtioNetHeader.NUM_BUFFERS_OFFSET, used & 0xff);
            frame.putByte(VirtioNetHeader.NUM_BUFFERS_OFFSET + 1, used >>> 8);
        }
        markReceived(used, n);
        int remaining = n;
        for (int i = 0; i < used; i++) {
            DescriptorChain c = held(i);
            int take = (int) Math.min(c.writableBytes(), remaining);
            queue.addUsed(c, take);
            rxBuffers.count(c);
            remaining -= take;
        }
        usedSinceNotify = true;
        burstPackets++;
        burstBytes += n - hdrLen;
        for (int i = 0; i < used; i++) {
            pendingCapacity -= held(i).writableBytes();
        }
        // The used chains' objects are reused for the chains taken next.
        pendingHead = (pendingHead + used) & (MAX_CHAINS - 1);
        pendingCount -= used;
        if (!iovecStale) {
            iovec.dropFirst(used);
        }
        if (pendingCount == 0) {
            pendingContiguous = true;
            resetIovec();
        }
    }

    /**
     * Marks in the dirty log the {@code n} bytes the backend wrote into the first {@code chains} pending chains.
     * Also for a frame that is then dropped: its chains stay the driver's and keep what was written (a later,
     * shorter frame overwrites only its own length), and vhost-user.rst ("Migration") asks for every
     * modification of memory a descriptor points to to be logged.
     */
    private void markReceived(int chains, long n) {
        if (queue.memory().dirtyLog() == DirtyLog.NONE) {
            return;
        }
        for (int i = 0; i < chains && n > 0; i++) {
            DescriptorChain c = held(i);
            for (int d = c.readableCount(); d < c.count() && n > 0; d++) {
                long len = Math.min(c.length(d) & 0xffffffffL, n);
                queue.memory().markDirty(c.address(d), len);
                n -= len;
            }
        }
    }

    /**
     * Gives back chains taken but not used (on stop): rewinds the ring if they are the last taken, otherwise
     * returns them with length 0 (only after a malformed chain in between).
     */
    void release() {
        if (pendingCount == 0) {
            return;
        }
        if (pendingContiguous) {
            queue.giveBack(pendingCount);
        } else {
            for (int i = 0; i < pendingCount; i++) {
                queue.addUsed(held(i), 0);
            }
            queue.publishUsedAndNotify(counters);
        }
        pendingCount = 0;
        pendingCapacity = 0;
        pendingContiguous = true;
        resetIovec();
    }

    /** No chain is held: the iovec is empty and matches again. */
    private void resetIovec() {
        iovec.clear();
        iovecStale = false;
    }
}
