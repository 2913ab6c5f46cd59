package org.virtionetd.backends.offload;

import org.virtionetd.virtio.net.VirtioNetHeader;

import java.nio.ByteBuffer;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Function;

/**
 * The receive side's queue of frames waiting for the guest, handed out one per {@code receive} call: what
 * {@link SoftwareOffload} made of one received frame the guest could not take as it was (its segments, or the frame
 * with its checksum completed), or a frame copied as it is. Each entry is exactly what the guest gets: the
 * virtio_net_hdr first (all zero for a produced frame, 5.1.6.4: no offload left to do), then the frame.
 *
 * <p>Completing a frame is all or nothing: when its outputs do not all fit ({@link #FRAMES} entries,
 * {@link #BYTES} bytes) or the engine refuses it, nothing of it stays queued and the drop is counted by reason.
 * The store is one direct buffer allocated once; nothing is allocated per frame. One thread (the queue pair's event
 * loop, or a switch port's).
 */
public final class PendingFrames implements FrameSink {
    /** Room for the frames produced from one received frame (a 64 KiB GSO frame at MSS 536 fits). */
    public static final int BYTES = 256 * 1024;
    public static final int FRAMES = 256;

    /**
     * Where the outcomes are counted: the owner's counters, named as it shows them. {@code drops} gives the counter
     * of frames dropped for a reason.
     */
    public record Counts(LongAdder checksumsCompleted, LongAdder packetsSegmented, LongAdder segmentsMade,
                         LongAdder droppedNoRoom, Function<OffloadResult, LongAdder> drops) {
    }

    private final SoftwareOffload engine;
    private final Counts counts;
    private final ByteBuffer store = ByteBuffer.allocateDirect(BYTES);
    private final int[] offset = new int[FRAMES];
    private final int[] length = new int[FRAMES];
    private int head;
    private int count;
    private int written;
    private int headerLength = VirtioNetHeader.LENGTH_MRG;

    public PendingFrames(SoftwareOffload engine, Counts counts) {
        this.engine = engine;
        this.counts = counts;
    }

    /** The vnet header length of the guest's frames (10 or 12), written as zeros before each produced frame. */
    public void headerLength(int vnetHeaderLength) {
        this.headerLength = vnetHeaderLength;
    }

    public boolean isEmpty() {
        return count == 0;
    }

    /** The length (header included) of the next frame; only when not {@link #isEmpty()}. */
    public int nextLength() {
        return length[head];
    }

    /** Forgets every waiting frame (a new configuration, an interface lost, a frame half completed). */
    public void clear() {
        head = 0;
        count = 0;
        written = 0;
    }

    /**
     * Completes the frame {@code frame[position, limit)} whose header is {@code header} into this queue, counting
     * the outcome. Returns OK, or why the frame was dropped (nothing of it is queued then; the sink refusing an
     * output means the outputs did not fit and counts as TOO_MANY_SEGMENTS).
     */
    public OffloadResult complete(ByteBuffer frame, VirtioNetHeader header) {
        int gso = header.gsoType() & ~VirtioNetHeader.GSO_ECN;
        OffloadResult r = engine.process(frame, header, this);
        if (r == OffloadResult.OK) {
            if (gso != VirtioNetHeader.GSO_NONE) {
                counts.packetsSegmented().increment();
                counts.segmentsMade().add(engine.lastOutputCount());
            } else {
                counts.checksumsCompleted().increment();
            }
            return r;
        }
        if (r == OffloadResult.SINK_REFUSED) {
            r = OffloadResult.TOO_MANY_SEGMENTS;
        }
        clear();
        counts.drops().apply(r).increment();
        return r;
    }

    /** Queues one produced frame behind an all-zero header; false when it does not fit. */
    @Override
    public boolean accept(ByteBuffer frame) {
        int len = frame.remaining();
        if (head + count == FRAMES || written + headerLength + len > BYTES) {
            return false;
        }
        int at = written;
        for (int i = 0; i < headerLength; i++) {
            store.put(at + i, (byte) 0);
        }
        store.put(at + headerLength, frame, frame.position(), len);
        push(at, headerLength + len);
        return true;
    }

    /**
     * Queues {@code src[off, off + len)} as it is (header included); the caller knows it fits (one frame of at most
     * a vnet header and {@link SoftwareOffload#MAX_FRAME_LENGTH} bytes, into an empty queue).
     */
    public void copy(ByteBuffer src, int off, int len) {
        if (head + count == FRAMES || written + len > BYTES) {
            throw new IllegalStateException("pending frames: a " + len + "-byte frame does not fit behind "
                    + count + " frames of " + written + " bytes");
        }
        store.put(written, src, off, len);
        push(written, len);
    }

    private void push(int at, int len) {
        int slot = head + count;
        offset[slot] = at;
        length[slot] = len;
        count++;
        written = at + len;
    }

    /**
     * Takes the next frame into {@code slices[0, count)} from their positions (positions kept, as a readv into guest
     * memory) and returns its length; or drops it, counted, and returns -1 when the slices cannot hold it. Only when
     * not {@link #isEmpty()}.
     */
    public int deliver(ByteBuffer[] slices, int sliceCount) {
        int off = offset[head];
        int len = length[head];
        head++;
        count--;
        if (count == 0) {
            clear();
        }
        if (room(slices, sliceCount) < len) {
            counts.droppedNoRoom().increment();
            return -1;
        }
        scatter(store, off, len, slices, sliceCount, 0);
        return len;
    }

    /** Bytes the slices can take from their positions. */
    public static int room(ByteBuffer[] slices, int count) {
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
    public static int scatter(ByteBuffer src, int off, int length, ByteBuffer[] slices, int count, int skip) {
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
}
