package org.virtionetd.virtio.net;

import org.virtionetd.virtio.device.LogOnce;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.queue.PackedQueue;
import org.virtionetd.virtio.queue.SplitQueue;
import org.virtionetd.virtio.queue.Virtqueue;

import java.nio.ByteBuffer;

/**
 * A transmit and a receive path on a real ring, stepped by hand for benchmarks: the "driver" side publishes one
 * pre-built chain per step by writing the avail ring directly, or for a packed ring (virtio 1.2, 2.8) the
 * descriptor's length, ID and flags (no test-driver overhead); the device side is the production {@link TxPath} /
 * {@link RxPath}.
 */
public final class TxPathBench implements DeviceContext {
    private static final int QUEUE_SIZE = 256;
    private final TxPath tx;
    private final RxPath rx;
    private final ByteBuffer availTx;
    private final ByteBuffer availRx;
    private final int availTxBase;
    private final int availRxBase;
    private int txIdx;
    private int rxIdx;
    private final boolean packed;
    private final ByteBuffer ring;
    private final int txDesc;
    private final int rxDesc;
    private final int txLength;
    private final int rxLength;
    private final LogOnce log = new LogOnce(System.getLogger("bench"), "bench: ");
    private final RxFilter filter = RxFilter.initial(new byte[6], false);
    private final NetBackend sink;

    /** Lays out two split queues and one chain per descriptor slot of {@code frameLength} bytes (+ 12 header). */
    public TxPathBench(GuestMemory memory, int frameLength, NetBackend backend) {
        this(memory, frameLength, backend, false);
    }

    /** As above, with packed rings if {@code packedRing} (VIRTIO_F_RING_PACKED; the same addresses and buffers). */
    public TxPathBench(GuestMemory memory, int frameLength, NetBackend backend, boolean packedRing) {
        this.sink = backend;
        this.packed = packedRing;
        long desc = 0x1000;
        long avail = desc + 16 * QUEUE_SIZE;
        long used = 0x4000;
        long rdesc = 0x10000;
        long ravail = rdesc + 16 * QUEUE_SIZE;
        long rused = 0x14000;
        long data = 0x100000;
        ByteBuffer d = memory.chunk(0);
        for (int i = 0; i < QUEUE_SIZE; i++) {
            long buf = data + (long) i * 0x10000;
            d.putLong((int) desc + 16 * i, buf).putInt((int) desc + 16 * i + 8, 12 + frameLength)
                    .putShort((int) desc + 16 * i + 12, (short) 0);
            d.putLong((int) rdesc + 16 * i, buf + 0x8000).putInt((int) rdesc + 16 * i + 8, 12 + Math.max(frameLength, 1514))
                    .putShort((int) rdesc + 16 * i + 12, (short) SplitQueue.VIRTQ_DESC_F_WRITE);
        }
        long features = VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX) | VirtioFeature.bit(VirtioFeature.RING_INDIRECT_DESC)
                | (packedRing ? VirtioFeature.bit(VirtioFeature.RING_PACKED) : 0);
        Virtqueue tq = new Virtqueue(1);
        tq.configure(QUEUE_SIZE, desc, avail, used);
        Virtqueue rq = new Virtqueue(0);
        rq.configure(QUEUE_SIZE, rdesc, ravail, rused);
        if (tq.start(memory, features) != null || rq.start(memory, features) != null) {
            throw new IllegalStateException("bench rings do not fit the memory");
        }
        this.ring = d;
        this.txDesc = (int) desc;
        this.rxDesc = (int) rdesc;
        this.txLength = 12 + frameLength;
        this.rxLength = 12 + Math.max(frameLength, 1514);
        this.availTx = d;
        this.availRx = d;
        this.availTxBase = (int) avail;
        this.availRxBase = (int) ravail;
        this.tx = new TxPath(tq, backend, new NetCounters(), this);
        this.rx = new RxPath(rq, 0, backend, new NetCounters(), this);
    }

    /** The driver makes {@code n} chains available on the transmit queue. */
    public void offerTx(int n) {
        if (packed) {
            txIdx = offerPacked(txDesc, txIdx, n, txLength, 0);
            return;
        }
        for (int i = 0; i < n; i++) {
            availTx.putShort(availTxBase + 4 + 2 * (txIdx & (QUEUE_SIZE - 1)), (short) (txIdx & (QUEUE_SIZE - 1)));
            txIdx++;
        }
        availTx.putShort(availTxBase + 2, (short) txIdx);
    }

    public void offerRx(int n) {
        if (packed) {
            rxIdx = offerPacked(rxDesc, rxIdx, n, rxLength, PackedQueue.DESC_F_WRITE);
            return;
        }
        for (int i = 0; i < n; i++) {
            availRx.putShort(availRxBase + 4 + 2 * (rxIdx & (QUEUE_SIZE - 1)), (short) (rxIdx & (QUEUE_SIZE - 1)));
            rxIdx++;
        }
        availRx.putShort(availRxBase + 2, (short) rxIdx);
    }

    /**
     * Packed (2.8.21): rewrites length and ID the device overwrote when it used the slot, then the flags with the
     * driver's wrap counter ({@code position} counts over two laps; its lap gives the wrap), the first one last.
     */
    private int offerPacked(int descBase, int position, int n, int length, int writeFlag) {
        for (int i = n - 1; i >= 0; i--) {
            int p = position + i;
            int slot = p % QUEUE_SIZE;
            boolean wrap = (p / QUEUE_SIZE) % 2 == 0;
            int flags = writeFlag | (wrap ? PackedQueue.DESC_F_AVAIL : PackedQueue.DESC_F_USED);
            int at = descBase + 16 * slot;
            ring.putInt(at + 8, length).putShort(at + 12, (short) slot);
            java.lang.invoke.VarHandle.releaseFence();
            ring.putShort(at + 14, (short) flags);
        }
        return (position + n) % (2 * QUEUE_SIZE);
    }

    /** The device pops, walks, hands to the backend and pushes up to {@code burst} chains. */
    public int transmit(int burst) {
        return tx.process(burst);
    }

    public RxPath.Result receive(int burst) {
        return rx.process(burst);
    }

    public NetBackend backend() {
        return sink;
    }

    @Override
    public long negotiated() {
        return VirtioNetFeature.bits(VirtioNetFeature.MRG_RXBUF, VirtioNetFeature.CSUM) | (1L << 32);
    }

    @Override
    public int headerLength() {
        return 12;
    }

    @Override
    public RxFilter rxFilter() {
        return filter;
    }

    @Override
    public long guestOffloads() {
        return 0;
    }

    @Override
    public int activePairs() {
        return 1;
    }

    @Override
    public void needsReset(int queueIndex, String reason) {
        throw new IllegalStateException(reason);
    }

    @Override
    public LogOnce logOnce() {
        return log;
    }
}
