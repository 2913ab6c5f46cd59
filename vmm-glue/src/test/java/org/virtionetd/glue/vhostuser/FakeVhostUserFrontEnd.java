package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.os.Epoll;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * A vhost-user front-end in Java for tests, playing QEMU: connects to the back-end's socket, sends requests
 * with fds in SCM_RIGHTS, reads replies with a timeout. It reuses the production codec and socket code for the
 * well-formed path and has raw senders for malformed input.
 */
final class FakeVhostUserFrontEnd implements AutoCloseable {
    static final long TIMEOUT_MS = 5000;
    static final int NEED_REPLY = VhostUserMessage.VERSION | VhostUserMessage.FLAG_NEED_REPLY;
    static final int PLAIN = VhostUserMessage.VERSION;

    private final int fd;
    private final UnixConnection connection;
    private final Epoll epoll;
    final VhostUserMessage tx = new VhostUserMessage();
    final VhostUserMessage rx = new VhostUserMessage();

    private FakeVhostUserFrontEnd(int fd) throws IOException {
        this.fd = fd;
        this.connection = new UnixConnection(fd);
        this.epoll = new Epoll(2);
        epoll.add(fd, LinuxNative.EPOLLIN | LinuxNative.EPOLLHUP, 1);
    }

    /** Connects, retrying for a while in case the server is still coming up. */
    static FakeVhostUserFrontEnd connect(Path socket) throws IOException {
        long deadline = System.currentTimeMillis() + TIMEOUT_MS;
        while (true) {
            int fd = LinuxNative.unixStreamSocket(false);
            int r = LinuxNative.connectUnix(fd, socket.toString());
            if (r == 0) {
                LinuxNative.setNonBlocking(fd);
                return new FakeVhostUserFrontEnd(fd);
            }
            LinuxNative.close(fd);
            if (System.currentTimeMillis() > deadline) {
                throw new IOException("cannot connect to " + socket + ": errno " + -r);
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException(e);
            }
        }
    }

    private void awaitReadable() throws IOException {
        if (epoll.await((int) TIMEOUT_MS) == 0) {
            throw new IOException("no reply from the back-end within " + TIMEOUT_MS + " ms");
        }
    }

    // ---- sending ----

    FakeVhostUserFrontEnd send(int request, int flags, int size, int... fds) throws IOException {
        tx.header(request, flags, size);
        connection.send(tx, fds);
        return this;
    }

    void sendNoPayload(VhostUserRequest r, int flags, int... fds) throws IOException {
        send(r.id(), flags, 0, fds);
    }

    void sendU64(VhostUserRequest r, int flags, long value, int... fds) throws IOException {
        tx.putLong(0, value);
        send(r.id(), flags, 8, fds);
    }

    void sendState(VhostUserRequest r, int flags, int index, int num) throws IOException {
        tx.putInt(0, index).putInt(4, num);
        send(r.id(), flags, 8);
    }

    void sendAddress(int flags, int index, int ringFlags, long desc, long used, long avail, long log)
            throws IOException {
        tx.putInt(0, index).putInt(4, ringFlags).putLong(8, desc).putLong(16, used).putLong(24, avail)
                .putLong(32, log);
        send(VhostUserRequest.SET_VRING_ADDR.id(), flags, VhostUserMessage.VRING_ADDRESS_SIZE);
    }

    /** A memory region as (guest address, size, user address, mmap offset). */
    record Region(long guest, long size, long user, long offset) {
    }

    void sendMemTable(int flags, Region[] regions, int... fds) throws IOException {
        tx.putInt(0, regions.length).putInt(4, 0);
        for (int i = 0; i < regions.length; i++) {
            putRegion(i, regions[i]);
        }
        send(VhostUserRequest.SET_MEM_TABLE.id(), flags, 8 + 32 * regions.length, fds);
    }

    void sendSingleRegion(VhostUserRequest r, int flags, Region region, int... fds) throws IOException {
        tx.putLong(0, 0);
        putRegion(0, region);
        send(r.id(), flags, 40, fds);
    }

    private void putRegion(int i, Region r) {
        int at = 8 + 32 * i;
        tx.putLong(at, r.guest()).putLong(at + 8, r.size()).putLong(at + 16, r.user()).putLong(at + 24, r.offset());
    }

    /** Sends header + arbitrary payload bytes as they are, and any number of fds (the kernel caps at 253). */
    void sendRaw(int request, int flags, int size, byte[] payload, int[] fds) throws IOException {
        ByteBuffer frame = ByteBuffer.allocateDirect(12 + payload.length).order(ByteOrder.nativeOrder());
        frame.putInt(0, request).putInt(4, flags).putInt(8, size).put(12, payload);
        ByteBuffer iov = ByteBuffer.allocateDirect(16).order(ByteOrder.nativeOrder());
        iov.putLong(0, LinuxNative.address(frame)).putLong(8, frame.capacity());
        int controlLength = fds.length == 0 ? 0 : (16 + 4 * fds.length + 7) & ~7;
        ByteBuffer control = ByteBuffer.allocateDirect(Math.max(8, controlLength)).order(ByteOrder.nativeOrder());
        if (fds.length > 0) {
            control.putLong(0, 16 + 4L * fds.length).putInt(8, LinuxNative.SOL_SOCKET)
                    .putInt(12, LinuxNative.SCM_RIGHTS);
            for (int i = 0; i < fds.length; i++) {
                control.putInt(16 + 4 * i, fds[i]);
            }
        }
        ByteBuffer msg = ByteBuffer.allocateDirect(56).order(ByteOrder.nativeOrder());
        msg.putLong(16, LinuxNative.address(iov)).putLong(24, 1);
        if (fds.length > 0) {
            msg.putLong(32, LinuxNative.address(control)).putLong(40, controlLength);
        }
        long r = LinuxNative.sendmsg(fd, LinuxNative.address(msg), LinuxNative.MSG_NOSIGNAL);
        if (r < 0) {
            throw new IOException("raw sendmsg failed: errno " + -r + " (" + LinuxNative.strerror((int) -r) + ")");
        }
        if (r != frame.capacity()) {
            throw new IOException("raw sendmsg sent " + r + " of " + frame.capacity() + " bytes");
        }
    }

    // ---- receiving ----

    /** The next reply; fails on timeout or if the back-end closed the connection. */
    VhostUserMessage reply() throws IOException {
        try {
            if (!connection.receive(rx, this::awaitReadable)) {
                throw new IOException("the back-end closed the connection instead of replying");
            }
        } catch (VhostUserException e) {
            throw new IOException("malformed reply: " + e.getMessage(), e);
        }
        rx.closeFds();
        if ((rx.flags() & VhostUserMessage.FLAG_REPLY) == 0 || (rx.flags() & 3) != 1) {
            throw new IOException("reply to " + VhostUserRequest.describe(rx.request()) + " has flags 0x"
                    + Integer.toHexString(rx.flags()) + ", expected version 1 and the reply flag");
        }
        return rx;
    }

    /** The next reply, checked to answer {@code r}, as its u64. */
    long replyU64(VhostUserRequest r) throws IOException {
        VhostUserMessage m = reply();
        if (m.request() != r.id() || m.size() != 8) {
            throw new IOException("expected a u64 reply to " + r + ", got " + VhostUserRequest.describe(m.request())
                    + " with size " + m.size());
        }
        return m.u64();
    }

    /** True if the back-end closed the connection (EOF) within the timeout, without sending anything more. */
    boolean closedByPeer() throws IOException {
        try {
            boolean got = connection.receive(rx, this::awaitReadable);
            rx.closeFds();
            if (got) {
                throw new IOException("expected the connection to be closed, got a reply to "
                        + VhostUserRequest.describe(rx.request()));
            }
            return true;
        } catch (VhostUserException e) {
            return true;
        }
    }

    /** A round trip: all earlier messages have been handled when this returns. */
    long features() throws IOException {
        sendNoPayload(VhostUserRequest.GET_FEATURES, PLAIN);
        return replyU64(VhostUserRequest.GET_FEATURES);
    }

    @Override
    public void close() {
        epoll.close();
        connection.close();
    }
}
