package org.virtionetd.virtio.net;

import org.virtionetd.virtio.queue.DescriptorChain;
import org.virtionetd.virtio.queue.QueueException;
import org.virtionetd.virtio.queue.Virtqueue;

import java.io.IOException;

/**
 * The transmit queue of one pair (5.1.6.2): pops chains in bursts, copies and validates the vnet header, hands
 * header + guest-memory views of the frame to the backend, returns every chain with length 0 (the device writes
 * nothing into TX buffers) and notifies once per burst.
 */
final class TxPath {
    private static final int MAX_FRAME = Packet.MAX_FRAME_LENGTH;
    private static final int MAX_SLICES = 256;

    private final Virtqueue queue;
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

    TxPath(Virtqueue queue, NetBackend backend, NetCounters counters, DeviceContext device) {
        this.queue = queue;
        this.queueIndex = queue.index();
        this.backend = backend;
        this.counters = counters;
        this.device = device;
        this.chain = new DescriptorChain(queue.size());
        this.reader = new ChainReader(queue.memory(), MAX_SLICES);
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
        while (done < burst) {
            try {
                if (!queue.pop(chain)) {
                    break;
                }
            } catch (QueueException e) {
                if (e.kind().fatal()) {
                    // The ring itself lies, so nothing can be returned safely.
                    counters.needsReset.increment();
                    device.needsReset(queueIndex, e.getMessage());
                    done = -1;
                    break;
                }
                counters.invalidChains.increment();
                device.logOnce().warn("tx-chain-" + e.kind(), "TX queue " + queueIndex + ": " + e.getMessage());
                queue.addUsed(chain, 0);
                done++;
                continue;
            }
            transmit(hdrLen, negotiated);
            done++;
        }
        if (burstPackets != 0) {
            counters.txPackets.add(burstPackets);
            counters.txBytes.add(burstBytes);
            burstPackets = 0;
            burstBytes = 0;
        }
        if (done != 0) {
            queue.publishUsedAndNotify(counters);
        }
        return done;
    }

    /** Hands the frame of the chain just popped to the backend and returns the chain. */
    private void transmit(int hdrLen, long negotiated) {
        int head = chain.head();
        long readable = chain.readableBytes();
        if (chain.readableCount() != chain.count() || readable < hdrLen || readable - hdrLen > MAX_FRAME) {
            counters.txBadChain.increment();
            device.logOnce().warn("tx-bad-chain", "TX queue " + queueIndex + ": chain " + head + " has "
                    + readable + " readable bytes and " + (chain.count() - chain.readableCount())
                    + " writable descriptors; expected a " + hdrLen + "-byte header and at most " + MAX_FRAME
                    + " frame bytes, all device-readable");
            queue.addUsed(chain, 0);
            return;
        }
        packet.reset(hdrLen, true);
        // The header is copied so that the guest cannot change it between validation and use.
        if (!reader.copyPrefix(chain, packet.headerBuffer(), hdrLen)) {
            counters.txBadChain.increment();
            queue.addUsed(chain, 0);
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
            queue.addUsed(chain, 0);
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
            queue.addUsed(chain, 0);
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
        queue.addUsed(chain, 0);
    }
}
