package org.virtionetd.virtio.net;

/**
 * One region of the device's guest memory, guest-physical {@code [guestAddress, guestAddress + size)}, and the
 * receive buffers the device wrote frames into there since that memory was set, summed over the queue pairs
 * (counted as {@link RxBufferCounts} says; approximate while traffic runs).
 */
public record RegionRxBuffers(long guestAddress, long size, long rxBuffers) {
}
