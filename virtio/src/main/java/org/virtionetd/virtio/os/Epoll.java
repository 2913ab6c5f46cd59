package org.virtionetd.virtio.os;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A small epoll wrapper for one event-loop thread. Each registered fd carries a 64-bit tag chosen by the caller;
 * {@link #await(int)} fills an internal array of ready tags, so waiting does not allocate.
 */
public final class Epoll implements AutoCloseable {
    /** struct epoll_event is packed on x86-64: u32 events, u64 data = 12 bytes. */
    private static final int EVENT_SIZE = 12;

    private final int epfd;
    private final int capacity;
    private final ByteBuffer events;
    private final jnr.ffi.Pointer eventsPtr;
    private final ByteBuffer ctl = ByteBuffer.allocateDirect(EVENT_SIZE).order(ByteOrder.nativeOrder());
    private final jnr.ffi.Pointer ctlPtr;
    private final long[] readyTags;
    private final int[] readyEvents;

    public Epoll(int capacity) throws IOException {
        this.epfd = LinuxNative.epollCreate();
        this.capacity = capacity;
        this.events = ByteBuffer.allocateDirect(EVENT_SIZE * capacity).order(ByteOrder.nativeOrder());
        this.eventsPtr = jnr.ffi.Pointer.wrap(LinuxNative.runtime(), LinuxNative.address(events));
        this.ctlPtr = jnr.ffi.Pointer.wrap(LinuxNative.runtime(), LinuxNative.address(ctl));
        this.readyTags = new long[capacity];
        this.readyEvents = new int[capacity];
    }

    public void add(int fd, int eventMask, long tag) throws IOException {
        control(LinuxNative.EPOLL_CTL_ADD, fd, eventMask, tag, "EPOLL_CTL_ADD");
    }

    public void modify(int fd, int eventMask, long tag) throws IOException {
        control(LinuxNative.EPOLL_CTL_MOD, fd, eventMask, tag, "EPOLL_CTL_MOD");
    }

    /** Removes fd; a closed or unknown fd is not an error here (it may already be gone). */
    public void remove(int fd) {
        ctl.putInt(0, 0).putLong(4, 0);
        LinuxNative.fast().epoll_ctl(epfd, LinuxNative.EPOLL_CTL_DEL, fd, ctlPtr);
    }

    private void control(int op, int fd, int mask, long tag, String name) throws IOException {
        ctl.putInt(0, mask).putLong(4, tag);
        if (LinuxNative.fast().epoll_ctl(epfd, op, fd, ctlPtr) != 0) {
            int errno = LinuxNative.runtime().getLastError();
            throw new IOException("epoll_ctl(" + name + ", fd=" + fd + ") failed: errno " + errno
                    + " (" + LinuxNative.strerror(errno) + ")");
        }
    }

    /** Waits up to timeoutMillis (-1: forever). Returns the number of ready entries (0 on timeout or EINTR). */
    public int await(int timeoutMillis) throws IOException {
        int n = LinuxNative.fast().epoll_wait(epfd, eventsPtr, capacity, timeoutMillis);
        if (n < 0) {
            int errno = LinuxNative.runtime().getLastError();
            if (errno == LinuxNative.EINTR) {
                return 0;
            }
            throw new IOException("epoll_wait failed: errno " + errno + " (" + LinuxNative.strerror(errno) + ")");
        }
        for (int i = 0; i < n; i++) {
            readyEvents[i] = events.getInt(i * EVENT_SIZE);
            readyTags[i] = events.getLong(i * EVENT_SIZE + 4);
        }
        return n;
    }

    public long readyTag(int i) {
        return readyTags[i];
    }

    public int readyEvents(int i) {
        return readyEvents[i];
    }

    @Override
    public void close() {
        LinuxNative.close(epfd);
    }
}
