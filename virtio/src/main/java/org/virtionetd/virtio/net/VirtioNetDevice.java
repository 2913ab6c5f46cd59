package org.virtionetd.virtio.net;

import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.device.LogOnce;
import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemoryRegion;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.queue.Notifier;
import org.virtionetd.virtio.queue.Virtqueue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntFunction;

/**
 * The virtio network device (virtio 1.2, section 5.1): feature negotiation, status, configuration space, and the
 * state the control queue changes (filters, MAC, active pairs, guest offloads). Its virtqueues and their threads
 * are {@link QueuePairs}': each pair has its own backend and its own thread; the control queue is served by pair 0's.
 *
 * <p>Transport calls (this class's public methods) are serialised by the object's monitor; the data paths read
 * the negotiated state through volatile fields.
 */
public final class VirtioNetDevice implements VirtioDevice, DeviceContext, ControlCommands {
    private static final System.Logger LOG = System.getLogger(VirtioNetDevice.class.getName());
    public static final int DEVICE_TYPE = 1;

    private final NetDeviceConfig config;
    private final NetBackend[] backends;
    private final NetCounters[] counters;
    private final QueuePairs queues;
    private final long offered;
    private final int pairs;
    private final LogOnce logOnce = new LogOnce(LOG, "virtio-net: ");

    private GuestMemory memory = GuestMemory.empty();
    private volatile long acked;
    /** What the driver acked; {@link #acked} is what of it is in effect (they differ only as in setDriverFeatures). */
    private volatile long driverAcked;
    private long proposed;
    private volatile int headerLength = VirtioNetHeader.LENGTH_LEGACY;
    /**
     * The header length the backends were last configured with, -1 before the first configuration. A reset does
     * not reconfigure them, so a packet the device makes up itself (the RARP of SEND_RARP) takes this length, not
     * {@link #headerLength}.
     */
    private int backendHeaderLength = -1;
    /** The guest MAC of a SEND_RARP that came before the backends were configured, or null. */
    private byte[] pendingRarp;
    private volatile RxFilter filter;
    private volatile long guestOffloads;
    private volatile int activePairs = 1;
    private volatile int status;
    private volatile boolean needsReset;
    private volatile boolean linkUp = true;
    private volatile boolean announcing;
    private volatile int mtu;
    private volatile byte[] mac;
    private volatile Runnable configChangeListener = () -> { };
    /** Features the transport's front-end implements itself and does not forward (vhost-user: the control queue). */
    private volatile long frontEndFeatures;

    /**
     * A device with {@code config.queuePairs()} pairs; {@code backendForPair} opens the backend of each pair.
     * The offered offloads are those pair 0's backend can carry.
     */
    public VirtioNetDevice(NetDeviceConfig config, IntFunction<NetBackend> backendForPair) {
        this.config = config;
        this.pairs = config.queuePairs();
        this.backends = new NetBackend[pairs];
        this.counters = new NetCounters[pairs];
        for (int p = 0; p < pairs; p++) {
            backends[p] = backendForPair.apply(p);
            counters[p] = new NetCounters();
        }
        this.offered = FeatureRules.offered(backends[0].capabilities(), pairs);
        this.queues = new QueuePairs(pairs, backends, counters, this, config.busyPollMicros() * 1000L);
        this.mac = config.mac();
        this.mtu = config.mtu();
        this.filter = RxFilter.initial(mac, false);
    }

    // ---- VirtioDevice -------------------------------------------------------------------------------------

    @Override
    public int deviceType() {
        return DEVICE_TYPE;
    }

    @Override
    public int queueCount() {
        return queues.count();
    }

    public int queuePairs() {
        return pairs;
    }

    public int controlQueueIndex() {
        return 2 * pairs;
    }

    @Override
    public int maxQueueSize() {
        return config.maxQueueSize();
    }

    @Override
    public long offeredFeatures() {
        return offered;
    }

    @Override
    public long ackedFeatures() {
        return driverAcked;
    }

    /**
     * The features in effect: those the driver acked (every acked bit is offered; checked at acceptance), less
     * offloads acked without their requirement where the transport could not refuse (see setDriverFeatures).
     */
    public long negotiatedFeatures() {
        return acked;
    }

    /**
     * Declares features that the front-end implements itself and therefore never forwards (under vhost-user QEMU
     * keeps the control queue, so it sends GUEST_ANNOUNCE or CTRL_RX without CTRL_VQ). The dependency rules of
     * 5.1.3.1 are checked as if these were acked; they are not part of what the device has in effect.
     */
    public void setFrontEndFeatures(long features) {
        frontEndFeatures = features;
    }

    private String checkFeatures(long features) {
        return FeatureRules.check(features | (frontEndFeatures & offered), offered);
    }

    @Override
    public synchronized void setDriverFeatures(long features) throws VirtioException {
        proposed = features;
        String wrong = checkFeatures(features);
        if (wrong != null) {
            if ((status & DeviceStatus.DRIVER) != 0) {
                // A driver going through the status sequence learns of the refusal at FEATURES_OK (3.1.1 step 6):
                // the features register itself cannot refuse a write.
                LOG.log(System.Logger.Level.WARNING, "driver wrote unacceptable features: " + wrong);
                return;
            }
            long usable = FeatureRules.effective(features, frontEndFeatures & offered);
            if ((features & ~offered) != 0 || checkFeatures(usable) != null) {
                throw new VirtioException(VirtioException.Kind.FEATURES, wrong);
            }
            // No status sequence (vhost-user; a legacy driver): a refusal reaches no driver. QEMU does not wait
            // for a reply to SET_FEATURES nor read FEATURES_OK back, and the driver runs with what it acked. QEMU
            // 7.2 with csum=off,guest_csum=off still offers the TSO/UFO/ECN bits and Linux acks them: take the
            // driver at its word for the layout (header length) and put in effect only the offloads whose
            // requirements were acked, as a kernel tap ignores TUN_F_TSO* without TUN_F_CSUM.
            LOG.log(System.Logger.Level.WARNING, wrong + "; in effect without " + VirtioNetFeature.names(
                    features & ~usable));
            applyFeatures(features, usable);
            proposed = usable;
            return;
        }
        // Applied at once: a legacy driver has no FEATURES_OK step (3.1.2), and vhost-user has none either.
        applyFeatures(features, features);
    }

    private void applyFeatures(long driverFeatures, long features) throws VirtioException {
        int hdr = VirtioNetHeader.lengthFor(features);
        for (NetBackend b : backends) {
            try {
                b.configure(features, hdr);
            } catch (IOException e) {
                throw new VirtioException(VirtioException.Kind.STATE, "backend " + b.name()
                        + " cannot be configured for features 0x" + Long.toHexString(features) + ": " + e.getMessage());
            }
        }
        backendHeaderLength = hdr;
        acked = features;
        driverAcked = driverFeatures;
        headerLength = hdr;
        guestOffloads = features & VirtioNetFeature.GUEST_OFFLOADS;
        filter = RxFilter.initial(mac, VirtioNetFeature.has(features, VirtioNetFeature.CTRL_VLAN));
        // 5.1.6.5.5: with MQ the driver starts on one pair and widens with VQ_PAIRS_SET. Without a control
        // queue (vhost-user keeps it in the front-end) the front-end enables rings itself: all pairs may be used.
        activePairs = VirtioNetFeature.has(features, VirtioNetFeature.CTRL_VQ) ? 1 : pairs;
        for (int p = 0; p < pairs; p++) {
            syncBackendEnabled(p);
        }
        if (pendingRarp != null) {
            byte[] rarp = pendingRarp;
            pendingRarp = null;
            sendRarp(rarp);
        }
    }

    /**
     * Tells a pair's backend whether the driver uses the pair: its receive queue enabled and the pair within the
     * active ones (5.1.6.5.5). A multi-queue tap then stops steering flows into a queue nobody reads.
     */
    private void syncBackendEnabled(int pair) {
        // A pair other than the first also needs its receive queue running: a front-end that uses fewer pairs
        // than the device has (QEMU's queues=1 on a --queues 2 device) never starts the others, whose queues are
        // enabled by default, and a tap queue left attached would swallow the flows the kernel steers to it.
        // Pair 0 stays attached while no driver runs, so that the tap keeps its carrier; what it queues then is
        // dropped when the receive queue starts (QueuePairs).
        Virtqueue rx = queues.receiveQueue(pair);
        boolean on = rx.enabled() && pair < activePairs && (pair == 0 || rx.started());
        try {
            backends[pair].setEnabled(on);
        } catch (IOException | RuntimeException e) {
            logOnce.warn("backend-enable-" + pair, "backend " + backends[pair].name() + " of pair " + pair
                    + " cannot be " + (on ? "enabled" : "disabled") + ": " + e.getMessage());
        }
    }

    @Override
    public synchronized void setMemory(GuestMemory newMemory) {
        this.memory = newMemory == null ? GuestMemory.empty() : newMemory;
    }

    public synchronized GuestMemory memory() {
        return memory;
    }

    @Override
    public synchronized void setQueue(int index, int size, long desc, long avail, long used) throws VirtioException {
        Virtqueue q = queues.queue(index);
        boolean packed = VirtioFeature.has(acked, VirtioFeature.RING_PACKED);
        if (!Virtqueue.validSize(size, packed) || size > config.maxQueueSize()) {
            throw new VirtioException(VirtioException.Kind.QUEUE_SIZE, "queue " + index + " size " + size
                    + (packed ? " is not in 1.." : " is not a power of two in 1..") + config.maxQueueSize());
        }
        if (q.started()) {
            throw new VirtioException(VirtioException.Kind.STATE, "queue " + index + " is running; stop it first");
        }
        q.configure(size, desc, avail, used);
    }

    @Override
    public synchronized void setQueueBase(int index, int base) throws VirtioException {
        Virtqueue q = queues.queue(index);
        if (q.started()) {
            throw new VirtioException(VirtioException.Kind.STATE, "queue " + index + " is running; stop it first");
        }
        q.setBase(base);
    }

    @Override
    public synchronized void startQueue(int index, EventFd kick, Notifier notifier) throws VirtioException {
        queues.start(index, memory, acked, kick, notifier);
        if (queues.isReceiveQueue(index)) {
            syncBackendEnabled(queues.pairOf(index));
        }
    }

    @Override
    public void setNotifier(int index, Notifier notifier) {
        if (queues.exists(index)) {
            queues.at(index).setNotifier(notifier);
        }
    }

    @Override
    public synchronized void setQueueEnabled(int index, boolean enabled) {
        if (!queues.exists(index)) {
            return;
        }
        queues.at(index).setEnabled(enabled);
        if (queues.isReceiveQueue(index)) {
            syncBackendEnabled(queues.pairOf(index));
        }
        queues.wake(index);
    }

    @Override
    public synchronized int stopQueue(int index) {
        int base = queues.stop(index);
        if (queues.isReceiveQueue(index)) {
            syncBackendEnabled(queues.pairOf(index));
        }
        return base;
    }

    @Override
    public synchronized int pauseQueue(int index) {
        return queues.pause(index);
    }

    @Override
    public synchronized boolean queueStarted(int index) {
        return queues.exists(index) && queues.at(index).started();
    }

    @Override
    public synchronized int queueBase(int index) {
        return queues.exists(index) ? queues.at(index).base() : 0;
    }

    @Override
    public byte[] readConfig(int offset, int length) throws VirtioException {
        if (offset < 0 || length < 0 || offset + length > NetConfigSpace.SIZE) {
            throw new VirtioException(VirtioException.Kind.CONFIG, "config read at " + offset + " length " + length
                    + " is outside the " + NetConfigSpace.SIZE + "-byte virtio_net_config");
        }
        int s = (linkUp ? NetConfigSpace.S_LINK_UP : 0) | (announcing ? NetConfigSpace.S_ANNOUNCE : 0);
        byte[] all = NetConfigSpace.render(mac, s, pairs, mtu, config.speedMbps(), config.fullDuplex(), offered);
        return java.util.Arrays.copyOfRange(all, offset, offset + length);
    }

    @Override
    public synchronized void writeConfig(int offset, byte[] data) throws VirtioException {
        // 5.1.4.2: only a legacy driver without CTRL_MAC_ADDR may write mac; every other field is read-only.
        if (offset < NetConfigSpace.MAC_OFFSET || offset + data.length > NetConfigSpace.MAC_OFFSET + 6) {
            throw new VirtioException(VirtioException.Kind.CONFIG, "config write at " + offset + " length "
                    + data.length + " touches read-only fields (only mac, bytes 0..5, is writable)");
        }
        byte[] m = mac.clone();
        System.arraycopy(data, 0, m, offset, data.length);
        mac = m;
        filter = filter.withMac(m);
    }

    @Override
    public int status() {
        return status | (needsReset ? DeviceStatus.NEEDS_RESET : 0);
    }

    @Override
    public synchronized void setStatus(int newStatus) {
        if (newStatus == 0) {
            reset();
            return;
        }
        int old = status;
        if ((old & ~newStatus & ~DeviceStatus.NEEDS_RESET) != 0) {
            // 2.1.1: the driver MUST NOT clear a status bit. Keep the old value and say so.
            logOnce.warn("status-clear", "driver cleared status bits: " + DeviceStatus.describe(old) + " -> "
                    + DeviceStatus.describe(newStatus) + "; ignored");
            return;
        }
        newStatus &= ~DeviceStatus.NEEDS_RESET;
        if ((newStatus & DeviceStatus.FEATURES_OK) != 0 && (old & DeviceStatus.FEATURES_OK) == 0) {
            String wrong = checkFeatures(proposed);
            if (wrong == null && acked != proposed) {
                try {
                    applyFeatures(proposed, proposed);
                } catch (VirtioException e) {
                    wrong = e.getMessage();
                }
            }
            if (wrong != null) {
                // 3.1.1: the device refuses by not setting FEATURES_OK; the driver reads it back and fails.
                LOG.log(System.Logger.Level.WARNING, "refusing FEATURES_OK: " + wrong);
                newStatus &= ~DeviceStatus.FEATURES_OK;
            }
        }
        status = newStatus;
    }

    @Override
    public synchronized void reset() {
        queues.reset();
        acked = 0;
        driverAcked = 0;
        proposed = 0;
        status = 0;
        needsReset = false;
        announcing = false;
        headerLength = VirtioNetHeader.LENGTH_LEGACY;
        guestOffloads = 0;
        activePairs = 1;
        mac = config.mac();
        filter = RxFilter.initial(mac, false);
        logOnce.clear();
        // The next driver has accepted nothing yet: the backend must not hand it GSO or partial checksums.
        for (NetBackend b : backends) {
            try {
                b.setGuestOffloads(0);
            } catch (IOException | RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "backend " + b.name() + " kept its offloads after reset: " + e);
            }
        }
        for (int p = 0; p < pairs; p++) {
            syncBackendEnabled(p);
        }
    }

    /**
     * SEND_RARP (vhost-user.rst): an RFC 903 RARP request from the guest's MAC out of the backend, so that switches
     * learn where the guest is now. QEMU sends it from the destination of a migration as soon as the migration
     * ends, in several rounds, and the first may come before the features (and so the backends' header length)
     * are known: such a RARP waits and goes out once the backends are configured.
     */
    @Override
    public synchronized void sendRarp(byte[] rarpMac) {
        if (rarpMac == null || rarpMac.length != 6) {
            LOG.log(System.Logger.Level.WARNING, "SEND_RARP with a MAC of " + (rarpMac == null ? 0 : rarpMac.length)
                    + " bytes ignored");
            return;
        }
        if (backendHeaderLength < 0) {
            pendingRarp = rarpMac.clone();
            return;
        }
        ByteBuffer frame = ByteBuffer.allocateDirect(60).order(ByteOrder.BIG_ENDIAN);
        for (int i = 0; i < 6; i++) {
            frame.put((byte) 0xff);
        }
        frame.put(rarpMac).putShort((short) 0x8035);
        frame.putShort((short) 1).putShort((short) 0x0800).put((byte) 6).put((byte) 4).putShort((short) 3);
        frame.put(rarpMac).putInt(0).put(rarpMac).putInt(0);
        frame.position(0).limit(60);
        Packet p = new Packet(1);
        p.reset(backendHeaderLength);
        p.add(frame);
        queues.withLoopStopped(0, () -> {
            try {
                if (!backends[0].send(p)) {
                    counters[0].txDroppedBackend.increment();
                }
            } catch (IOException e) {
                LOG.log(System.Logger.Level.WARNING, "RARP announce through " + backends[0].name()
                        + " failed: " + e.getMessage());
            }
        });
    }

    @Override
    public synchronized void setMtu(int newMtu) throws VirtioException {
        if (newMtu < 68 || newMtu > 65535) {
            throw new VirtioException(VirtioException.Kind.CONFIG, "mtu " + newMtu + " is outside 68..65535");
        }
        mtu = newMtu;
    }

    @Override
    public void close() {
        reset();
        for (NetBackend b : backends) {
            b.close();
        }
    }

    // ---- device state the transport and tools look at -------------------------------------------------------

    /** Called when the configuration space changed (link, announce, NEEDS_RESET): the transport interrupts. */
    public void setConfigChangeListener(Runnable listener) {
        configChangeListener = listener == null ? () -> { } : listener;
    }

    public void setLinkUp(boolean up) {
        if (linkUp != up) {
            linkUp = up;
            configChangeListener.run();
        }
    }

    public boolean linkUp() {
        return linkUp;
    }

    /**
     * Asks the guest to announce itself (after migration): with GUEST_ANNOUNCE it sets VIRTIO_NET_S_ANNOUNCE and
     * the driver sends gratuitous ARPs and acks (5.1.6.5.4); otherwise the device sends a RARP itself.
     */
    public void announce() {
        if (VirtioNetFeature.has(acked, VirtioNetFeature.GUEST_ANNOUNCE)) {
            announcing = true;
            configChangeListener.run();
        } else {
            sendRarp(mac);
        }
    }

    public NetCounters counters(int pair) {
        return counters[pair];
    }

    /**
     * Bytes allocated by the event-loop thread of {@code pair} since it started, or -1 if it is not running: the
     * data path allocates nothing per packet once warm, so a busy device makes no garbage to collect (README.md,
     * {@code loop_allocated_bytes}), and this is how that is shown.
     */
    public long loopAllocatedBytes(int pair) {
        return queues.loopAllocatedBytes(pair);
    }

    /**
     * Each region of the device's current guest memory, sorted by guest address, with the receive buffers the device
     * wrote frames into there since that memory was set, summed over the pairs ({@link RegionRxBuffers}). The
     * loops' counts are read racily: approximate while traffic runs. A pair whose receive queue has not run on this
     * memory yet adds nothing.
     */
    public synchronized List<RegionRxBuffers> rxBuffersByRegion() {
        List<MemoryRegion> regions = memory.regions();
        long[] perRegion = new long[regions.size()];
        for (int p = 0; p < pairs; p++) {
            RxBufferCounts c = queues.rxBufferCounts(p);
            if (c != null && c.memory() == memory) {
                c.addTo(perRegion);
            }
        }
        List<RegionRxBuffers> out = new ArrayList<>(regions.size());
        for (int i = 0; i < regions.size(); i++) {
            MemoryRegion r = regions.get(i);
            out.add(new RegionRxBuffers(r.guestAddress(), r.size(), perRegion[i]));
        }
        return out;
    }

    public NetBackend backend(int pair) {
        return backends[pair];
    }

    public byte[] mac() {
        return mac.clone();
    }

    public int mtu() {
        return mtu;
    }

    /** The offloads the backend programmed on the host side, e.g. TUN_F_CSUM (feature table). */
    public List<String> backendOffloads() {
        return new ArrayList<>(backends[0].programmedOffloads());
    }

    // ---- DeviceContext (read by the data paths) ---------------------------------------------------------------

    @Override
    public long negotiated() {
        return acked;
    }

    @Override
    public int headerLength() {
        return headerLength;
    }

    @Override
    public RxFilter rxFilter() {
        return filter;
    }

    @Override
    public long guestOffloads() {
        return guestOffloads;
    }

    @Override
    public int activePairs() {
        return activePairs;
    }

    @Override
    public void needsReset(int queueIndex, String reason) {
        needsReset = true;
        LOG.log(System.Logger.Level.ERROR, "virtio-net: queue " + queueIndex + " unusable, device NEEDS_RESET: "
                + reason);
        configChangeListener.run();
    }

    @Override
    public LogOnce logOnce() {
        return logOnce;
    }

    /**
     * The link is up while every pair's backend has its host side (5.1.4: VIRTIO_NET_S_LINK_UP in status). The
     * guest sees it where this device's config space is the guest's: under vhost-user the front-end keeps its own
     * status field and does not read ours (docs/faults.md).
     */
    @Override
    public void backendAttachmentChanged() {
        boolean all = true;
        for (NetBackend b : backends) {
            all &= b.attached();
        }
        if (all != linkUp) {
            LOG.log(System.Logger.Level.INFO, "virtio-net: link " + (all ? "up" : "down") + " (backend "
                    + backends[0].name() + (all ? " attached again)" : " lost its host side)"));
        }
        setLinkUp(all);
    }

    // ---- ControlCommands (from the control queue, on pair 0's thread) -----------------------------------------

    @Override
    public boolean setRxMode(int command, boolean on) {
        filter = filter.withMode(command, on);
        return true;
    }

    @Override
    public boolean setMacTables(long[] unicast, long[] multicast) {
        filter = filter.withTables(unicast, multicast);
        return true;
    }

    @Override
    public boolean setMacAddress(byte[] newMac) {
        if ((newMac[0] & 1) != 0) {
            logOnce.warn("ctrl-mac-multicast", "control queue: MAC_ADDR_SET to a multicast address refused");
            return false;
        }
        mac = newMac.clone();
        filter = filter.withMac(newMac);
        return true;
    }

    @Override
    public boolean setVlan(int vid, boolean add) {
        filter = filter.withVlan(vid, add);
        return true;
    }

    @Override
    public boolean announceAck() {
        announcing = false;
        return true;
    }

    @Override
    public boolean setQueuePairs(int n) {
        // 5.1.6.5.5.1: 1 <= virtqueue_pairs <= max_virtqueue_pairs, else the device MUST reply ERR.
        if (n < 1 || n > pairs) {
            logOnce.warn("ctrl-mq", "control queue: MQ_VQ_PAIRS_SET " + n + " is outside 1.." + pairs);
            return false;
        }
        activePairs = n;
        for (int p = 0; p < pairs; p++) {
            syncBackendEnabled(p);
        }
        queues.wakeAll();
        return true;
    }

    @Override
    public boolean setGuestOffloads(long offloads) {
        String wrong = FeatureRules.checkGuestOffloads(offloads, acked);
        if (wrong != null) {
            logOnce.warn("ctrl-offloads", "control queue: GUEST_OFFLOADS_SET refused: " + wrong);
            return false;
        }
        for (NetBackend b : backends) {
            try {
                b.setGuestOffloads(offloads);
            } catch (IOException e) {
                LOG.log(System.Logger.Level.WARNING, "backend " + b.name() + " refused guest offloads "
                        + VirtioNetFeature.names(offloads) + ": " + e.getMessage());
                return false;
            }
        }
        guestOffloads = offloads;
        return true;
    }
}
