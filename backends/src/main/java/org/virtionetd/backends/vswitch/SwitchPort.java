package org.virtionetd.backends.vswitch;

import org.virtionetd.backends.offload.FrameLayout;
import org.virtionetd.backends.offload.FrameSink;
import org.virtionetd.backends.offload.OffloadResult;
import org.virtionetd.backends.offload.SoftwareOffload;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * A device's port on a {@link VirtualSwitch}: the device's backend. What the device sends is switched to other
 * ports with its virtio_net_hdr; what other ports send arrives in this port's {@link PortRing}.
 *
 * <p>Metadata (design: "keep the metadata with the packet; segment and checksum only at the port that cannot take
 * it"): the port can carry every offload, so it offers its device all of HOST_*, CSUM and GUEST_*. When a frame is
 * delivered, its header is compared with what THIS port's driver accepted (the GUEST_* bits of configure() and of
 * CTRL_GUEST_OFFLOADS_SET, 5.1.6.5.6.1): a frame whose offloads are all accepted goes to the guest as it is (a
 * 64 KiB GSO frame with a partial checksum, 5.1.6.4); any other is segmented / checksummed by
 * {@link SoftwareOffload} into plain frames with an all-zero header. A frame with metadata the driver did not
 * accept is never delivered with it (5.1.6.3: the device MUST NOT set NEEDS_CSUM / a gso_type without the
 * matching GUEST_* feature), nor stripped of it with its checksum left partial.
 *
 * <p>Threads: {@link #send} and the receive calls run on this port's device loop; {@link #enqueue} runs on the
 * other ports' loops (the ring is safe for that). Nothing is allocated per frame.
 */
public final class SwitchPort implements NetBackend {
    static final int PENDING_BYTES = 256 * 1024;
    static final int PENDING_FRAMES = 256;
    private static final System.Logger LOG = System.getLogger(SwitchPort.class.getName());
    private static final int ETH_HLEN = 14;
    private static final int ETH_P_8021Q = 0x8100;
    private static final int ETH_P_8021AD = 0x88a8;

    private final VirtualSwitch sw;
    private final int index;
    private final String portName;
    private final VlanSet vlans;
    private final boolean offloads;
    private final PortRing ring;
    private final SwitchCounters counters = new SwitchCounters();

    private volatile long guestAccepts;
    private volatile int headerLength = VirtioNetHeader.LENGTH_MRG;
    private volatile boolean closed;

    // Send side (this port's loop thread).
    private final byte[] l2 = new byte[ETH_HLEN + 4];

    // Receive side (this port's loop thread): views over the ring's store, the engine and its outputs.
    private final ByteBuffer frameView;
    private final VirtioNetHeader recordHeader;
    private final SoftwareOffload engine = new SoftwareOffload();
    private final ByteBuffer pendingStore = ByteBuffer.allocateDirect(PENDING_BYTES);
    private final int[] pendingOffset = new int[PENDING_FRAMES];
    private final int[] pendingLength = new int[PENDING_FRAMES];
    private int pendingHead;
    private int pendingCount;
    private int pendingWrite;
    private final FrameSink pendingSink = this::queuePending;
    private final boolean[] logged = new boolean[OffloadResult.values().length];

    SwitchPort(VirtualSwitch sw, int index, String portName, VlanSet vlans, boolean offloads, PortRing ring) {
        this.sw = sw;
        this.index = index;
        this.portName = portName;
        this.vlans = vlans;
        this.offloads = offloads;
        this.ring = ring;
        this.frameView = ring.store().duplicate(); // big-endian; frames are read with absolute gets only
        this.recordHeader = new VirtioNetHeader(ring.store().duplicate().order(ByteOrder.LITTLE_ENDIAN), 0);
    }

    public VirtualSwitch virtualSwitch() {
        return sw;
    }

    int index() {
        return index;
    }

    public String portName() {
        return portName;
    }

    public VlanSet vlans() {
        return vlans;
    }

    public SwitchCounters counters() {
        return counters;
    }

    /** The GUEST_* offloads this port's driver accepts now. */
    public long guestAccepts() {
        return guestAccepts;
    }

    /** Frames waiting in this port's receive ring. */
    public int queued() {
        return ring.size();
    }

    @Override
    public String name() {
        return "switch:" + sw.name() + "/" + portName;
    }

    /** Every offload (the switch carries the metadata), or none for a port opened with no-offload. */
    @Override
    public long capabilities() {
        return offloads ? VirtioNetFeature.OFFLOADS : 0;
    }

    @Override
    public void configure(long negotiatedFeatures, int vnetHeaderLength) {
        VirtioNetHeader.requireLength(vnetHeaderLength, "port " + name());
        headerLength = vnetHeaderLength;
        guestAccepts = negotiatedFeatures & capabilities() & VirtioNetFeature.GUEST_OFFLOADS;
        clearPending();
    }

    @Override
    public void setGuestOffloads(long offloads) {
        guestAccepts = offloads & capabilities() & VirtioNetFeature.GUEST_OFFLOADS;
    }

    // ------------------------------------------------------------------ into the switch

    @Override
    public boolean send(Packet packet) {
        int length = packet.frameLength();
        return switchFrame(packet.header(), packet.slices(), 1, packet.count(), length);
    }

    /**
     * Switches the frame in {@code slices[from, to)} ({@code length} bytes, metadata in {@code header}) as if
     * this port's device had sent it; the uplink uses it for what its tap receives.
     */
    boolean switchFrame(VirtioNetHeader header, ByteBuffer[] slices, int from, int to, int length) {
        if (length < ETH_HLEN) {
            counters.txFrames.increment();
            counters.txDroppedInvalid.increment();
            return false;
        }
        int got = 0;
        for (int i = from; i < to && got < l2.length; i++) {
            ByteBuffer s = slices[i];
            int n = Math.min(s.remaining(), l2.length - got);
            s.get(s.position(), l2, got, n);
            got += n;
        }
        long dst = mac(0);
        long src = mac(6);
        if ((src & (1L << 40)) != 0) {
            // A multicast source address is invalid (IEEE 802.3 3.2.3); learning it would misdirect traffic.
            counters.txFrames.increment();
            counters.txDroppedInvalid.increment();
            return false;
        }
        int vid = 0;
        int type = u16(12);
        if ((type == ETH_P_8021Q || type == ETH_P_8021AD) && got >= ETH_HLEN + 4) {
            vid = u16(14) & 0xfff;
        }
        return sw.forward(this, dst, src, vid, header, slices, from, to, length);
    }

    private long mac(int at) {
        long v = 0;
        for (int i = 0; i < 6; i++) {
            v = (v << 8) | (l2[at + i] & 0xff);
        }
        return v;
    }

    private int u16(int at) {
        return ((l2[at] & 0xff) << 8) | (l2[at + 1] & 0xff);
    }

    /** Called by the switch on the sender's thread: queue a copy for this port. */
    boolean enqueue(VirtioNetHeader header, ByteBuffer[] slices, int from, int to, int length) {
        if (ring.offer(header, slices, from, to, length)) {
            counters.rxEnqueued.increment();
            return true;
        }
        counters.rxDroppedRingFull.increment();
        return false;
    }

    // ------------------------------------------------------------------ out of the switch

    @Override
    public int peekLength() {
        while (pendingCount == 0) {
            int off = ring.headOffset();
            if (off < 0) {
                return 0;
            }
            int len = ring.headFrameLength();
            if (accepted(off, len)) {
                return headerLength + len;
            }
            complete(off, len);
            ring.release();
        }
        return headerLength + pendingLength[pendingHead];
    }

    @Override
    public int receive(ByteBuffer[] slices, int count) {
        int hl = headerLength;
        while (pendingCount == 0) {
            int off = ring.headOffset();
            if (off < 0) {
                return 0;
            }
            int len = ring.headFrameLength();
            if (!accepted(off, len)) {
                complete(off, len);
                ring.release();
                continue;
            }
            int n = hl + len;
            if (room(slices, count) < n) {
                counters.rxDroppedNoRoom.increment();
                ring.release();
                continue;
            }
            // The header as the sender gave it (10 or 12 bytes; num_buffers is 0 and set by the device).
            int at = scatter(ring.store(), off, hl, slices, count, 0);
            scatter(ring.store(), off + PortRing.HEADER_BYTES, len, slices, count, at);
            ring.release();
            counters.rxPassedThrough.increment();
            return n;
        }
        int off = pendingOffset[pendingHead];
        int len = pendingLength[pendingHead];
        pendingHead++;
        pendingCount--;
        if (pendingCount == 0) {
            clearPending();
        }
        if (room(slices, count) < hl + len) {
            counters.rxDroppedNoRoom.increment();
            return receive(slices, count);
        }
        int at = zero(hl, slices, count);
        scatter(pendingStore, off, len, slices, count, at);
        return hl + len;
    }

    /** This port's driver accepted every offload the record at {@code off} carries (5.1.6.3 / 5.1.6.4). */
    private boolean accepted(int off, int len) {
        ByteBuffer s = ring.store();
        int flags = s.get(off + VirtioNetHeader.FLAGS_OFFSET) & 0xff;
        int gso = s.get(off + VirtioNetHeader.GSO_TYPE_OFFSET) & 0xff;
        if (flags == 0 && gso == VirtioNetHeader.GSO_NONE) {
            return true;
        }
        int ip = (gso & ~VirtioNetHeader.GSO_ECN) == VirtioNetHeader.GSO_UDP_L4
                ? FrameLayout.ipVersionOf(frameView, off + PortRing.HEADER_BYTES, Math.min(len, 64)) : 0;
        return accepts(guestAccepts, flags, gso, ip);
    }

    /**
     * Whether a driver that accepted {@code guestOffloads} may receive a frame with these header fields
     * (5.1.6.3: NEEDS_CSUM needs GUEST_CSUM, each gso_type its GUEST_TSO4/TSO6/UFO/USO4/USO6, ECN GUEST_ECN).
     */
    static boolean accepts(long guestOffloads, int flags, int gso, int ipVersion) {
        if ((flags & VirtioNetHeader.F_NEEDS_CSUM) != 0 && !VirtioNetFeature.has(guestOffloads, VirtioNetFeature.GUEST_CSUM)) {
            return false;
        }
        if ((gso & VirtioNetHeader.GSO_ECN) != 0 && !VirtioNetFeature.has(guestOffloads, VirtioNetFeature.GUEST_ECN)) {
            return false;
        }
        int proto = gso & ~VirtioNetHeader.GSO_ECN;
        if (proto == VirtioNetHeader.GSO_NONE) {
            return true;
        }
        long needed = VirtioNetFeature.guestFeaturesFor(proto);
        if (proto == VirtioNetHeader.GSO_UDP_L4) {
            // Here the frame is known: USO needs the feature of its own IP version (an unknown version: none).
            needed = ipVersion == 0 ? 0 : 1L << (ipVersion == 6 ? VirtioNetFeature.GUEST_USO6 : VirtioNetFeature.GUEST_USO4);
        }
        return (guestOffloads & needed) != 0;
    }

    /** Segments / checksums the record at {@code off} into the pending frames; drops and counts a bad one. */
    private void complete(int off, int len) {
        int start = off + PortRing.HEADER_BYTES;
        frameView.clear();
        frameView.position(start).limit(start + len);
        recordHeader.wrap(recordHeader.buffer(), off);
        int gso = recordHeader.gsoType() & ~VirtioNetHeader.GSO_ECN;
        OffloadResult r = engine.process(frameView, recordHeader, pendingSink);
        if (r == OffloadResult.OK) {
            if (gso != VirtioNetHeader.GSO_NONE) {
                counters.rxPacketsSegmented.increment();
                counters.rxSegmentsMade.add(engine.lastOutputCount());
            } else {
                counters.rxChecksumsCompleted.increment();
            }
            return;
        }
        if (r == OffloadResult.SINK_REFUSED) {
            r = OffloadResult.TOO_MANY_SEGMENTS;
        }
        clearPending(); // all or nothing: a frame half segmented is not delivered
        counters.rxOffloadDrops(r).increment();
        if (!logged[r.ordinal()]) {
            logged[r.ordinal()] = true;
            LOG.log(System.Logger.Level.WARNING, "port " + name() + ": dropped a frame the software engine cannot "
                    + "complete (" + r + ", " + recordHeader + "); further drops for this reason are only counted");
        }
    }

    private boolean queuePending(ByteBuffer frame) {
        int len = frame.remaining();
        if (pendingHead + pendingCount == PENDING_FRAMES || pendingWrite + len > PENDING_BYTES) {
            return false;
        }
        pendingStore.put(pendingWrite, frame, frame.position(), len);
        int slot = pendingHead + pendingCount;
        pendingOffset[slot] = pendingWrite;
        pendingLength[slot] = len;
        pendingCount++;
        pendingWrite += len;
        return true;
    }

    private void clearPending() {
        pendingHead = 0;
        pendingCount = 0;
        pendingWrite = 0;
    }

    private static int room(ByteBuffer[] slices, int count) {
        long r = 0;
        for (int i = 0; i < count; i++) {
            r += slices[i].remaining();
        }
        return (int) Math.min(r, Integer.MAX_VALUE);
    }

    /**
     * Writes {@code src[off, off + length)} into the slices, starting {@code skip} bytes after their positions
     * (absolute puts; positions kept, as a readv into guest memory). Returns skip + length.
     */
    private static int scatter(ByteBuffer src, int off, int length, ByteBuffer[] slices, int count, int skip) {
        int done = 0;
        int at = 0;
        for (int i = 0; i < count && done < length; i++) {
            ByteBuffer s = slices[i];
            int r = s.remaining();
            if (at + r <= skip) {
                at += r;
                continue;
            }
            int within = Math.max(0, skip - at);
            int n = Math.min(r - within, length - done);
            s.put(s.position() + within, src, off + done, n);
            done += n;
            at += r;
        }
        return skip + length;
    }

    /** Writes {@code length} zero bytes (an all-zero vnet header) at the start of the slices; returns length. */
    private static int zero(int length, ByteBuffer[] slices, int count) {
        int done = 0;
        for (int i = 0; i < count && done < length; i++) {
            ByteBuffer s = slices[i];
            int n = Math.min(s.remaining(), length - done);
            for (int k = 0; k < n; k++) {
                s.put(s.position() + k, (byte) 0);
            }
            done += n;
        }
        return length;
    }

    @Override
    public int receiveReadyFd() {
        return ring.readyFd();
    }

    @Override
    public List<String> programmedOffloads() {
        return List.of("switch " + sw.name() + " port " + portName + " delivers "
                + (guestAccepts == 0 ? "no offloads" : String.join(" ", VirtioNetFeature.names(guestAccepts))));
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            sw.detach(this);
            ring.close();
        }
    }

    @Override
    public String toString() {
        return name();
    }
}
