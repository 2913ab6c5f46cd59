package org.virtionetd.backends.vswitch;

import org.virtionetd.virtio.net.VirtioNetHeader;
import org.virtionetd.virtio.os.EventFd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The receive ring of one switch port: frames other ports forwarded to it, each a record of a 12-byte
 * virtio_net_hdr (the sender's metadata, num_buffers 0) followed by the frame, laid out one after the other in one
 * pre-allocated direct buffer. Many producers (the event-loop threads of the other ports), one consumer (this
 * port's own loop). A full ring refuses the frame: the caller drops and counts it, as a NIC with a full ring would.
 *
 * <p>Records are contiguous: one that does not fit before the end of the store starts again at offset 0 if the
 * consumer has freed that space. Producers copy under the ring's lock; the consumer copies the head record out
 * without the lock (producers never write into live records) and releases it afterwards.
 *
 * <p>Readiness: the eventfd is signalled when the ring goes from empty to non-empty and drained when the consumer
 * finds it empty, both under the lock, so a level-triggered epoll on it neither misses a frame nor spins on an empty
 * ring, and there is one eventfd write per burst rather than per frame.
 */
final class PortRing implements AutoCloseable {
    /** Bytes of header stored in front of each frame (the 12-byte layout; a 10-byte port reads the first 10). */
    static final int HEADER_BYTES = VirtioNetHeader.LENGTH_MRG;

    private final ByteBuffer store;
    private final int capacity;
    private final int[] offset;
    private final int[] frameLength;
    private final EventFd ready;
    private int head;
    private int count;
    private int tail;
    private boolean closed;

    PortRing(int capacityBytes, int slots) throws IOException {
        this.store = ByteBuffer.allocateDirect(capacityBytes).order(ByteOrder.LITTLE_ENDIAN);
        this.capacity = capacityBytes;
        this.offset = new int[slots];
        this.frameLength = new int[slots];
        this.ready = EventFd.create();
    }

    /** The store, for views the consumer makes once (absolute reads only; never move its position). */
    ByteBuffer store() {
        return store;
    }

    int readyFd() {
        return ready.fd();
    }

    /**
     * Appends header (flags other than NEEDS_CSUM cleared: DATA_VALID and RSC_INFO are the receiving device's to
     * set, 5.1.6.2.1) and the frame in {@code slices[from, to)} (their remaining bytes, positions untouched).
     * Returns false when the ring is full or closed.
     */
    synchronized boolean offer(VirtioNetHeader header, ByteBuffer[] slices, int from, int to, int length) {
        int at = reserve(length);
        if (at < 0) {
            return false;
        }
        store.put(at + VirtioNetHeader.FLAGS_OFFSET, (byte) (header.flags() & VirtioNetHeader.F_NEEDS_CSUM));
        int gso = header.gsoType();
        store.put(at + VirtioNetHeader.GSO_TYPE_OFFSET, (byte) gso);
        store.putShort(at + VirtioNetHeader.HDR_LEN_OFFSET, (short) header.hdrLen());
        store.putShort(at + VirtioNetHeader.GSO_SIZE_OFFSET,
                (short) (gso == VirtioNetHeader.GSO_NONE ? 0 : header.gsoSize()));
        store.putShort(at + VirtioNetHeader.CSUM_START_OFFSET, (short) header.csumStart());
        store.putShort(at + VirtioNetHeader.CSUM_OFFSET_OFFSET, (short) header.csumOffset());
        store.putShort(at + VirtioNetHeader.NUM_BUFFERS_OFFSET, (short) 0);
        int w = at + HEADER_BYTES;
        for (int i = from; i < to; i++) {
            ByteBuffer s = slices[i];
            int n = s.remaining();
            store.put(w, s, s.position(), n);
            w += n;
        }
        commit(length);
        return true;
    }

    /** Appends a plain frame {@code frame[position, limit)} with an all-zero header ("checksum complete"). */
    synchronized boolean offerPlain(ByteBuffer frame) {
        int length = frame.remaining();
        int at = reserve(length);
        if (at < 0) {
            return false;
        }
        for (int i = 0; i < HEADER_BYTES; i++) {
            store.put(at + i, (byte) 0);
        }
        store.put(at + HEADER_BYTES, frame, frame.position(), length);
        commit(length);
        return true;
    }

    private int pendingAt = -1;

    /** Where a record for a frame of {@code length} bytes goes, or -1 when it does not fit (or closed). */
    private int reserve(int length) {
        if (closed || count == offset.length) {
            return -1;
        }
        int need = align8(HEADER_BYTES + length);
        int at;
        if (count == 0) {
            at = 0;
        } else {
            int headOff = offset[head];
            if (tail > headOff) {
                if (need <= capacity - tail) {
                    at = tail;
                } else if (need < headOff) {
                    at = 0;
                } else {
                    return -1;
                }
            } else if (need < headOff - tail) {
                at = tail;
            } else {
                return -1;
            }
        }
        if (need > capacity) {
            return -1;
        }
        pendingAt = at;
        return at;
    }

    private void commit(int length) {
        int slot = (head + count) % offset.length;
        offset[slot] = pendingAt;
        frameLength[slot] = length;
        tail = pendingAt + align8(HEADER_BYTES + length);
        count++;
        if (count == 1) {
            ready.signal();
        }
    }

    /**
     * The offset in {@link #store()} of the oldest record (its header; the frame follows at +{@link #HEADER_BYTES}),
     * or -1 when the ring is empty (the readiness eventfd is then drained).
     */
    synchronized int headOffset() {
        if (count == 0) {
            if (!closed) {
                ready.drain();
            }
            return -1;
        }
        return offset[head];
    }

    /** Frame length of the oldest record; only after {@link #headOffset()} returned a record. */
    synchronized int headFrameLength() {
        return frameLength[head];
    }

    /** Frees the oldest record. */
    synchronized void release() {
        if (count == 0) {
            return;
        }
        head = (head + 1) % offset.length;
        count--;
        if (count == 0) {
            head = 0;
            tail = 0;
        }
    }

    synchronized int size() {
        return count;
    }

    /** Drops every record (they came while no driver ran the port's device); returns how many. */
    synchronized int clear() {
        int dropped = count;
        head = 0;
        count = 0;
        tail = 0;
        return dropped;
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            count = 0;
            ready.close();
        }
    }

    private static int align8(int n) {
        return (n + 7) & ~7;
    }
}
