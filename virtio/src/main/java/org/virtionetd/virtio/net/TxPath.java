package org.virtionetd.virtio.net;

import org.virtionetd.virtio.queue.DescriptorChain;
import org.virtionetd.virtio.queue.DeviceQueue;
import org.virtionetd.virtio.queue.QueueException;
import org.virtionetd.virtio.queue.SplitQueue;

import java.io.IOException;

/**
 * The transmit queue of one pair (5.1.6.2): pops chains in bursts, copies and validates the vnet header, hands
 * header + guest-memory views of the frame to the backend, returns every chain with length 0 (the device writes
 * nothing into TX buffers) and notifies once per burst.
 */
final class TxPath {
    /** The largest frame we accept: 64 KiB of IP plus Ethernet and two VLAN tags (a GSO frame at most). */
    static final int MAX_FRAME = 65535 + 14 + 8;
    private static final int MAX_SLICES = 256;

    private final DeviceQueue queue;
    private final SplitQueue ring;
    private final NetBackend backend;
    private final NetCounters counters;
    private final DeviceContext device;
    private final int queueIndex;
    private final DescriptorChain chain;
    private final ChainReader reader;
    private final Packet packet = new Packet(MAX_SLICES);
    /** Packets and bytes of the current burst, added to the shared counters once per burst. */
    private long burstPackets;
    private long burstBytes;

    TxPath(DeviceQueue queue, NetBackend backend, NetCounters counters, DeviceContext device) {
        this.queue = queue;
        this.queueIndex = queue.index();
        this.ring = queue.ring();
        this.backend = backend;
        this.counters = counters;
        this.device = device;
        this.chain = new DescriptorChain(ring.size());
        this.reader = new ChainReader(ring.memory(), MAX_SLICES);
    }

    /**
     * Processes up to {@code burst} chains. Returns the number processed, or -1 if the ring is unusable
     * (the device was marked NEEDS_RESET).
     */
    int process(int burst) {
        int done = 0;
        // Read once per burst: both change only while the queues are stopped (feature negotiation).
        int hdrLen = device.headerLength();
        long negotiated = device.negotiated();
        try {
            int avail = ring.available();
            int n = Math.min(avail, burst);
            for (int i = 0; i < n; i++) {
                int head = ring.pop();
                transmit(head, hdrLen, negotiated);
                done++;
            }
        } catch (QueueException e) {
            // Only fatal kinds escape transmit(): the ring itself lies, so nothing can be returned safely.
            counters.needsReset.increment();
            device.needsReset(queueIndex, e.getMessage());
            done = -1;
        }
        if (burstPackets != 0) {
            counters.txPackets.add(burstPackets);
            counters.txBytes.add(burstBytes);
            burstPackets = 0;
            burstBytes = 0;
        }
        if (done != 0) {
            ring.publishUsed();
            if (ring.needsNotification()) {
                counters.notifications.increment();
                queue.notifier().notifyUsed();
            } else {
                counters.notificationsSuppressed.increment();
            }
        }
        return done;
    }

    private void transmit(int head, int hdrLen, long negotiated) {
        try {
            ring.walk(head, chain);
        } catch (QueueException e) {
            counters.invalidChains.increment();
            device.logOnce().warn("tx-chain-" + e.kind(), "TX queue " + queueIndex + ": " + e.getMessage());
            ring.addUsed(head, 0);
            return;
        }
        long readable = chain.readableBytes();
        if (chain.readableCount() != chain.count() || readable < hdrLen || readable - hdrLen > MAX_FRAME) {
            counters.txBadChain.increment();
            device.logOnce().warn("tx-bad-chain", "TX queue " + queueIndex + ": chain " + head + " has "
                    + readable + " readable bytes and " + (chain.count() - chain.readableCount())
                    + " writable descriptors; expected a " + hdrLen + "-byte header and at most " + MAX_FRAME
                    + " frame bytes, all device-readable");
            ring.addUsed(head, 0);
            return;
        }
        packet.reset(hdrLen, true);
        // The header is copied so that the guest cannot change it between validation and use.
        if (!reader.copyPrefix(chain, packet.headerBuffer(), hdrLen)) {
            counters.txBadChain.increment();
            ring.addUsed(head, 0);
            return;
        }
        if (hdrLen == VirtioNetHeader.LENGTH_MRG) {
            packet.header().numBuffers(0); // 5.1.6.2: num_buffers is unused on transmit
        }
        int views = reader.views(chain, 0, chain.readableCount(), hdrLen, packet.slices(), 1);
        if (views < 0) {
            counters.txBadChain.increment();
            device.logOnce().warn("tx-too-many-slices", "TX queue " + queueIndex + ": chain " + head
                    + " needs more than " + MAX_SLICES + " buffer pieces");
            ring.addUsed(head, 0);
            return;
        }
        for (int i = 1; i <= views; i++) {
            packet.add(packet.slices()[i]);
        }
        HeaderCheck.Verdict verdict = HeaderCheck.transmitted(packet.header(), negotiated,
                packet.frameLength());
        if (verdict != HeaderCheck.Verdict.OK) {
            counters.txBadHeader.increment();
            device.logOnce().warn("tx-header-" + verdict, "TX queue " + queueIndex + ": dropped a packet whose "
                    + packet.header() + " breaks rule " + verdict + " (frame " + packet.frameLength() + " bytes)");
            ring.addUsed(head, 0);
            return;
        }
        int frameLength = packet.frameLength();
        try {
            if (backend.send(packet)) {
                burstPackets++;
                burstBytes += frameLength;
            } else {
                counters.txDroppedBackend.increment();
            }
        } catch (IOException | RuntimeException e) {
            counters.txDroppedBackend.increment();
            device.logOnce().warn("tx-backend-error", "TX queue " + queueIndex + ": backend " + backend.name()
                    + " failed to send: " + e);
        }
        ring.addUsed(head, 0);
    }
}
