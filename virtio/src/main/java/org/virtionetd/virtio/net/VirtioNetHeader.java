package org.virtionetd.virtio.net;

import org.virtionetd.virtio.device.VirtioFeature;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A flyweight over {@code struct virtio_net_hdr} (virtio 1.2, section 5.1.6), little-endian:
 * <pre>
 *   u8 flags; u8 gso_type; le16 hdr_len; le16 gso_size; le16 csum_start; le16 csum_offset; le16 num_buffers;
 * </pre>
 * {@code num_buffers} exists only in the 12-byte layout (VERSION_1 or MRG_RXBUF). One instance is reused per
 * queue; it is pointed at a buffer with {@link #wrap(ByteBuffer, int)} and never copies.
 */
public final class VirtioNetHeader {
    public static final int FLAGS_OFFSET = 0;
    public static final int GSO_TYPE_OFFSET = 1;
    public static final int HDR_LEN_OFFSET = 2;
    public static final int GSO_SIZE_OFFSET = 4;
    public static final int CSUM_START_OFFSET = 6;
    public static final int CSUM_OFFSET_OFFSET = 8;
    public static final int NUM_BUFFERS_OFFSET = 10;

    /** Legacy header without MRG_RXBUF. */
    public static final int LENGTH_LEGACY = 10;
    /** VERSION_1 or MRG_RXBUF: the header has num_buffers. */
    public static final int LENGTH_MRG = 12;

    public static final int F_NEEDS_CSUM = 1;
    public static final int F_DATA_VALID = 2;
    public static final int F_RSC_INFO = 4;

    public static final int GSO_NONE = 0;
    public static final int GSO_TCPV4 = 1;
    public static final int GSO_UDP = 3;
    public static final int GSO_TCPV6 = 4;
    public static final int GSO_UDP_L4 = 5;
    public static final int GSO_ECN = 0x80;

    private ByteBuffer buffer;
    private int base;

    public VirtioNetHeader() {
    }

    public VirtioNetHeader(ByteBuffer buffer, int base) {
        wrap(buffer, base);
    }

    /** Points this flyweight at {@code buffer} (which must be little-endian) at absolute offset {@code base}. */
    public VirtioNetHeader wrap(ByteBuffer buffer, int base) {
        if (buffer.order() != ByteOrder.LITTLE_ENDIAN) {
            throw new IllegalArgumentException("virtio_net_hdr buffer must be little-endian");
        }
        this.buffer = buffer;
        this.base = base;
        return this;
    }

    public ByteBuffer buffer() {
        return buffer;
    }

    public int base() {
        return base;
    }

    /**
     * The header length the driver and device use (5.1.6.1): 12 bytes if VERSION_1 or MRG_RXBUF was negotiated,
     * 10 otherwise (legacy). HASH_REPORT (20 bytes) is not offered by this device.
     */
    public static int lengthFor(long negotiatedFeatures) {
        return VirtioFeature.has(negotiatedFeatures, VirtioFeature.VERSION_1)
                || VirtioNetFeature.has(negotiatedFeatures, VirtioNetFeature.MRG_RXBUF)
                ? LENGTH_MRG : LENGTH_LEGACY;
    }

    /**
     * Checks a header length a backend is configured with: 10 or 12 are the only layouts (5.1.6.1). A backend
     * handed anything else by the device has met a device bug, so this throws rather than drops.
     */
    public static int requireLength(int length, String who) {
        if (length != LENGTH_LEGACY && length != LENGTH_MRG) {
            throw new IllegalArgumentException(who + ": vnet header length " + length + " is neither 10 nor 12");
        }
        return length;
    }

    public int flags() {
        return buffer.get(base + FLAGS_OFFSET) & 0xff;
    }

    public VirtioNetHeader flags(int v) {
        buffer.put(base + FLAGS_OFFSET, (byte) v);
        return this;
    }

    public int gsoType() {
        return buffer.get(base + GSO_TYPE_OFFSET) & 0xff;
    }

    public VirtioNetHeader gsoType(int v) {
        buffer.put(base + GSO_TYPE_OFFSET, (byte) v);
        return this;
    }

    /** gso_type without the ECN bit. */
    public int gsoProtocol() {
        return gsoType() & ~GSO_ECN;
    }

    public boolean gsoEcn() {
        return (gsoType() & GSO_ECN) != 0;
    }

    public int hdrLen() {
        return buffer.getShort(base + HDR_LEN_OFFSET) & 0xffff;
    }

    public VirtioNetHeader hdrLen(int v) {
        buffer.putShort(base + HDR_LEN_OFFSET, (short) v);
        return this;
    }

    public int gsoSize() {
        return buffer.getShort(base + GSO_SIZE_OFFSET) & 0xffff;
    }

    public VirtioNetHeader gsoSize(int v) {
        buffer.putShort(base + GSO_SIZE_OFFSET, (short) v);
        return this;
    }

    public int csumStart() {
        return buffer.getShort(base + CSUM_START_OFFSET) & 0xffff;
    }

    public VirtioNetHeader csumStart(int v) {
        buffer.putShort(base + CSUM_START_OFFSET, (short) v);
        return this;
    }

    public int csumOffset() {
        return buffer.getShort(base + CSUM_OFFSET_OFFSET) & 0xffff;
    }

    public VirtioNetHeader csumOffset(int v) {
        buffer.putShort(base + CSUM_OFFSET_OFFSET, (short) v);
        return this;
    }

    /** Only valid in the 12-byte layout. */
    public int numBuffers() {
        return buffer.getShort(base + NUM_BUFFERS_OFFSET) & 0xffff;
    }

    public VirtioNetHeader numBuffers(int v) {
        buffer.putShort(base + NUM_BUFFERS_OFFSET, (short) v);
        return this;
    }

    public boolean needsCsum() {
        return (flags() & F_NEEDS_CSUM) != 0;
    }

    /** Zeroes the first {@code length} bytes: "no offload, checksum complete". */
    public VirtioNetHeader clear(int length) {
        for (int i = 0; i < length; i++) {
            buffer.put(base + i, (byte) 0);
        }
        return this;
    }

    /** Copies {@code length} header bytes from {@code other}. */
    public VirtioNetHeader copyFrom(VirtioNetHeader other, int length) {
        for (int i = 0; i < length; i++) {
            buffer.put(base + i, other.buffer.get(other.base + i));
        }
        return this;
    }

    @Override
    public String toString() {
        return "virtio_net_hdr[flags=" + flags() + " gso_type=" + gsoType() + " hdr_len=" + hdrLen()
                + " gso_size=" + gsoSize() + " csum_start=" + csumStart() + " csum_offset=" + csumOffset() + "]";
    }
}
