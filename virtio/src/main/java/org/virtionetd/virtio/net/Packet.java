package org.virtionetd.virtio.net;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One packet on its way from the driver to a backend: a validated copy of the virtio_net_hdr followed by the
 * frame as ByteBuffer views over guest memory (no copy). Reused per queue.
 *
 * <p>{@code slices[0]} is the header buffer, positioned to hold exactly {@link #headerLength()} bytes (the length
 * the backend was configured with); {@code slices[1 .. count)} are the frame. A backend that carries no vnet
 * header writes {@code slices[1 .. count)} only. Positions of the slices may be consumed by the backend.
 */
public final class Packet {
    /**
     * The largest frame the transmit path hands over: 64 KiB of IP plus Ethernet and two VLAN tags (a GSO frame
     * at most); a longer chain is refused before it reaches a backend.
     */
    public static final int MAX_FRAME_LENGTH = 65535 + 14 + 8;

    private final ByteBuffer headerBuffer =
            ByteBuffer.allocateDirect(VirtioNetHeader.LENGTH_MRG).order(ByteOrder.LITTLE_ENDIAN);
    private final VirtioNetHeader header = new VirtioNetHeader(headerBuffer, 0);
    private final ByteBuffer[] slices;
    private int count;
    private int frameLength;
    private int headerLength;

    public Packet(int maxSlices) {
        this.slices = new ByteBuffer[maxSlices + 1];
        this.slices[0] = headerBuffer;
        this.count = 1;
    }

    public VirtioNetHeader header() {
        return header;
    }

    public ByteBuffer headerBuffer() {
        return headerBuffer;
    }

    public ByteBuffer[] slices() {
        return slices;
    }

    /** Number of valid entries in {@link #slices()}, the header included. */
    public int count() {
        return count;
    }

    public int frameLength() {
        return frameLength;
    }

    public int headerLength() {
        return headerLength;
    }

    /** Maximum number of frame slices. */
    public int capacity() {
        return slices.length - 1;
    }

    /**
     * Starts a new packet: header of {@code headerLength} bytes, no frame slices. The header bytes are zeroed
     * unless {@code willOverwrite} says the caller writes all of them next (the TX path copies the guest's header).
     */
    public void reset(int headerLength, boolean willOverwrite) {
        this.headerLength = headerLength;
        headerBuffer.clear(); // a backend may have consumed or narrowed it
        if (!willOverwrite) {
            header.clear(VirtioNetHeader.LENGTH_MRG);
        }
        headerBuffer.limit(headerLength).position(0);
        count = 1;
        frameLength = 0;
    }

    /** Starts a new packet with a zeroed header of {@code headerLength} bytes ("no offload"). */
    public void reset(int headerLength) {
        this.headerLength = headerLength;
        headerBuffer.clear(); // a backend may have consumed or narrowed it
        header.clear(VirtioNetHeader.LENGTH_MRG);
        headerBuffer.limit(headerLength).position(0);
        count = 1;
        frameLength = 0;
    }

    /** Appends a frame slice (a view whose remaining bytes are the data). */
    public void add(ByteBuffer slice) {
        slices[count++] = slice;
        frameLength += slice.remaining();
    }

    /** Re-positions the header buffer, e.g. before retrying a send. */
    public void rewindHeader() {
        headerBuffer.limit(headerLength).position(0);
    }

    /** Reads frame byte {@code index} (0 = first byte after the header) without moving any position. */
    public int frameByte(int index) {
        for (int i = 1; i < count; i++) {
            ByteBuffer s = slices[i];
            int n = s.remaining();
            if (index < n) {
                return s.get(s.position() + index) & 0xff;
            }
            index -= n;
        }
        throw new IndexOutOfBoundsException("frame byte " + index + " beyond frame length " + frameLength);
    }
}
