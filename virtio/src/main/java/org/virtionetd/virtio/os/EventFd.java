package org.virtionetd.virtio.os;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A Linux eventfd: the kick and call doorbells of vhost-user, and the wake-up of an event loop.
 * The 8-byte buffers are allocated once, so signalling and draining do not allocate.
 */
public final class EventFd implements AutoCloseable {
    private final int fd;
    private final boolean owned;
    private final ByteBuffer one = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder());
    private final ByteBuffer sink = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder());
    private final jnr.ffi.Pointer onePtr;
    private final jnr.ffi.Pointer sinkPtr;

    private EventFd(int fd, boolean owned) {
        this.fd = fd;
        this.owned = owned;
        one.putLong(0, 1L);
        onePtr = jnr.ffi.Pointer.wrap(LinuxNative.runtime(), LinuxNative.address(one));
        sinkPtr = jnr.ffi.Pointer.wrap(LinuxNative.runtime(), LinuxNative.address(sink));
    }

    /** A new non-blocking eventfd, closed by {@link #close()}. */
    public static EventFd create() throws IOException {
        return new EventFd(LinuxNative.eventfd(), true);
    }

    /** Wraps an eventfd received from elsewhere (SCM_RIGHTS); {@link #close()} closes it. */
    public static EventFd adopt(int fd) {
        return new EventFd(fd, true);
    }

    public int fd() {
        return fd;
    }

    /** Adds one to the counter; the reader wakes up. An EAGAIN (counter saturated) still means "signalled". */
    public void signal() {
        LinuxNative.fast().write(fd, onePtr, 8);
    }

    /** Reads and resets the counter; returns the value, 0 if nothing was signalled (non-blocking fd). */
    public long drain() {
        long r = LinuxNative.fast().read(fd, sinkPtr, 8);
        return r == 8 ? sink.getLong(0) : 0;
    }

    @Override
    public void close() {
        if (owned) {
            LinuxNative.close(fd);
        }
    }
}
