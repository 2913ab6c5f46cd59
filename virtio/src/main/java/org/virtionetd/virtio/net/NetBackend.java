package org.virtionetd.virtio.net;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * Where the device's packets go and come from: one instance per queue pair (a tap queue, a switch port...).
 * Modelled on bhyve's net_backends: backends see only buffers and feature bits, never virtqueues.
 *
 * <p>Threading: send, peekLength, receive are called from the queue pair's event-loop thread only;
 * configure before the loops start; discardQueued with the pair's loop stopped; setGuestOffloads from the thread
 * serving the control queue (pair 0's), for every pair's backend; capabilities and programmedOffloads from any
 * thread.
 */
public interface NetBackend extends AutoCloseable {

    /** A short name for logs and the feature table, e.g. "tap:tap0". */
    String name();

    /**
     * The offload feature bits ({@link VirtioNetFeature#OFFLOADS}) this backend can carry: HOST_* and CSUM when it
     * accepts GSO / partially checksummed frames, GUEST_* when it may deliver them. The device offers only these.
     */
    long capabilities();

    /**
     * Called when the driver's features are settled (FEATURES_OK, or vhost-user SET_FEATURES) and before any
     * packet moves. From now on every packet in either direction starts with a vnet header of
     * {@code vnetHeaderLength} bytes (10 or 12); the backend programs its own offloads from the GUEST_* bits.
     */
    void configure(long negotiatedFeatures, int vnetHeaderLength) throws IOException;

    /**
     * The driver changed the offloads it accepts (VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, 5.1.6.5.6.1): only GUEST_*
     * bits. Frames delivered afterwards must not need anything outside this set.
     */
    void setGuestOffloads(long guestOffloads) throws IOException;

    /**
     * Sends one packet (validated header + frame). Returns false if the backend dropped it (e.g. its queue is
     * full); the device counts that. Throws only for errors that make the backend unusable.
     */
    boolean send(Packet packet) throws IOException;

    /** Length (vnet header + frame) of the next frame waiting, 0 if none. */
    int peekLength() throws IOException;

    /**
     * Moves the next frame, vnet header first, into {@code slices[0 .. count)}; returns its length, 0 if none.
     * The caller provides at least {@link #peekLength()} bytes of room. The header's num_buffers is set by the
     * device afterwards.
     */
    int receive(ByteBuffer[] slices, int count) throws IOException;

    /**
     * The most bytes (vnet header included) one frame from this backend can take, when it can read frames straight
     * into the guest's buffers with {@link #receiveDirect}; 0 when it cannot (then the device uses
     * {@link #peekLength()} and {@link #receive}). The device calls receiveDirect only with at least this much room,
     * so that no frame is ever cut. May change after {@link #configure}.
     */
    default int directReceiveRoom() {
        return 0;
    }

    /**
     * Reads the next frame, vnet header first, with one scatter read into the {@code count} entries of the iovec
     * array (struct iovec of sys/uio.h: 16 bytes each, native order) at native address {@code iov}, which hold at
     * least {@link #directReceiveRoom()} bytes of guest buffers. Returns the frame's length, 0 if none is waiting;
     * a length larger than the room means the frame was cut and is lost. The device sets num_buffers afterwards.
     * Only called when no frame was peeked ({@link #peekLength()}) and not yet received.
     */
    default int receiveDirect(long iov, int count) throws IOException {
        throw new UnsupportedOperationException(name() + " cannot receive into guest buffers directly");
    }

    /**
     * Drops the frames waiting for the guest (a tap's kernel queue, a switch port's ring, frames staged here) and
     * returns how many. Called when a pair's receive queue starts after a reset or a stop, with the pair's loop
     * stopped: they arrived while no driver ran the device (seconds or minutes ago: old TCP segments), and a NIC
     * without a running driver drops what it receives. Frames read one by one are at most {@code limit}, so that
     * a flood cannot hold up the start; a queue dropped in one step is dropped whole. A backend with nothing that
     * outlives a driver (a generator) keeps the default.
     */
    default int discardQueued(int limit) throws IOException {
        return 0;
    }

    /** A file descriptor that becomes readable when a frame may be waiting, or -1 (then the device polls). */
    int receiveReadyFd();

    /**
     * False while the backend has lost its host side (a tap deleted under the device): nothing can move either
     * way, the device reports its link down and its loop calls {@link #reattach()} now and then. Any thread.
     */
    default boolean attached() {
        return true;
    }

    /**
     * The readiness fd reported an error (EPOLLERR/EPOLLHUP): find out whether the host side is gone, so that
     * {@link #attached()} tells. Called on the loop thread; also while the device is not reading.
     */
    default void checkAttachment() {
    }

    /**
     * Called by the queue pair's loop, with a bounded backoff, while {@link #attached()} is false: tries to get
     * the host side back with the header length and offloads it had. True once it is back; never throws.
     */
    default boolean reattach() {
        return true;
    }

    /**
     * Whether the driver uses this queue pair (its receive queue enabled, 2.6 / vhost-user SET_VRING_ENABLE, and
     * within the pairs of MQ_VQ_PAIRS_SET, 5.1.6.5.5). A backend that spreads flows over queues (a multi-queue tap)
     * stops giving this one frames while it is disabled; others ignore it. Called from the transport's thread.
     */
    default void setEnabled(boolean enabled) throws IOException {
    }

    /** What the backend programmed into the host side (e.g. "TUN_F_CSUM"), for the feature table. */
    default List<String> programmedOffloads() {
        return List.of();
    }

    @Override
    void close();
}
