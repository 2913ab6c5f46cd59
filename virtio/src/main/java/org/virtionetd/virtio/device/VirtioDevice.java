package org.virtionetd.virtio.device;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.queue.Notifier;

/**
 * A virtio device as a transport (vhost-user server, bhyve glue, tests) drives it. The transport owns sockets,
 * file descriptors and the VMM; the device owns the spec state and the data path.
 *
 * <p>Queue addresses are guest-physical; a transport that receives other addresses (vhost-user gives the
 * front-end's virtual addresses) translates them with {@link GuestMemory#guestAddressOfUser(long)} first.
 */
public interface VirtioDevice extends AutoCloseable {

    /** virtio device id (1 = network). */
    int deviceType();

    /** Number of virtqueues (2 per queue pair, plus the control queue when offered). */
    int queueCount();

    /** Maximum queue size the device accepts. */
    int maxQueueSize();

    /** Features the device offers (including VERSION_1, RING_* bits). */
    long offeredFeatures();

    /** Features the driver acked, as last accepted. */
    long ackedFeatures();

    /**
     * The driver's features. Acceptable ones are applied at once (backends configured). Unacceptable ones (not
     * offered, or a dependency of 5.1.3.1 missing) are refused with {@link VirtioException.Kind#FEATURES} naming
     * the bit, except during the status sequence (DRIVER set), where the refusal is FEATURES_OK not being kept.
     */
    void setDriverFeatures(long features) throws VirtioException;

    /** The guest memory the device may touch; replaced whole (queues must be stopped by the transport). */
    void setMemory(GuestMemory memory);

    /** Sets size and guest-physical ring addresses of queue {@code index} (2.7.2: desc 16, avail 2, used 4 aligned). */
    void setQueue(int index, int size, long descAddress, long availAddress, long usedAddress) throws VirtioException;

    /**
     * Where queue {@code index} starts (vhost-user SET_VRING_BASE), laid out as vhost-user.rst says for the ring
     * layout the features select: split, the 16-bit next avail index; packed, avail index and wrap counter in bits
     * 0-15, used index and wrap counter in 16-31. Checked when the queue starts.
     */
    void setQueueBase(int index, int base) throws VirtioException;

    /** Starts processing queue {@code index}: kicks arrive on {@code kick} (null: the device polls the ring). */
    void startQueue(int index, EventFd kick, Notifier notifier) throws VirtioException;

    /** Replaces the used-buffer notifier of a queue, running or not (vhost-user SET_VRING_CALL). */
    void setNotifier(int index, Notifier notifier);

    /** Enables or disables a queue (vhost-user SET_VRING_ENABLE): a disabled RX queue receives nothing. */
    void setQueueEnabled(int index, boolean enabled);

    /** Stops queue {@code index} and returns its base, laid out as for {@link #setQueueBase} (GET_VRING_BASE). */
    int stopQueue(int index);

    /**
     * As {@link #stopQueue}, for a transport that restarts the queue at once while the driver runs on (a ring
     * stopped around a memory table or dirty log change): a network device then delivers what its backend
     * queued meanwhile, where after a stop it drops that as stale.
     */
    default int pauseQueue(int index) {
        return stopQueue(index);
    }

    /**
     * Whether queue {@code index} runs: started and not stopped or reset since. The device owns that state; a
     * transport asks instead of keeping a copy. False for an index the device does not have.
     */
    boolean queueStarted(int index);

    /**
     * The base of queue {@code index} (as for {@link #setQueueBase}): where it runs now, where it stopped, or the
     * base set since; 0 after a reset or for an index the device does not have.
     */
    int queueBase(int index);

    /** Reads device-specific configuration space (virtio 1.2, 4.1.4.8 / 5.1.4). Out of range: CONFIG. */
    byte[] readConfig(int offset, int length) throws VirtioException;

    /** Writes device-specific configuration space (only mac is writable, legacy; 5.1.4). */
    void writeConfig(int offset, byte[] data) throws VirtioException;

    /** The device status (2.1) as last set by the driver, with NEEDS_RESET if the device set it. */
    int status();

    /**
     * The driver writes the status field: FEATURES_OK is refused (not kept) if the acked features are not
     * acceptable; 0 resets the device (2.1.2).
     */
    void setStatus(int status);

    /**
     * The front-end finished a migration and asks us to announce the guest's MAC on the network
     * (vhost-user SEND_RARP): the device sends a RARP broadcast from {@code mac} through its backend.
     */
    void sendRarp(byte[] mac);

    /** The MTU the front-end gave the guest (vhost-user NET_SET_MTU); shown in config space if MTU is offered. */
    void setMtu(int mtu) throws VirtioException;

    /** Back to the state after construction: queues stopped, features and status cleared (2.4 Device Reset). */
    void reset();

    @Override
    void close();
}
