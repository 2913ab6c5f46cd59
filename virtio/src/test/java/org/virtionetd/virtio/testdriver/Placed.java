package org.virtionetd.virtio.testdriver;

/**
 * A buffer element as written into a descriptor: guest address, length, direction, and whether the driver
 * allocated it (and so frees it when the chain comes back).
 */
public record Placed(long address, int length, boolean writable, boolean allocated) {
    @Override
    public String toString() {
        return (writable ? "W" : "R") + "[0x" + Long.toHexString(address) + "+" + length + "]";
    }
}
