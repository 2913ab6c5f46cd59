package org.virtionetd.backends.tap;

import org.virtionetd.virtio.net.VirtioNetHeader;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The receive side shared by the tap backends: one frame read ahead into a direct buffer owned by the backend,
 * so that {@code peekLength()} can tell the device how much guest room the frame needs (mergeable buffers) before
 * {@code receive()} scatters it. Allocated once; nothing is allocated per frame.
 *
 * <p>With a vnet header the kernel writes header + frame; without one we read the frame after
 * {@code headerLength} zeroed bytes: a zero virtio_net_hdr means "no offload, checksum complete" (5.1.6.3).
 */
public final class StagedFrame {
    /** Frames read from a tap are at most 64 KiB of GSO payload plus headers; the margin covers VLAN tags. */
    public static final int CAPACITY = VirtioNetHeader.LENGTH_MRG + 65536 + 256;

    /** Reads one frame into {@code dst} from its position; returns its length, 0 if none is waiting. */
    @FunctionalInterface
    public interface Source {
        int read(ByteBuffer dst) throws IOException;
    }

    private final ByteBuffer buffer = ByteBuffer.allocateDirect(CAPACITY).order(ByteOrder.LITTLE_ENDIAN);
    private int length;
    private long tooSmall;
    private long stagedFrames;
    private long noRoom;

    /** The backing buffer (for sources that need its address once). */
    public ByteBuffer buffer() {
        return buffer;
    }

    /** Length (header included) of the staged frame, reading one from {@code source} if none is staged. */
    public int peek(Source source, boolean withHeader, int headerLength) throws IOException {
        while (length == 0) {
            buffer.clear();
            if (!withHeader) {
                buffer.position(headerLength);
            }
            int n = source.read(buffer);
            if (n <= 0) {
                return 0;
            }
            if (withHeader) {
                if (n < headerLength + 14) {
                    tooSmall++; // the kernel never does this; skip it rather than hand the guest garbage
                    continue;
                }
                length = n;
                stagedFrames++;
            } else {
                if (n < 14) {
                    tooSmall++;
                    continue;
                }
                for (int i = 0; i < headerLength; i++) {
                    buffer.put(i, (byte) 0);
                }
                length = headerLength + n;
                stagedFrames++;
            }
        }
        return length;
    }

    /**
     * Scatters the staged frame (reading one first if needed) into {@code slices[0 .. count)}, each from its
     * position up to its limit, positions advancing as in a channel read. Returns the length, 0 if no frame.
     * A frame larger than the room given is dropped and counted ({@link #noRoomDrops()}); the next one is tried.
     */
    public int scatter(Source source, boolean withHeader, int headerLength, ByteBuffer[] slices, int count)
            throws IOException {
        long room = 0;
        for (int i = 0; i < count; i++) {
            room += slices[i].remaining();
        }
        while (true) {
            int len = peek(source, withHeader, headerLength);
            if (len == 0) {
                return 0;
            }
            length = 0;
            if (len > room) {
                noRoom++;
                continue;
            }
            int src = 0;
            for (int i = 0; i < count && src < len; i++) {
                ByteBuffer d = slices[i];
                int k = Math.min(d.remaining(), len - src);
                if (k == 0) {
                    continue;
                }
                buffer.limit(src + k).position(src);
                d.put(buffer);
                src += k;
            }
            buffer.clear();
            return len;
        }
    }

    /**
     * Drops the staged frame and reads and drops what {@code source} holds, until it has none or {@code limit}
     * frames are dropped; returns how many were ({@link org.virtionetd.virtio.net.NetBackend#discardQueued}).
     */
    public int discardQueued(Source source, int limit) throws IOException {
        int n = 0;
        if (length > 0) {
            length = 0;
            n++;
        }
        while (n < limit) {
            buffer.clear();
            if (source.read(buffer) <= 0) {
                break;
            }
            n++;
        }
        buffer.clear();
        return n;
    }

    /** Whether a frame was read ahead and not yet scattered. */
    public boolean staged() {
        return length > 0;
    }

    /** Forgets the staged frame (its header length may no longer match). */
    public void discard() {
        length = 0;
    }

    /** Frames read into the staging buffer (the others went straight into guest buffers, or were dropped). */
    public long stagedFrames() {
        return stagedFrames;
    }

    /** Frames shorter than a header + Ethernet header, skipped. */
    public long tooSmallDrops() {
        return tooSmall;
    }

    /** Frames dropped because the caller gave less room than their length. */
    public long noRoomDrops() {
        return noRoom;
    }
}
