package org.virtionetd.backends.vswitch;

import org.virtionetd.backends.offload.OffloadResult;
import org.virtionetd.backends.offload.PendingFrames;
import org.virtionetd.backends.offload.SoftwareOffload;
import org.virtionetd.virtio.net.EthernetFrame;
import org.virtionetd.virtio.net.GuestOffloadRule;
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
 * <p>Metadata (the README's "Offload metadata travels with the packet"): the port can carry every offload, so it
 * offers its device all of HOST_*, CSUM and GUEST_*. When a frame is delivered, its header is compared with what
 * THIS port's driver accepted (the GUEST_* bits of configure() and of CTRL_GUEST_OFFLOADS_SET, 5.1.6.5.6.1) by
 * {@link GuestOffloadRule}: a frame whose offloads are all accepted goes to the guest as it is (a 64 KiB GSO frame
 * with a partial checksum, 5.1.6.4); any other is segmented / checksummed by {@link SoftwareOffload} into
 * {@link PendingFrames}, plain frames with an all-zero header. A frame with metadata the driver did not accept is
 * never delivered with it (5.1.6.4.1: the device MUST NOT set NEEDS_CSUM / a gso_type without the matching GUEST_*
 * feature), nor stripped of it with its checksum left partial.
 *
 * <p>Threads: {@link #send} and the receive calls run on this port's device loop; {@link #enqueue} runs on the
 * other ports' loops (the ring is safe for that). Nothing is allocated per frame.
 */
public final class SwitchPort implements NetBackend {
    private static final System.Logger LOG = System.getLogger(SwitchPort.class.getName());
    private static final int ETH_HLEN = EthernetFrame.ETH_HLEN;

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
    private final PendingFrames pending = new PendingFrames(new SoftwareOffload(), new PendingFrames.Counts(
            counters.rxChecksumsCompleted, counters.rxPacketsSegmented, counters.rxSegmentsMade,
            counters.rxDroppedNoRoom, counters::rxOffloadDrops));
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
        pending.headerLength(vnetHeaderLength);
        pending.clear();
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
        if (EthernetFrame.isVlanTag(type) && got >= ETH_HLEN + 4) {
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
        while (pending.isEmpty()) {
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
        return pending.nextLength();
    }

    @Override
    public int receive(ByteBuffer[] slices, int count) {
        int hl = headerLength;
        while (pending.isEmpty()) {
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
            if (PendingFrames.room(slices, count) < n) {
                counters.rxDroppedNoRoom.increment();
                ring.release();
                continue;
            }
            // The header as the sender gave it (10 or 12 bytes; num_buffers is 0 and set by the device).
            int at = PendingFrames.scatter(ring.store(), off, hl, slices, count, 0);
            PendingFrames.scatter(ring.store(), off + PortRing.HEADER_BYTES, len, slices, count, at);
            ring.release();
            counters.rxPassedThrough.increment();
            return n;
        }
        int n = pending.deliver(slices, count);
        return n >= 0 ? n : receive(slices, count); // dropped for want of room: the next frame
    }

    /**
     * This port's driver may get the record at {@code off} with its header as it is ({@link GuestOffloadRule};
     * DATA_VALID without GUEST_CSUM goes on, the device clears it).
     */
    private boolean accepted(int off, int len) {
        ByteBuffer s = ring.store();
        int flags = s.get(off + VirtioNetHeader.FLAGS_OFFSET) & 0xff;
        int gso = s.get(off + VirtioNetHeader.GSO_TYPE_OFFSET) & 0xff;
        int ip = GuestOffloadRule.needsIpVersion(gso)
                ? EthernetFrame.ipVersionOf(frameView, off + PortRing.HEADER_BYTES, Math.min(len, 64)) : 0;
        return GuestOffloadRule.verdict(guestAccepts, flags, gso, ip).deliverable();
    }

    /** Segments / checksums the record at {@code off} into the pending frames; drops and counts a bad one. */
    private void complete(int off, int len) {
        int start = off + PortRing.HEADER_BYTES;
        frameView.clear();
        frameView.position(start).limit(start + len);
        recordHeader.wrap(recordHeader.buffer(), off);
        OffloadResult r = pending.complete(frameView, recordHeader); // all or nothing
        if (r != OffloadResult.OK && !logged[r.ordinal()]) {
            logged[r.ordinal()] = true;
            LOG.log(System.Logger.Level.WARNING, "port " + name() + ": dropped a frame the software engine cannot "
                    + "complete (" + r + ", " + recordHeader + "); further drops for this reason are only counted");
        }
    }

    /**
     * The switch forwards to a port whether or not a driver runs its device: what the ring holds (and the rest of
     * a frame pending here) is dropped in one step.
     */
    @Override
    public int discardQueued(int limit) {
        int n = pending.isEmpty() ? 0 : 1;
        pending.clear();
        return n + ring.clear();
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
