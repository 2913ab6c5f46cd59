package org.virtionetd.virtio.fuzz;

/**
 * A fuzz input read front to back as little-endian fields. Past the end every read gives 0, so any byte string is
 * a valid input and a short one simply means "zeros": the fuzzer's mutations stay meaningful, and seed files can
 * be written by hand (or by {@code SeedCorpus}) field by field.
 *
 * <p>Plain {@code byte[]} inputs are used instead of Jazzer's FuzzedDataProvider because the seed corpus is then
 * a readable byte layout (a vhost-user session is literally the bytes on the wire) rather than FDP's
 * integers-from-the-end encoding.
 */
public final class FuzzInput {
    private final byte[] data;
    private int at;

    public FuzzInput(byte[] data) {
        this.data = data;
    }

    public int remaining() {
        return Math.max(0, data.length - at);
    }

    public boolean exhausted() {
        return at >= data.length;
    }

    public int u8() {
        return at < data.length ? data[at++] & 0xff : 0;
    }

    public int u16() {
        return u8() | u8() << 8;
    }

    public int u32() {
        return u16() | u16() << 16;
    }

    public long u64() {
        return (u32() & 0xffffffffL) | (long) u32() << 32;
    }

    public boolean bool() {
        return (u8() & 1) != 0;
    }

    /** A value in {@code [0, bound)} from one byte (bound <= 256) or two. */
    public int below(int bound) {
        if (bound <= 1) {
            return 0;
        }
        return (bound <= 256 ? u8() : u16()) % bound;
    }

    /** {@code n} bytes (zeros past the end). */
    public byte[] bytes(int n) {
        byte[] b = new byte[Math.max(0, n)];
        int k = Math.min(b.length, remaining());
        System.arraycopy(data, at, b, 0, k);
        at += k;
        return b;
    }

    /** What is left. */
    public byte[] rest() {
        return bytes(remaining());
    }
}
