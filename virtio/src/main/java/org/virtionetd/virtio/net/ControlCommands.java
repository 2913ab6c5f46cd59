package org.virtionetd.virtio.net;

/**
 * What control commands change in the device (5.1.6.5). Implemented by {@link VirtioNetDevice}; each method
 * returns true for VIRTIO_NET_OK and false for VIRTIO_NET_ERR.
 */
interface ControlCommands {
    boolean setRxMode(int command, boolean on);

    boolean setMacTables(long[] unicast, long[] multicast);

    boolean setMacAddress(byte[] mac);

    boolean setVlan(int vid, boolean add);

    boolean announceAck();

    boolean setQueuePairs(int pairs);

    boolean setGuestOffloads(long offloads);
}
