package org.virtionetd.virtio.testdriver;

import java.util.Arrays;

/**
 * One element of a buffer the driver offers (virtio 1.2, 2.7.13.1 "Placing Buffers Into The Descriptor Table"):
 * device-readable bytes, or device-writable room. Where it lives is chosen by the {@link GuestAllocator}
 * (scattered), or fixed with {@link #at(long)} for tests that need a particular address.
 */
public final class Buffer {
    private final byte[] data;
    private final int length;
    private final boolean writable;
    private final boolean acrossRegions;
    private final long fixedAddress;

    private Buffer(byte[] data, int length, boolean writable, boolean acrossRegions, long fixedAddress) {
        this.data = data;
        this.length = length;
        this.writable = writable;
        this.acrossRegions = acrossRegions;
        this.fixedAddress = fixedAddress;
    }

    /** Bytes the device reads. */
    public static Buffer readable(byte[] data) {
        return new Buffer(data.clone(), data.length, false, false, -1);
    }

    /** {@code length} bytes the device may write; the driver fills them with a marker first. */
    public static Buffer writable(int length) {
        if (length < 0) {
            throw new IllegalArgumentException("writable length " + length + " is negative");
        }
        return new Buffer(null, length, true, false, -1);
    }

    /** The same buffer, placed so that it straddles a boundary between two adjacent memory regions. */
    public Buffer acrossRegionBoundary() {
        return new Buffer(data, length, writable, true, -1);
    }

    /** The same buffer at a fixed guest address (not allocated, not freed; readable bytes are still written). */
    public Buffer at(long gpa) {
        return new Buffer(data, length, writable, false, gpa);
    }

    public boolean writable() {
        return writable;
    }

    public int length() {
        return length;
    }

    /** Readable bytes (a copy), or null for a writable buffer. */
    public byte[] data() {
        return data == null ? null : data.clone();
    }

    boolean acrossRegions() {
        return acrossRegions;
    }

    long fixedAddress() {
        return fixedAddress;
    }

    byte[] rawData() {
        return data;
    }

    @Override
    public String toString() {
        return (writable ? "writable(" : "readable(") + length + ")"
                + (fixedAddress >= 0 ? "@0x" + Long.toHexString(fixedAddress) : "")
                + (data != null && data.length <= 16 ? Arrays.toString(data) : "");
    }
}
