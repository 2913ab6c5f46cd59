package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.os.ScmRights;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * One connected AF_UNIX stream socket that carries vhost-user messages with fds in SCM_RIGHTS ancillary data
 * (vhost-user.rst, "Communication"; sent and received by {@link ScmRights}: JDK 17 channels cannot pass fds).
 *
 * <p>The socket is non-blocking; when no data is there the {@link Waiter} is asked to wait, which lets the owner
 * stop a read that would otherwise block forever.
 */
public final class UnixConnection implements AutoCloseable {
    /** Waits until the socket may be readable; throws to abandon the read (server shutting down, timeout). */
    @FunctionalInterface
    public interface Waiter {
        void awaitReadable() throws IOException;
    }

    private static final int[] NO_FDS = new int[0];

    private final int fd;
    private final ScmRights io = new ScmRights(VhostUserMessage.MAX_FDS);
    private boolean closed;

    public UnixConnection(int fd) {
        this.fd = fd;
    }

    public int fd() {
        return fd;
    }

    /**
     * Reads one message (header, then {@code size} payload bytes) and the fds sent with it.
     * Returns false if the peer closed the connection between messages.
     */
    public boolean receive(VhostUserMessage message, Waiter waiter) throws IOException, VhostUserException {
        message.closeFds();
        ByteBuffer buf = message.buffer();
        int got = readFully(buf, 0, VhostUserMessage.HEADER_SIZE, message, waiter, true);
        if (got == 0) {
            return false;
        }
        int size = message.size();
        if (size < 0 || size > VhostUserMessage.MAX_PAYLOAD) {
            throw VhostUserException.malformed(VhostUserRequest.describe(message.request()) + ": payload size "
                    + Integer.toUnsignedString(size) + " is larger than any message we take ("
                    + VhostUserMessage.MAX_PAYLOAD + ")");
        }
        readFully(buf, VhostUserMessage.HEADER_SIZE, size, message, waiter, false);
        return true;
    }

    private int readFully(ByteBuffer buf, int offset, int length, VhostUserMessage message, Waiter waiter,
                          boolean header) throws IOException, VhostUserException {
        int done = 0;
        while (done < length) {
            long r = recv(buf.slice(offset + done, length - done), message);
            if (r > 0) {
                done += (int) r;
            } else if (r == 0) {
                if (header && done == 0) {
                    return 0;
                }
                throw VhostUserException.malformed("connection closed in the middle of "
                        + (header ? "a message header" : VhostUserRequest.describe(message.request())) + " after "
                        + (header ? done : VhostUserMessage.HEADER_SIZE + done) + " bytes");
            } else if (r == -LinuxNative.EAGAIN) {
                waiter.awaitReadable();
            } else if (r != -LinuxNative.EINTR) {
                if (r == -104 && header && done == 0) {
                    return 0; // ECONNRESET between messages: the peer went away
                }
                throw new IOException("recvmsg on vhost-user socket failed: errno " + -r + " ("
                        + LinuxNative.strerror((int) -r) + ")");
            }
        }
        return done;
    }

    /** One recvmsg into {@code into}; the fds that came with it go to {@code message} (or are closed). */
    private long recv(ByteBuffer into, VhostUserMessage message) throws VhostUserException {
        long r = io.receive(fd, into);
        if (r < 0) {
            return r;
        }
        boolean overflow = io.truncated();
        for (int i = 0; i < io.receivedFds(); i++) {
            int received = io.receivedFd(i);
            if (!message.addFd(received)) {
                LinuxNative.close(received);
                overflow = true;
            }
        }
        if (overflow) {
            // The kernel closes the fds that did not fit; ours are closed by message.closeFds().
            throw VhostUserException.malformed(VhostUserRequest.describe(message.request())
                    + ": more than " + VhostUserMessage.MAX_FDS + " file descriptors in one message");
        }
        return r;
    }

    /** Sends {@code message.frameLength()} bytes of the message, with {@code fds} attached if any. */
    public void send(VhostUserMessage message, int... fds) throws IOException {
        if (fds.length > VhostUserMessage.MAX_FDS) {
            throw new IllegalArgumentException(fds.length + " fds, at most " + VhostUserMessage.MAX_FDS);
        }
        ByteBuffer buf = message.buffer();
        int length = message.frameLength();
        int done = 0;
        int[] attach = fds;
        while (done < length) {
            long r = io.send(fd, buf.slice(done, length - done), attach);
            if (r > 0) {
                done += (int) r;
                attach = NO_FDS; // the fds went with the first bytes
            } else if (r != -LinuxNative.EINTR) {
                // A reply is a few hundred bytes: EAGAIN means the peer stopped reading; treat it as gone.
                throw new IOException("sendmsg of " + VhostUserRequest.describe(message.request())
                        + " failed: errno " + -r + " (" + LinuxNative.strerror((int) -r) + ")");
            }
        }
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            LinuxNative.close(fd);
        }
    }
}
