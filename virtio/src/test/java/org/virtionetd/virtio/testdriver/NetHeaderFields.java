package org.virtionetd.virtio.testdriver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The fields of {@code struct virtio_net_hdr} (virtio 1.2, 5.1.6) as the test driver writes and reads them:
 * u8 flags, u8 gso_type, le16 hdr_len, gso_size, csum_start, csum_offset, and num_buffers in the 12-byte layout.
 * Encoded here independently of the device's flyweight.
 */
public record NetHeaderFields(int flags, int gsoType, int hdrLen, int gsoSize, int csumStart, int csumOffset,
                              int numBuffers) {
    public static final int F_NEEDS_CSUM = 1;
    public static final int F_DATA_VALID = 2;
    public static final int GSO_NONE = 0;
    public static final int GSO_TCPV4 = 1;
    public static final int GSO_UDP = 3;
    public static final int GSO_TCPV6 = 4;
    public static final int GSO_UDP_L4 = 5;
    public static final int GSO_ECN = 0x80;

    /** "No offload, checksum complete": what a driver sends for an ordinary frame. */
    public static NetHeaderFields none() {
        return new NetHeaderFields(0, GSO_NONE, 0, 0, 0, 0, 0);
    }

    /** NEEDS_CSUM with the checksum at {@code csumOffset} from {@code csumStart}. */
    public static NetHeaderFields partialCsum(int csumStart, int csumOffset) {
        return new NetHeaderFields(F_NEEDS_CSUM, GSO_NONE, 0, 0, csumStart, csumOffset, 0);
    }

    /** A GSO frame (NEEDS_CSUM + gso type/size/hdr_len). */
    public static NetHeaderFields gso(int gsoType, int gsoSize, int hdrLen, int csumStart, int csumOffset) {
        return new NetHeaderFields(F_NEEDS_CSUM, gsoType, hdrLen, gsoSize, csumStart, csumOffset, 0);
    }

    public NetHeaderFields withNumBuffers(int n) {
        return new NetHeaderFields(flags, gsoType, hdrLen, gsoSize, csumStart, csumOffset, n);
    }

    /** The header in {@code length} bytes (10: legacy, 12: with num_buffers; longer is zero-padded). */
    public byte[] encode(int length) {
        if (length < 10) {
            throw new IllegalArgumentException("virtio_net_hdr length " + length + " is shorter than 10");
        }
        ByteBuffer b = ByteBuffer.allocate(length).order(ByteOrder.LITTLE_ENDIAN);
        b.put(0, (byte) flags).put(1, (byte) gsoType).putShort(2, (short) hdrLen).putShort(4, (short) gsoSize)
                .putShort(6, (short) csumStart).putShort(8, (short) csumOffset);
        if (length >= 12) {
            b.putShort(10, (short) numBuffers);
        }
        return b.array();
    }

    /** Parses the first 10 or 12 bytes of {@code bytes} (num_buffers 0 when only 10 are given). */
    public static NetHeaderFields decode(byte[] bytes) {
        if (bytes.length < 10) {
            throw new IllegalArgumentException("virtio_net_hdr needs 10 bytes, got " + bytes.length);
        }
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        return new NetHeaderFields(b.get(0) & 0xff, b.get(1) & 0xff, b.getShort(2) & 0xffff,
                b.getShort(4) & 0xffff, b.getShort(6) & 0xffff, b.getShort(8) & 0xffff,
                bytes.length >= 12 ? b.getShort(10) & 0xffff : 0);
    }
}
