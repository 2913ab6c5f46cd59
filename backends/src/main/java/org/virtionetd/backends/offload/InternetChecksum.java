package org.virtionetd.backends.offload;

import java.lang.reflect.Field;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The Internet checksum (RFC 1071): the 16-bit one's-complement sum of big-endian 16-bit words.
 *
 * <p>Sums are plain {@code int}s holding a folded 16-bit value (0..0xffff), never complemented until
 * {@link #finish(int)}. A sum can be continued across several slices of one stream with
 * {@link #add(int, int, int)}: RFC 1071 section 2 (B) says the sum is byte-order independent, so a block that
 * starts at an odd position of the stream is summed as if it were even and then byte-swapped.
 *
 * <p>Speed: 8 bytes per load with two accumulators of 32-bit halves (RFC 1071 section 2 (C), "parallel
 * summation"), so no carry needs handling inside the loop: each accumulator gets at most 2^28 additions of at
 * most 2^33 for a 2 GiB range. Loads use {@code sun.misc.Unsafe} on the buffer's address (direct buffers) or
 * backing array (heap buffers); the range is checked against the buffer's limit BEFORE the loop, so the loop
 * itself can never read outside the buffer. Buffers without either (read-only heap) take a ByteBuffer path.
 * Positions are never moved and nothing is allocated.
 */
public final class InternetChecksum {
    private static final sun.misc.Unsafe UNSAFE;
    private static final long ADDRESS_OFFSET;
    private static final long BYTE_ARRAY_BASE;
    private static final boolean LITTLE_ENDIAN = ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN;

    static {
        sun.misc.Unsafe u = null;
        long address = -1;
        long arrayBase = -1;
        try {
            Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            u = (sun.misc.Unsafe) f.get(null);
            // Buffer.address: the start address of a direct buffer's index 0 (slices have their own).
            address = u.objectFieldOffset(Buffer.class.getDeclaredField("address"));
            arrayBase = u.arrayBaseOffset(byte[].class);
        } catch (ReflectiveOperationException | RuntimeException e) {
            System.getLogger(InternetChecksum.class.getName()).log(System.Logger.Level.INFO,
                    "sun.misc.Unsafe unavailable (" + e + "), checksums use ByteBuffer.getLong");
            u = null;
        }
        UNSAFE = u;
        ADDRESS_OFFSET = address;
        BYTE_ARRAY_BASE = arrayBase;
    }

    private InternetChecksum() {
    }

    /**
     * The folded one's-complement sum of {@code buf[offset, offset + length)}, as if the range started at an even
     * position of the checksummed stream. Absolute access: the buffer's position is ignored and never moved.
     *
     * @throws IndexOutOfBoundsException if the range is not inside {@code [0, buf.limit())}
     */
    public static int sum(ByteBuffer buf, int offset, int length) {
        if (offset < 0 || length < 0 || offset > buf.limit() - length) {
            throw new IndexOutOfBoundsException("checksum range [" + offset + ", +" + length
                    + ") outside buffer limit " + buf.limit());
        }
        if (UNSAFE != null) {
            if (buf.isDirect()) {
                return nativeSum(null, UNSAFE.getLong(buf, ADDRESS_OFFSET) + offset, length);
            }
            if (buf.hasArray()) {
                return nativeSum(buf.array(), BYTE_ARRAY_BASE + buf.arrayOffset() + offset, length);
            }
        }
        return bufferSum(buf, offset, length);
    }

    /**
     * Continues a stream's sum: {@code sum} covers the stream's first {@code position} bytes and {@code block}
     * is {@link #sum(ByteBuffer, int, int)} of the bytes that follow. An odd {@code position} means the block's
     * bytes sit in the other halves of the stream's 16-bit words, hence the swap (RFC 1071 section 2 (B)).
     */
    public static int add(int sum, int block, int position) {
        if ((position & 1) != 0) {
            block = ((block & 0xff) << 8) | (block >>> 8);
        }
        return fold((long) sum + block);
    }

    /** Convenience: continues {@code sum} (over {@code position} bytes) with {@code buf[offset, offset + length)}. */
    public static int add(int sum, int position, ByteBuffer buf, int offset, int length) {
        return add(sum, sum(buf, offset, length), position);
    }

    /** Folds carries back in until 16 bits remain (RFC 1071 section 4.1, "fold 32-bit sum to 16 bits"). */
    public static int fold(long sum) {
        while ((sum >>> 16) != 0) {
            sum = (sum & 0xffff) + (sum >>> 16);
        }
        return (int) sum;
    }

    /** The value to store in a checksum field: the complement of the folded sum. */
    public static int finish(int sum) {
        return ~fold(sum) & 0xffff;
    }

    /**
     * The value to store in a TCP/UDP checksum field computed by a sender. A computed 0 is sent as 0xffff: for UDP
     * 0 means "no checksum" (RFC 768), and both are the same number in one's complement, so Linux's
     * skb_checksum_help does the same for every protocol.
     */
    public static int finishTransport(int sum) {
        int c = finish(sum);
        return c == 0 ? 0xffff : c;
    }

    /**
     * The IPv4 pseudo-header sum (RFC 793 / RFC 768): source and destination addresses of the IPv4 header at
     * {@code ipOffset}, the protocol and the L4 length.
     */
    public static int pseudoHeaderIpv4(ByteBuffer buf, int ipOffset, int protocol, int l4Length) {
        int s = sum(buf, ipOffset + 12, 8);
        return fold((long) s + protocol + l4Length);
    }

    /**
     * The IPv6 pseudo-header sum (RFC 8200 section 8.1): source and destination of the IPv6 header at
     * {@code ipOffset}, the 32-bit upper-layer length and the next header value.
     */
    public static int pseudoHeaderIpv6(ByteBuffer buf, int ipOffset, int nextHeader, int l4Length) {
        int s = sum(buf, ipOffset + 8, 32);
        return fold((long) s + (l4Length >>> 16) + (l4Length & 0xffff) + nextHeader);
    }

    private static int nativeSum(Object base, long address, int length) {
        sun.misc.Unsafe u = UNSAFE;
        long a = 0;
        long b = 0;
        long p = address;
        long end16 = address + (length & ~15);
        while (p < end16) {
            long v = u.getLong(base, p);
            long w = u.getLong(base, p + 8);
            a += (v & 0xffffffffL) + (v >>> 32);
            b += (w & 0xffffffffL) + (w >>> 32);
            p += 16;
        }
        int rest = length & 15;
        if (rest >= 8) {
            long v = u.getLong(base, p);
            a += (v & 0xffffffffL) + (v >>> 32);
            p += 8;
            rest -= 8;
        }
        if (rest >= 4) {
            b += u.getInt(base, p) & 0xffffffffL;
            p += 4;
            rest -= 4;
        }
        if (rest >= 2) {
            a += u.getShort(base, p) & 0xffff;
            p += 2;
            rest -= 2;
        }
        if (rest == 1) {
            // The last byte is the high half of a big-endian word: in a little-endian load it is the low half.
            int last = u.getByte(base, p) & 0xff;
            b += LITTLE_ENDIAN ? last : last << 8;
        }
        int s = fold(a + b);
        // Words were read in native order; the sum of byte-swapped words is the byte-swapped sum.
        return LITTLE_ENDIAN ? ((s & 0xff) << 8) | (s >>> 8) : s;
    }

    private static int bufferSum(ByteBuffer buf, int offset, int length) {
        boolean swap = buf.order() != ByteOrder.BIG_ENDIAN;
        long a = 0;
        int i = offset;
        int end8 = offset + (length & ~7);
        while (i < end8) {
            long v = buf.getLong(i);
            if (swap) {
                v = Long.reverseBytes(v);
            }
            a += (v & 0xffffffffL) + (v >>> 32);
            i += 8;
        }
        int end = offset + length;
        while (i + 1 < end) {
            a += ((buf.get(i) & 0xff) << 8) | (buf.get(i + 1) & 0xff);
            i += 2;
        }
        if (i < end) {
            a += (buf.get(i) & 0xff) << 8;
        }
        return fold(a);
    }
}
