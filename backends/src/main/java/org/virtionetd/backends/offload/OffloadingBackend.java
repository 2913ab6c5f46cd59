package org.virtionetd.backends.offload;

import org.virtionetd.virtio.net.EthernetFrame;
import org.virtionetd.virtio.net.GuestOffloadRule;
import org.virtionetd.virtio.net.HeaderCheck;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * A backend that can take every offload, wrapped around one that may not: offloads travel with the packet as
 * far as they can and are done in software only at the port that cannot carry them (the README's "Offload
 * metadata travels with the packet").
 *
 * <p>TX (guest to inner): a packet whose offload the inner was configured to carry
 * ({@link HeaderCheck#offloadsCarried}) goes to the inner unchanged, its virtio_net_hdr included; otherwise
 * {@link SoftwareOffload} completes the checksum / segments it and each result goes to the inner as a plain packet
 * (all-zero header).
 *
 * <p>RX (inner to guest): a frame that asks for an offload the guest did not accept ({@link GuestOffloadRule},
 * 5.1.6.4.1) is completed / segmented into {@link PendingFrames}, handed out one per {@link #receive} call.
 * {@link #peekLength()} reports the next pending frame, so a device that drains until peekLength() is 0 takes them
 * all. When the inner can only deliver what the guest accepts, frames go straight into the guest's buffers (no
 * copy) and are only checked.
 *
 * <p>Event-loop thread only (as {@link NetBackend}); no allocation per packet.
 */
public final class OffloadingBackend implements NetBackend {
    private static final System.Logger LOG = System.getLogger(OffloadingBackend.class.getName());
    private static final long ALL_HOST = VirtioNetFeature.HOST_OFFLOADS;

    private final NetBackend inner;
    private final SoftwareOffload engine = new SoftwareOffload();
    private final OffloadCounters counters = new OffloadCounters();
    private final boolean[] txLogged = new boolean[OffloadResult.values().length];
    private final boolean[] rxLogged = new boolean[OffloadResult.values().length];

    private long innerConfigured;
    private long guestAccepts;
    private int headerLength = VirtioNetHeader.LENGTH_MRG;

    // TX: produced frames go to the inner in this packet.
    private final Packet plain = new Packet(1);
    private final FrameSink txSink = this::sendPlain;
    private IOException innerFailure;

    // RX: a received frame (header first) waits in staging; what the guest gets waits in pending.
    private final ByteBuffer staging = ByteBuffer.allocateDirect(VirtioNetHeader.LENGTH_MRG
            + SoftwareOffload.MAX_FRAME_LENGTH).order(ByteOrder.LITTLE_ENDIAN);
    private final ByteBuffer[] stagingSlices = {staging};
    private final ByteBuffer stagedFrame = staging.duplicate();
    private final VirtioNetHeader stagedHeader = new VirtioNetHeader(staging, 0);
    private final PendingFrames pending = new PendingFrames(engine, new PendingFrames.Counts(
            counters.rxChecksumsCompleted, counters.rxPacketsSegmented, counters.rxSegmentsMade,
            counters.rxDroppedNoRoom, counters::rxDrops));

    public OffloadingBackend(NetBackend inner) {
        this.inner = inner;
    }

    public NetBackend inner() {
        return inner;
    }

    public OffloadCounters counters() {
        return counters;
    }

    @Override
    public String name() {
        return "offload+" + inner.name();
    }

    /** Every HOST_* offload and CSUM (done in software when the inner cannot), plus the inner's GUEST_* bits. */
    @Override
    public long capabilities() {
        return ALL_HOST | (inner.capabilities() & VirtioNetFeature.GUEST_OFFLOADS);
    }

    /**
     * The inner is configured with the negotiated features minus the offloads it cannot carry, so it never sees
     * a promise it cannot keep; packets needing those are done here.
     */
    @Override
    public void configure(long negotiatedFeatures, int vnetHeaderLength) throws IOException {
        VirtioNetHeader.requireLength(vnetHeaderLength, name());
        long innerCaps = inner.capabilities();
        this.innerConfigured = negotiatedFeatures & ~(VirtioNetFeature.OFFLOADS & ~innerCaps);
        this.guestAccepts = negotiatedFeatures & VirtioNetFeature.GUEST_OFFLOADS;
        this.headerLength = vnetHeaderLength;
        pending.headerLength(vnetHeaderLength);
        pending.clear();
        inner.configure(innerConfigured, vnetHeaderLength);
    }

    @Override
    public void setGuestOffloads(long guestOffloads) throws IOException {
        this.guestAccepts = guestOffloads & VirtioNetFeature.GUEST_OFFLOADS;
        long forInner = guestOffloads & inner.capabilities() & VirtioNetFeature.GUEST_OFFLOADS;
        this.innerConfigured = (innerConfigured & ~VirtioNetFeature.GUEST_OFFLOADS) | forInner;
        inner.setGuestOffloads(forInner);
    }

    /** The features the inner backend was configured with (negotiated minus what it cannot carry). */
    public long innerConfigured() {
        return innerConfigured;
    }

    // ---------------------------------------------------------------- TX

    @Override
    public boolean send(Packet packet) throws IOException {
        VirtioNetHeader h = packet.header();
        int flags = h.flags();
        int gso = h.gsoType();
        if (innerCarries(flags, gso)) {
            counters.txPassedThrough.increment();
            return inner.send(packet);
        }
        innerFailure = null;
        OffloadResult r = engine.process(packet, txSink);
        if (innerFailure != null) {
            IOException e = innerFailure;
            innerFailure = null;
            throw e;
        }
        if (r == OffloadResult.OK) {
            if ((gso & ~VirtioNetHeader.GSO_ECN) != VirtioNetHeader.GSO_NONE) {
                counters.txPacketsSegmented.increment();
                counters.txSegmentsMade.add(engine.lastOutputCount());
            } else {
                counters.txChecksumsCompleted.increment();
            }
            return true;
        }
        if (r == OffloadResult.SINK_REFUSED) {
            counters.txInnerRefused.increment();
            return false;
        }
        counters.txDrops(r).increment();
        logOnce(txLogged, r, "TX", h);
        return false;
    }

    /** The inner was configured with the features this packet's header needs (5.1.6.2.1). */
    private boolean innerCarries(int flags, int gso) {
        return HeaderCheck.offloadsCarried(innerConfigured, flags, gso) == HeaderCheck.Verdict.OK;
    }

    private boolean sendPlain(ByteBuffer frame) {
        plain.reset(headerLength);
        plain.add(frame);
        try {
            return inner.send(plain);
        } catch (IOException e) {
            innerFailure = e;
            return false;
        }
    }

    // ---------------------------------------------------------------- RX

    /** The inner may deliver offloads the guest does not accept, so every frame is staged and looked at. */
    private boolean mustStage() {
        return (inner.capabilities() & VirtioNetFeature.GUEST_OFFLOADS & ~guestAccepts) != 0;
    }

    @Override
    public int peekLength() throws IOException {
        if (!pending.isEmpty()) {
            return pending.nextLength();
        }
        if (!mustStage()) {
            return inner.peekLength();
        }
        fillPending();
        return pending.isEmpty() ? 0 : pending.nextLength();
    }

    @Override
    public int receive(ByteBuffer[] slices, int count) throws IOException {
        if (pending.isEmpty()) {
            if (mustStage()) {
                fillPending();
            } else {
                savePositions(slices, count);
                int n = inner.receive(slices, count);
                if (n <= 0) {
                    return n;
                }
                if (guestAcceptsFrameIn(slices, count, n)) {
                    counters.rxPassedThrough.increment();
                    return n;
                }
                // The inner broke its promise (or cannot keep one): redo it here from a copy.
                staging.clear();
                gather(slices, savedPositions, count, staging, n);
                restorePositions(slices, count);
                processStaged(n);
            }
        }
        while (!pending.isEmpty()) {
            int len = pending.deliver(slices, count);
            if (len >= 0) {
                return len;
            }
        }
        return 0;
    }

    /** Moves frames from the inner into pending until one is there or the inner has none. */
    private void fillPending() throws IOException {
        while (pending.isEmpty() && inner.peekLength() > 0) {
            staging.clear();
            int n = inner.receive(stagingSlices, 1);
            if (n <= 0) {
                return;
            }
            processStaged(n);
        }
    }

    /** staging[0, length) holds header + frame from the inner; queue what the guest may get. */
    private void processStaged(int length) {
        if (length < headerLength) {
            counters.rxDrops(OffloadResult.FRAME_TOO_SHORT).increment();
            return;
        }
        int flags = stagedHeader.flags();
        int gso = stagedHeader.gsoType();
        int ipVersion = EthernetFrame.ipVersionOf(staging, headerLength, Math.min(length - headerLength, 64));
        stagedFrame.limit(length).position(headerLength);
        if (guestAccepts(flags, gso, ipVersion)) {
            counters.rxPassedThrough.increment();
            pending.copy(staging, 0, length);
            return;
        }
        OffloadResult r = pending.complete(stagedFrame, stagedHeader);
        if (r != OffloadResult.OK) {
            logOnce(rxLogged, r, "RX", stagedHeader);
        }
    }

    /**
     * The guest may get this header as it is ({@link GuestOffloadRule}; DATA_VALID without GUEST_CSUM goes on, the
     * device clears it).
     */
    private boolean guestAccepts(int flags, int gso, int ipVersion) {
        return GuestOffloadRule.verdict(guestAccepts, flags, gso, ipVersion).deliverable();
    }

    // A small look at a frame delivered straight into the guest's buffers.
    private final ByteBuffer peek = ByteBuffer.allocateDirect(VirtioNetHeader.LENGTH_MRG + 64)
            .order(ByteOrder.LITTLE_ENDIAN);
    private final VirtioNetHeader peekHeader = new VirtioNetHeader(peek, 0);

    private boolean guestAcceptsFrameIn(ByteBuffer[] slices, int count, int length) {
        int n = Math.min(length, peek.capacity());
        peek.clear();
        gather(slices, savedPositions, count, peek, n);
        if (n < headerLength) {
            return true; // nothing to do; the device judges a short frame
        }
        return guestAccepts(peekHeader.flags(), peekHeader.gsoType(),
                EthernetFrame.ipVersionOf(peek, headerLength, n - headerLength));
    }

    private int[] savedPositions = new int[64];

    /** The inner may move positions while it writes; the frame is read back from where it started. */
    private void savePositions(ByteBuffer[] slices, int count) {
        if (savedPositions.length < count) {
            savedPositions = new int[count]; // once per larger chain shape, not per packet
        }
        for (int i = 0; i < count; i++) {
            savedPositions[i] = slices[i].position();
        }
    }

    private void restorePositions(ByteBuffer[] slices, int count) {
        for (int i = 0; i < count; i++) {
            slices[i].position(savedPositions[i]);
        }
    }

    /**
     * Copies the first {@code length} bytes written into {@code slices[0, count)} from {@code positions[i]} on
     * (where they were before the inner wrote) into {@code dst[0, length)}.
     */
    private static void gather(ByteBuffer[] slices, int[] positions, int count, ByteBuffer dst, int length) {
        int done = 0;
        for (int i = 0; i < count && done < length; i++) {
            ByteBuffer s = slices[i];
            int n = Math.min(s.limit() - positions[i], length - done);
            dst.put(done, s, positions[i], n);
            done += n;
        }
    }

    /** What is pending here (the rest of one frame) and what the inner holds. */
    @Override
    public int discardQueued(int limit) throws IOException {
        int n = pending.isEmpty() ? 0 : 1;
        pending.clear();
        return n + inner.discardQueued(limit);
    }

    @Override
    public int receiveReadyFd() {
        return inner.receiveReadyFd();
    }

    @Override
    public void setEnabled(boolean enabled) throws IOException {
        inner.setEnabled(enabled);
    }

    @Override
    public List<String> programmedOffloads() {
        return inner.programmedOffloads();
    }

    @Override
    public boolean attached() {
        return inner.attached();
    }

    @Override
    public void checkAttachment() {
        inner.checkAttachment();
    }

    @Override
    public boolean reattach() {
        if (!inner.reattach()) {
            return false;
        }
        pending.clear(); // frames staged before the loss belong to the old interface
        return true;
    }

    @Override
    public void close() {
        inner.close();
    }

    private void logOnce(boolean[] logged, OffloadResult r, String direction, VirtioNetHeader h) {
        if (!logged[r.ordinal()]) {
            logged[r.ordinal()] = true;
            LOG.log(System.Logger.Level.WARNING, () -> name() + ": " + direction + " frame dropped: " + r + " ("
                    + h + "); further drops for this reason are only counted");
        }
    }
}
