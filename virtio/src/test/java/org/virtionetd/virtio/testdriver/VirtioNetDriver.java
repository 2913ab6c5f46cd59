package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.os.EventFd;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.virtionetd.virtio.net.VirtioNetFeature.*;

/**
 * Plays the Linux virtio_net driver against a {@link VirtioDevice}, from the spec (virtio 1.2, 3.1 and 5.1):
 * the status sequence, feature negotiation, queue setup with a kick eventfd and a counting notifier per queue,
 * transmit chains shaped in several ways, receive buffers in the three modes of 5.1.6.3, reassembly of received
 * packets, and the control commands of 5.1.6.5.
 *
 * <p>Queue numbering (5.1.2): receiveq(k) = 2k, transmitq(k) = 2k + 1 for pairs k = 0..N-1, controlq = 2N, where
 * N = max_virtqueue_pairs with VIRTIO_NET_F_MQ and 1 without. One test thread drives it; the device runs its own
 * threads, so every wait is bounded polling with a failure message that shows the ring.
 */
public final class VirtioNetDriver implements AutoCloseable {
    /** How receive buffers are posted (5.1.6.3.1). */
    public enum RxMode {
        /** MRG_RXBUF: many small buffers of one descriptor each; a packet may span num_buffers of them. */
        MERGEABLE,
        /** No MRG_RXBUF but a GUEST_TSO4/TSO6/UFO/USO: one chain per packet, big enough for 64 KiB, in pages. */
        BIG,
        /** Neither: one 1526-byte buffer (header + 1514) per packet. */
        SMALL
    }

    /** What Linux's virtio_net asks for, plus the ring features; the device's offer is intersected with it. */
    public static final long LINUX_FEATURES = bits(CSUM, GUEST_CSUM, CTRL_GUEST_OFFLOADS, MTU, MAC, GUEST_TSO4,
            GUEST_TSO6, GUEST_ECN, GUEST_UFO, HOST_TSO4, HOST_TSO6, HOST_ECN, HOST_UFO, MRG_RXBUF, STATUS, CTRL_VQ,
            CTRL_RX, CTRL_VLAN, CTRL_RX_EXTRA, GUEST_ANNOUNCE, MQ, CTRL_MAC_ADDR, SPEED_DUPLEX, GUEST_USO4,
            GUEST_USO6, HOST_USO, VirtioFeature.RING_INDIRECT_DESC, VirtioFeature.RING_EVENT_IDX,
            VirtioFeature.VERSION_1);

    /** Configuration of the driver; setters return this. */
    public static final class Options {
        long features = LINUX_FEATURES;
        boolean legacy;
        Boolean legacyLayout;
        int queueSize = 256;
        boolean kickEventFds = true;
        long seed = 1;
        int maxGap = 512;
        int mergeableBufferSize = 1536;
        int bigBufferSize = 65562;
        int smallFrameRoom = 1514;
        boolean rxIndirect;
        boolean respectDependencies = true;
        boolean fillRxOnStart = true;
        boolean autoRefill = true;
        int queuePairs = Integer.MAX_VALUE;
        Duration timeout = Await.DEFAULT;

        /** Feature bits the driver would like (intersected with the offer). */
        public Options features(long v) {
            features = v;
            return this;
        }

        /** Adds feature bits. */
        public Options with(int... bitNumbers) {
            features |= bits(bitNumbers);
            return this;
        }

        /** Removes feature bits. */
        public Options without(int... bitNumbers) {
            features &= ~bits(bitNumbers);
            return this;
        }

        /**
         * A legacy (pre-1.0) driver: no VERSION_1, ANY_LAYOUT asked for, no FEATURES_OK step (3.1.2), legacy
         * ring layout unless {@link #legacyLayout(boolean)} says otherwise; 10-byte header unless MRG_RXBUF.
         */
        public Options legacy(boolean v) {
            legacy = v;
            if (v) {
                features = (features & ~VirtioFeature.bit(VirtioFeature.VERSION_1))
                        | VirtioFeature.bit(VirtioFeature.ANY_LAYOUT);
            } else {
                features = (features | VirtioFeature.bit(VirtioFeature.VERSION_1))
                        & ~VirtioFeature.bit(VirtioFeature.ANY_LAYOUT);
            }
            return this;
        }

        public Options legacyLayout(boolean v) {
            legacyLayout = v;
            return this;
        }

        /** Queue size: a power of two for the split format (checked at setup), any of 1..32768 packed (2.8). */
        public Options queueSize(int v) {
            PackedQueueDriver.checkSize(v);
            queueSize = v;
            return this;
        }

        /** Asks for VIRTIO_F_RING_PACKED: with it negotiated the queues are packed (2.8), else split (2.7). */
        public Options packed(boolean v) {
            return v ? with(VirtioFeature.RING_PACKED) : without(VirtioFeature.RING_PACKED);
        }

        /** Asks for VIRTIO_F_IN_ORDER: buffers come back in the order they were made available (2.7.9, 2.8.9). */
        public Options inOrder(boolean v) {
            return v ? with(VirtioFeature.IN_ORDER) : without(VirtioFeature.IN_ORDER);
        }

        /** With false, queues start with a null kick: the device must poll the ring. */
        public Options kickEventFds(boolean v) {
            kickEventFds = v;
            return this;
        }

        /** Seeds buffer placement and descriptor order; print it in failures to replay. */
        public Options seed(long v) {
            seed = v;
            return this;
        }

        public Options maxGap(int v) {
            maxGap = v;
            return this;
        }

        /** Size of each mergeable receive buffer (at least the 12-byte header, 5.1.6.3.1). */
        public Options mergeableBufferSize(int v) {
            mergeableBufferSize = v;
            return this;
        }

        /** Bytes of one big-packet receive chain, header included (virtio 1.2: 65562). */
        public Options bigBufferSize(int v) {
            bigBufferSize = v;
            return this;
        }

        /** Frame room of a small receive buffer (1514: 1526 with the 12-byte header). */
        public Options smallFrameRoom(int v) {
            smallFrameRoom = v;
            return this;
        }

        /** Post big receive chains as one indirect descriptor (needs RING_INDIRECT_DESC). */
        public Options rxIndirect(boolean v) {
            rxIndirect = v;
            return this;
        }

        /** With false, the features are acked as asked even if 5.1.3.1 dependencies are missing. */
        public Options respectDependencies(boolean v) {
            respectDependencies = v;
            return this;
        }

        public Options fillRxOnStart(boolean v) {
            fillRxOnStart = v;
            return this;
        }

        /** Re-post a receive buffer for each one consumed (what Linux does). */
        public Options autoRefill(boolean v) {
            autoRefill = v;
            return this;
        }

        /** How many queue pairs to set up (at most N). */
        public Options queuePairs(int v) {
            queuePairs = v;
            return this;
        }

        public Options timeout(Duration v) {
            timeout = v;
            return this;
        }
    }

    /** How a transmitted packet is laid out in descriptors (5.1.6.2; 2.7.4 "Message Framing"). */
    public static final class TxShape {
        int framePieces = 1;
        boolean headerSeparate = true;
        boolean indirect;
        boolean acrossRegions;

        public static TxShape simple() {
            return new TxShape();
        }

        /** Split the frame over {@code n} descriptors at random points. */
        public TxShape framePieces(int n) {
            if (n < 1) {
                throw new IllegalArgumentException("frame pieces " + n + " must be at least 1");
            }
            framePieces = n;
            return this;
        }

        /** Header in its own descriptor (true) or sharing the first frame descriptor (false). */
        public TxShape headerSeparate(boolean v) {
            headerSeparate = v;
            return this;
        }

        /** All of it in one indirect table. */
        public TxShape indirect(boolean v) {
            indirect = v;
            return this;
        }

        /** The first frame piece straddles a boundary between two memory regions. */
        public TxShape acrossRegions(boolean v) {
            acrossRegions = v;
            return this;
        }
    }

    private static final int PAGE = 4096;

    private final VirtioDevice device;
    private final GuestMemory memory;
    private final Options options;
    private final GuestAllocator allocator;
    private final Random random;
    private long negotiated;
    private boolean featuresAccepted;
    private int maxPairs = 1;
    private int pairs;
    private int headerLength;
    private RxMode rxMode;
    private QueueDriver[] queues = new QueueDriver[0];
    private CountingNotifier[] notifiers = new CountingNotifier[0];
    private EventFd[] kicks = new EventFd[0];
    /** Used elements read from a queue but not yet claimed (TX completions, partial RX packets). */
    private final Map<Integer, ArrayDeque<UsedElement>> unclaimed = new java.util.HashMap<>();
    /** Returned chains not yet awaited (Chain has identity equality); the oldest are forgotten past 65536. */
    private final Map<Chain, UsedElement> completed = new LinkedHashMap<>() {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<Chain, UsedElement> eldest) {
            return size() > 65536;
        }
    };

    public VirtioNetDriver(VirtioDevice device, GuestMemory memory, Options options) {
        this(device, new GuestAllocator(memory, options.seed, options.maxGap), options);
    }

    /** Shares an allocator, e.g. two drivers (two devices) in one guest memory. */
    public VirtioNetDriver(VirtioDevice device, GuestAllocator allocator, Options options) {
        this.device = device;
        this.memory = allocator.memory();
        this.options = options;
        this.allocator = allocator;
        this.random = allocator.random();
    }

    /** Negotiates, sets up the queues and sets DRIVER_OK; fills the receive queues unless told not to. */
    public VirtioNetDriver start() throws VirtioException {
        if (!negotiate()) {
            throw new VirtioException(VirtioException.Kind.FEATURES, "device refused FEATURES_OK for "
                    + VirtioNetFeature.names(negotiated) + " (status " + DeviceStatus.describe(device.status()) + ")");
        }
        setUpQueues();
        driverOk();
        if (options.fillRxOnStart) {
            for (int p = 0; p < pairs; p++) {
                fillRx(p);
            }
        }
        return this;
    }

    /**
     * 3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, read the offer, write our subset, FEATURES_OK and re-read it.
     * Returns whether the device kept FEATURES_OK (always true for a legacy driver, which skips the step).
     */
    public boolean negotiate() throws VirtioException {
        device.setStatus(0);
        device.setStatus(DeviceStatus.ACKNOWLEDGE);
        device.setStatus(DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
        long offered = device.offeredFeatures();
        long want = options.features & offered;
        negotiated = options.respectDependencies ? withDependencies(want) : want;
        device.setDriverFeatures(negotiated);
        headerLength = VirtioFeature.has(negotiated, VirtioFeature.VERSION_1) || has(negotiated, MRG_RXBUF) ? 12 : 10;
        rxMode = has(negotiated, MRG_RXBUF) ? RxMode.MERGEABLE
                : (negotiated & bits(GUEST_TSO4, GUEST_TSO6, GUEST_UFO, GUEST_USO4, GUEST_USO6)) != 0 ? RxMode.BIG
                : RxMode.SMALL;
        if (options.legacy) {
            featuresAccepted = true;
            return true;
        }
        device.setStatus(DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK);
        featuresAccepted = (device.status() & DeviceStatus.FEATURES_OK) != 0;
        if (!featuresAccepted) {
            device.setStatus(device.status() | DeviceStatus.FAILED);
        }
        return featuresAccepted;
    }

    /**
     * 5.1.5 steps 1-2: identify receiveq/transmitq 1..N and the control queue; for each: rings in guest memory,
     * setQueue, startQueue with its kick eventfd (or null) and a counting notifier.
     */
    public void setUpQueues() throws VirtioException {
        device.setMemory(memory);
        maxPairs = has(negotiated, MQ) ? configLe16(8) : 1;
        if (maxPairs < 1) {
            throw new AssertionError("device config max_virtqueue_pairs is " + maxPairs + " with MQ negotiated "
                    + "(5.1.4: MUST be 1..0x8000)");
        }
        pairs = Math.min(maxPairs, options.queuePairs);
        int count = 2 * maxPairs + (has(negotiated, CTRL_VQ) ? 1 : 0);
        queues = new QueueDriver[count];
        notifiers = new CountingNotifier[count];
        kicks = new EventFd[count];
        boolean legacyLayout = options.legacyLayout != null ? options.legacyLayout : options.legacy;
        boolean eventIdx = VirtioFeature.has(negotiated, VirtioFeature.RING_EVENT_IDX);
        for (int i = 0; i < count; i++) {
            boolean ctrl = has(negotiated, CTRL_VQ) && i == 2 * maxPairs;
            if (!ctrl && i / 2 >= pairs) {
                continue;
            }
            String name = queueName(i);
            QueueDriver q = newQueue(name, legacyLayout);
            q.setEventIdx(eventIdx);
            queues[i] = q;
            notifiers[i] = new CountingNotifier(name);
            if (options.kickEventFds) {
                try {
                    kicks[i] = EventFd.create();
                } catch (IOException e) {
                    throw new UncheckedIOException("cannot create the kick eventfd of " + name, e);
                }
                q.setKick(kicks[i]);
            }
            device.setQueue(i, options.queueSize, q.descAddress(), q.driverAreaAddress(), q.deviceAreaAddress());
            device.startQueue(i, kicks[i], notifiers[i]);
        }
    }

    /** The queue of the negotiated format: packed with RING_PACKED, else split; either reads IN_ORDER batches. */
    private QueueDriver newQueue(String name, boolean legacyLayout) {
        boolean inOrder = VirtioFeature.has(negotiated, VirtioFeature.IN_ORDER);
        if (VirtioFeature.has(negotiated, VirtioFeature.RING_PACKED)) {
            PackedQueueDriver q = PackedQueueDriver.create(allocator, options.queueSize, name);
            q.setInOrder(inOrder);
            return q;
        }
        SplitQueueDriver q = legacyLayout ? SplitQueueDriver.legacy(allocator, options.queueSize, name)
                : SplitQueueDriver.modern(allocator, options.queueSize, name);
        q.setInOrder(inOrder);
        return q;
    }

    /**
     * Stops queue {@code index} and starts it again where it stopped, as a vhost-user front-end does around
     * GET_VRING_BASE / SET_VRING_BASE (e.g. migration): returns the next available index the device reported.
     */
    public int restartQueue(int index) throws VirtioException {
        QueueDriver q = queue(index);
        int base = device.stopQueue(index);
        device.setQueue(index, q.size(), q.descAddress(), q.driverAreaAddress(), q.deviceAreaAddress());
        device.setQueueBase(index, base);
        device.startQueue(index, kicks[index], notifiers[index]);
        return base;
    }

    /** 3.1.1 step 8. */
    public void driverOk() {
        int s = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.DRIVER_OK
                | (options.legacy ? 0 : DeviceStatus.FEATURES_OK);
        device.setStatus(s);
    }

    /** Drops bits whose requirement of 5.1.3.1 is not also acked, as a conforming driver must. */
    public static long withDependencies(long f) {
        long prev;
        do {
            prev = f;
            f = requires(f, GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_UFO, GUEST_USO4, GUEST_USO6);
            f = requires(f, CSUM, HOST_TSO4, HOST_TSO6, HOST_UFO, HOST_USO);
            f = requires(f, CTRL_VQ, CTRL_RX, CTRL_VLAN, GUEST_ANNOUNCE, MQ, CTRL_MAC_ADDR, NOTF_COAL, RSS,
                    CTRL_GUEST_OFFLOADS, CTRL_RX_EXTRA);
            f = requires(f, CTRL_RX, CTRL_RX_EXTRA);
            if (!has(f, GUEST_TSO4) && !has(f, GUEST_TSO6)) {
                f &= ~bits(GUEST_ECN);
            }
            if (!has(f, HOST_TSO4) && !has(f, HOST_TSO6)) {
                f &= ~bits(HOST_ECN, RSC_EXT);
            }
        } while (f != prev);
        return f;
    }

    private static long requires(long f, int needed, int... dependents) {
        return has(f, needed) ? f : f & ~bits(dependents);
    }

    // ---- accessors ----

    public VirtioDevice device() {
        return device;
    }

    public GuestMemory memory() {
        return memory;
    }

    public GuestAllocator allocator() {
        return allocator;
    }

    public long negotiatedFeatures() {
        return negotiated;
    }

    public boolean featuresAccepted() {
        return featuresAccepted;
    }

    /** 10 (legacy without MRG_RXBUF) or 12. */
    public int headerLength() {
        return headerLength;
    }

    public RxMode rxMode() {
        return rxMode;
    }

    /** N: max_virtqueue_pairs with MQ, else 1. */
    public int maxQueuePairs() {
        return maxPairs;
    }

    /** Pairs set up by this driver. */
    public int queuePairs() {
        return pairs;
    }

    public static int receiveQueueIndex(int pair) {
        return 2 * pair;
    }

    public static int transmitQueueIndex(int pair) {
        return 2 * pair + 1;
    }

    /** 2N, or -1 without CTRL_VQ. */
    public int controlQueueIndex() {
        return has(negotiated, CTRL_VQ) ? 2 * maxPairs : -1;
    }

    public QueueDriver queue(int index) {
        if (index < 0 || index >= queues.length || queues[index] == null) {
            throw new IllegalArgumentException("queue " + index + " is not set up (queues: " + queues.length
                    + ", pairs set up: " + pairs + ")");
        }
        return queues[index];
    }

    /** Queue {@code index} where a test needs what only the split format has (used_event, avail idx...). */
    public SplitQueueDriver splitQueue(int index) {
        if (!(queue(index) instanceof SplitQueueDriver q)) {
            throw new IllegalStateException("queue " + index + " is packed (RING_PACKED negotiated), not split");
        }
        return q;
    }

    /** Queue {@code index} where a test needs what only the packed format has (event suppression, wrap...). */
    public PackedQueueDriver packedQueue(int index) {
        if (!(queue(index) instanceof PackedQueueDriver q)) {
            throw new IllegalStateException("queue " + index + " is split (RING_PACKED not negotiated), not packed");
        }
        return q;
    }

    public QueueDriver receiveQueue(int pair) {
        return queue(receiveQueueIndex(pair));
    }

    public QueueDriver transmitQueue(int pair) {
        return queue(transmitQueueIndex(pair));
    }

    public QueueDriver controlQueue() {
        int c = controlQueueIndex();
        if (c < 0) {
            throw new IllegalStateException("VIRTIO_NET_F_CTRL_VQ was not negotiated: no control queue");
        }
        return queue(c);
    }

    public CountingNotifier notifier(int index) {
        queue(index);
        return notifiers[index];
    }

    /** The kick eventfd of a queue, or null when the device polls. */
    public EventFd kick(int index) {
        queue(index);
        return kicks[index];
    }

    public String queueName(int index) {
        if (has(negotiated, CTRL_VQ) && index == 2 * maxPairs) {
            return "controlq";
        }
        return (index % 2 == 0 ? "receiveq" : "transmitq") + (index / 2 + 1);
    }

    // ---- device configuration (5.1.4) ----

    public byte[] configMac() throws VirtioException {
        return device.readConfig(0, 6);
    }

    /** status (needs VIRTIO_NET_F_STATUS): bit 0 LINK_UP, bit 1 ANNOUNCE. */
    public int configStatus() throws VirtioException {
        return configLe16(6);
    }

    public int configMtu() throws VirtioException {
        return configLe16(10);
    }

    private int configLe16(int offset) throws VirtioException {
        byte[] b = device.readConfig(offset, 2);
        return (b[0] & 0xff) | (b[1] & 0xff) << 8;
    }

    // ---- transmit (5.1.6.2) ----

    public Chain transmit(int pair, NetHeaderFields header, byte[] frame) {
        return transmit(pair, header, frame, TxShape.simple());
    }

    /** Places header + frame on transmitq(pair) in the given shape, publishes and kicks if due. */
    public Chain transmit(int pair, NetHeaderFields header, byte[] frame, TxShape shape) {
        reapTransmitted(pair);
        Chain c = place(pair, header, frame, shape);
        transmitQueue(pair).publish();
        return c;
    }

    /**
     * Places every frame on transmitq(pair), then makes them all available with one avail.idx update and kicks if
     * due: a driver batching its transmissions (Linux does with xmit_more). The device sees none or all of them.
     */
    public List<Chain> transmitBatch(int pair, NetHeaderFields header, List<byte[]> frames) {
        reapTransmitted(pair);
        List<Chain> chains = new ArrayList<>();
        for (byte[] frame : frames) {
            chains.add(place(pair, header, frame, TxShape.simple()));
        }
        transmitQueue(pair).publish();
        return chains;
    }

    private Chain place(int pair, NetHeaderFields header, byte[] frame, TxShape shape) {
        QueueDriver q = transmitQueue(pair);
        byte[] hdr = header.encode(headerLength);
        List<byte[]> pieces = split(frame, shape.framePieces);
        List<Buffer> bufs = new ArrayList<>();
        if (shape.headerSeparate || pieces.isEmpty()) {
            bufs.add(Buffer.readable(hdr));
        } else {
            pieces.set(0, concat(hdr, pieces.get(0)));
        }
        for (int i = 0; i < pieces.size(); i++) {
            Buffer b = Buffer.readable(pieces.get(i));
            bufs.add(i == 0 && shape.acrossRegions && pieces.get(i).length >= 2 ? b.acrossRegionBoundary() : b);
        }
        return shape.indirect ? q.placeChain(List.of(), bufs) : q.placeChain(bufs, List.of());
    }

    /** Reads transmitq(pair)'s used ring, frees the returned chains' buffers; returns how many came back. */
    public int reapTransmitted(int pair) {
        QueueDriver q = transmitQueue(pair);
        List<UsedElement> used = poll(transmitQueueIndex(pair));
        for (UsedElement e : used) {
            q.releaseBuffers(e.chain());
            completed.put(e.chain(), e);
        }
        return used.size();
    }

    /** Waits until the device returned {@code chain} on transmitq(pair); returns its used element. */
    public UsedElement awaitTransmitted(int pair, Chain chain) {
        QueueDriver q = transmitQueue(pair);
        Await.until(options.timeout, () -> {
            reapTransmitted(pair);
            return completed.containsKey(chain);
        }, "the device to return TX head " + chain.head() + " on " + q.name(), q::describe);
        return completed.remove(chain);
    }

    // ---- receive (5.1.6.3, 5.1.6.4) ----

    /** Posts receive buffers on receiveq(pair) until the queue is full; returns how many. */
    public int fillRx(int pair) {
        return fillRx(pair, Integer.MAX_VALUE);
    }

    /** Posts up to {@code count} receive buffers (chains) of the negotiated mode; publishes and kicks once. */
    public int fillRx(int pair, int count) {
        QueueDriver q = receiveQueue(pair);
        int posted = 0;
        while (posted < count && q.freeSlotCount() >= slotsPerRxBuffer()) {
            List<Buffer> bufs = rxBuffer();
            if (rxMode == RxMode.BIG && options.rxIndirect) {
                q.placeChain(List.of(), bufs);
            } else {
                q.placeChain(bufs, List.of());
            }
            posted++;
        }
        q.publish();
        return posted;
    }

    private int slotsPerRxBuffer() {
        return rxMode == RxMode.BIG && options.rxIndirect ? 1 : rxBuffer().size();
    }

    /**
     * Without VERSION_1 or ANY_LAYOUT, 5.1.6.6 (legacy message framing) puts the header in a descriptor of its
     * own, data in the following ones.
     */
    private boolean anyLayout() {
        return VirtioFeature.has(negotiated, VirtioFeature.VERSION_1)
                || VirtioFeature.has(negotiated, VirtioFeature.ANY_LAYOUT);
    }

    private List<Buffer> rxBuffer() {
        switch (rxMode) {
            case MERGEABLE:
                return List.of(Buffer.writable(options.mergeableBufferSize));
            case SMALL:
                return anyLayout() ? List.of(Buffer.writable(headerLength + options.smallFrameRoom))
                        : List.of(Buffer.writable(headerLength), Buffer.writable(options.smallFrameRoom));
            default:
                // Like Linux's big packets: the header alone, then page-sized pieces, scattered.
                List<Buffer> out = new ArrayList<>();
                out.add(Buffer.writable(headerLength));
                int left = options.bigBufferSize - headerLength;
                while (left > 0) {
                    int n = Math.min(PAGE, left);
                    out.add(Buffer.writable(n));
                    left -= n;
                }
                return out;
        }
    }

    /**
     * Reads receiveq(pair)'s used ring and returns the complete packets in it (a mergeable packet whose
     * num_buffers have not all arrived stays pending). Checks 5.1.6.4's device rules: len covers the header,
     * num_buffers is 1 without MRG_RXBUF, every buffer of a merged packet but the last is used completely.
     */
    public List<ReceivedPacket> receive(int pair) {
        int qi = receiveQueueIndex(pair);
        QueueDriver q = queue(qi);
        ArrayDeque<UsedElement> pendingUsed = unclaimed.computeIfAbsent(qi, k -> new ArrayDeque<>());
        pendingUsed.addAll(poll(qi));
        List<ReceivedPacket> out = new ArrayList<>();
        int consumed = 0;
        while (!pendingUsed.isEmpty()) {
            UsedElement first = pendingUsed.peekFirst();
            if (first.len() < headerLength) {
                throw new AssertionError(q.name() + ": used len " + first.len() + " of head " + first.id()
                        + " is shorter than the " + headerLength + "-byte virtio_net_hdr; " + q.describe());
            }
            byte[] hdr = read(first.chain(), headerLength);
            NetHeaderFields fields = NetHeaderFields.decode(hdr);
            int nb = 1;
            if (headerLength == 12) {
                if (rxMode == RxMode.MERGEABLE) {
                    nb = fields.numBuffers();
                    if (nb < 1) {
                        throw new AssertionError(q.name() + ": num_buffers " + nb + " in head " + first.id()
                                + " (5.1.6.4: the packet is spread over at least this buffer)");
                    }
                } else if (fields.numBuffers() != 1) {
                    throw new AssertionError(q.name() + ": num_buffers " + fields.numBuffers() + " without "
                            + "MRG_RXBUF (5.1.6.4.1: the device MUST set it to 1); head " + first.id());
                }
            }
            if (pendingUsed.size() < nb) {
                break;
            }
            List<UsedElement> parts = new ArrayList<>();
            java.io.ByteArrayOutputStream frame = new java.io.ByteArrayOutputStream();
            for (int i = 0; i < nb; i++) {
                UsedElement e = pendingUsed.removeFirst();
                if (i + 1 < nb && e.len() != e.chain().writableLength()) {
                    throw new AssertionError(q.name() + ": buffer " + (i + 1) + " of " + nb + " (head " + e.id()
                            + ") used " + e.len() + " of " + e.chain().writableLength() + " bytes; 5.1.6.4.1: all "
                            + "but the last buffer MUST be used completely");
                }
                byte[] data = read(e.chain(), e.len());
                int from = i == 0 ? headerLength : 0;
                frame.write(data, from, data.length - from);
                parts.add(e);
                q.releaseBuffers(e.chain());
                consumed++;
            }
            out.add(new ReceivedPacket(hdr, fields, frame.toByteArray(), List.copyOf(parts)));
        }
        if (options.autoRefill && consumed > 0) {
            fillRx(pair, consumed);
        }
        return out;
    }

    /** Waits until {@code n} packets arrived on receiveq(pair) and returns them. */
    public List<ReceivedPacket> awaitPackets(int pair, int n) {
        List<ReceivedPacket> got = new ArrayList<>();
        QueueDriver q = receiveQueue(pair);
        Await.until(options.timeout, () -> {
            got.addAll(receive(pair));
            return got.size() >= n;
        }, n + " packets on " + q.name(), () -> got.size() + " packets " + got + "; " + q.describe());
        return got;
    }

    // ---- control queue (5.1.6.5) ----

    /**
     * Sends {@code class, command} + data (each array its own descriptor, as Linux does) + a one-byte writable
     * ack, waits until the device returns it, and returns the ack (OK 0, ERR 1) or {@link VirtioNetCtrl#NO_ACK}
     * if the used len was 0.
     */
    public int command(int cls, int cmd, byte[]... data) {
        QueueDriver q = controlQueue();
        List<Buffer> bufs = new ArrayList<>();
        bufs.add(Buffer.readable(new byte[] {(byte) cls, (byte) cmd}));
        for (byte[] d : data) {
            if (d.length > 0) {
                bufs.add(Buffer.readable(d));
            }
        }
        bufs.add(Buffer.writable(1));
        Chain c = q.placeChain(bufs, List.of());
        q.publish();
        int ci = controlQueueIndex();
        Await.until(options.timeout, () -> {
            for (UsedElement e : poll(ci)) {
                completed.put(e.chain(), e);
            }
            return completed.containsKey(c);
        }, "the device to answer control command class " + cls + " command " + cmd, q::describe);
        UsedElement e = completed.remove(c);
        int ack = e.len() < 1 ? VirtioNetCtrl.NO_ACK : read(c, 1)[0] & 0xff;
        q.releaseBuffers(c);
        return ack;
    }

    /** VIRTIO_NET_CTRL_RX: one of PROMISC..NOBCAST, on or off. */
    public int rxMode(int command, boolean on) {
        return command(VirtioNetCtrl.CLASS_RX, command, new byte[] {(byte) (on ? 1 : 0)});
    }

    /** VIRTIO_NET_CTRL_MAC_TABLE_SET: le32 count + unicast MACs, le32 count + multicast MACs. */
    public int macTableSet(List<byte[]> unicast, List<byte[]> multicast) {
        return command(VirtioNetCtrl.CLASS_MAC, VirtioNetCtrl.MAC_TABLE_SET, macTable(unicast),
                macTable(multicast));
    }

    public int macAddrSet(byte[] mac) {
        if (mac.length != 6) {
            throw new IllegalArgumentException("a MAC address has 6 bytes, got " + mac.length);
        }
        return command(VirtioNetCtrl.CLASS_MAC, VirtioNetCtrl.MAC_ADDR_SET, mac);
    }

    public int vlanAdd(int vid) {
        return command(VirtioNetCtrl.CLASS_VLAN, VirtioNetCtrl.VLAN_ADD, le16(vid));
    }

    public int vlanDel(int vid) {
        return command(VirtioNetCtrl.CLASS_VLAN, VirtioNetCtrl.VLAN_DEL, le16(vid));
    }

    public int announceAck() {
        return command(VirtioNetCtrl.CLASS_ANNOUNCE, VirtioNetCtrl.ANNOUNCE_ACK);
    }

    public int mqVqPairsSet(int pairs) {
        return command(VirtioNetCtrl.CLASS_MQ, VirtioNetCtrl.MQ_VQ_PAIRS_SET, le16(pairs));
    }

    public int guestOffloadsSet(long offloads) {
        byte[] b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, offloads).array();
        return command(VirtioNetCtrl.CLASS_GUEST_OFFLOADS, VirtioNetCtrl.GUEST_OFFLOADS_SET, b);
    }

    public static byte[] macTable(List<byte[]> macs) {
        ByteBuffer b = ByteBuffer.allocate(4 + 6 * macs.size()).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(macs.size());
        for (byte[] m : macs) {
            if (m.length != 6) {
                throw new IllegalArgumentException("a MAC address has 6 bytes, got " + Arrays.toString(m));
            }
            b.put(m);
        }
        return b.array();
    }

    private static byte[] le16(int v) {
        return new byte[] {(byte) v, (byte) (v >>> 8)};
    }

    /** Resets the device (status 0, 2.1.2: it stops using the queues) and closes the kick eventfds. */
    @Override
    public void close() {
        device.setStatus(0);
        for (EventFd k : kicks) {
            if (k != null) {
                k.close();
            }
        }
    }

    // ---- internals ----

    /** Polls a queue's used ring; with EVENT_IDX asks to be notified on the next entry (virtqueue_enable_cb). */
    private List<UsedElement> poll(int index) {
        QueueDriver q = queue(index);
        List<UsedElement> got = q.pollUsed();
        q.armUsedNotification();
        return got;
    }

    private byte[] read(Chain c, long len) {
        try {
            return c.readWritten(memory, (int) len);
        } catch (GuestMemoryException e) {
            throw new IllegalStateException("cannot read back chain " + c + ": " + e.getMessage(), e);
        }
    }

    private List<byte[]> split(byte[] frame, int pieces) {
        List<byte[]> out = new ArrayList<>();
        if (frame.length == 0) {
            return out;
        }
        int n = Math.min(pieces, frame.length);
        if (n == 1) {
            out.add(frame.clone());
            return out;
        }
        int[] cuts = random.ints(1, frame.length).distinct().limit(n - 1).sorted().toArray();
        int from = 0;
        for (int cut : cuts) {
            out.add(Arrays.copyOfRange(frame, from, cut));
            from = cut;
        }
        out.add(Arrays.copyOfRange(frame, from, frame.length));
        return out;
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
