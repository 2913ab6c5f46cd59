package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One connected AF_UNIX stream socket that carries vhost-user messages with fds in SCM_RIGHTS ancillary data
 * (JDK 17 channels cannot receive those, so this builds struct msghdr itself and calls recvmsg/sendmsg).
 *
 * <p>The socket is non-blocking; when no data is there the {@link Waiter} is asked to wait, which lets the owner
 * stop a read that would otherwise block forever.
 */
public final class UnixConnection implements AutoCloseable {
    /** struct msghdr on x86-64 / aarch64 (LP64). */
    private static final int MSG_NAME = 0;
    private static final int MSG_NAMELEN = 8;
    private static final int MSG_IOV = 16;
    private static final int MSG_IOVLEN = 24;
    private static final int MSG_CONTROL = 32;
    private static final int MSG_CONTROLLEN = 40;
    private static final int MSG_FLAGS = 48;
    private static final int MSGHDR_SIZE = 56;
    /** struct cmsghdr: size_t cmsg_len, int level, int type, then data aligned to 8. */
    private static final int CMSG_HEADER = 16;
    /** CMSG_SPACE(8 fds * 4 bytes). */
    private static final int CONTROL_SIZE = CMSG_HEADER + VhostUserMessage.MAX_FDS * 4;

    /** Waits until the socket may be readable; throws to abandon the read (server shutting down, timeout). */
    @FunctionalInterface
    public interface Waiter {
        void awaitReadable() throws IOException;
    }

    private final int fd;
    private final ByteBuffer msghdr = ByteBuffer.allocateDirect(MSGHDR_SIZE).order(ByteOrder.nativeOrder());
    private final ByteBuffer iovec = ByteBuffer.allocateDirect(16).order(ByteOrder.nativeOrder());
    private final ByteBuffer control = ByteBuffer.allocateDirect(CONTROL_SIZE).order(ByteOrder.nativeOrder());
    private final long msghdrAddress = LinuxNative.address(msghdr);
    private final long iovecAddress = LinuxNative.address(iovec);
    private final long controlAddress = LinuxNative.address(control);
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
        long base = LinuxNative.address(buf);
        int got = readFully(base, 0, VhostUserMessage.HEADER_SIZE, message, waiter, true);
        if (got == 0) {
            return false;
        }
        int size = message.size();
        if (size < 0 || size > VhostUserMessage.MAX_PAYLOAD) {
            throw VhostUserException.malformed(VhostUserRequest.describe(message.request()) + ": payload size "
                    + Integer.toUnsignedString(size) + " is larger than any message we take ("
                    + VhostUserMessage.MAX_PAYLOAD + ")");
        }
        readFully(base, VhostUserMessage.HEADER_SIZE, size, message, waiter, false);
        return true;
    }

    private int readFully(long base, int offset, int length, VhostUserMessage message, Waiter waiter,
                          boolean header) throws IOException, VhostUserException {
        int done = 0;
        while (done < length) {
            long r = recv(base + offset + done, length - done, message);
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

    private long recv(long address, int length, VhostUserMessage message) throws VhostUserException {
        iovec.putLong(0, address).putLong(8, length);
        msghdr.putLong(MSG_NAME, 0).putInt(MSG_NAMELEN, 0).putLong(MSG_IOV, iovecAddress).putLong(MSG_IOVLEN, 1)
                .putLong(MSG_CONTROL, controlAddress).putLong(MSG_CONTROLLEN, CONTROL_SIZE).putInt(MSG_FLAGS, 0);
        long r = LinuxNative.recvmsg(fd, msghdrAddress, LinuxNative.MSG_CMSG_CLOEXEC);
        if (r < 0) {
            return r;
        }
        long controlLength = msghdr.getLong(MSG_CONTROLLEN);
        int flags = msghdr.getInt(MSG_FLAGS);
        boolean overflow = false;
        int at = 0;
        while (at + CMSG_HEADER <= controlLength) {
            long cmsgLength = control.getLong(at);
            int level = control.getInt(at + 8);
            int type = control.getInt(at + 12);
            if (cmsgLength < CMSG_HEADER || at + cmsgLength > controlLength) {
                break;
            }
            if (level == LinuxNative.SOL_SOCKET && type == LinuxNative.SCM_RIGHTS) {
                int n = (int) ((cmsgLength - CMSG_HEADER) / 4);
                for (int i = 0; i < n; i++) {
                    int received = control.getInt(at + CMSG_HEADER + 4 * i);
                    if (!message.addFd(received)) {
                        LinuxNative.close(received);
                        overflow = true;
                    }
                }
            }
            at += (int) ((cmsgLength + 7) & ~7L);
        }
        if (overflow || (flags & LinuxNative.MSG_CTRUNC) != 0) {
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
        long base = LinuxNative.address(message.buffer());
        int length = message.frameLength();
        int done = 0;
        boolean withFds = fds.length > 0;
        while (done < length) {
            iovec.putLong(0, base + done).putLong(8, length - done);
            msghdr.putLong(MSG_NAME, 0).putInt(MSG_NAMELEN, 0).putLong(MSG_IOV, iovecAddress)
                    .putLong(MSG_IOVLEN, 1).putInt(MSG_FLAGS, 0);
            if (withFds) {
                int cmsgLength = CMSG_HEADER + 4 * fds.length;
                control.putLong(0, cmsgLength).putInt(8, LinuxNative.SOL_SOCKET).putInt(12, LinuxNative.SCM_RIGHTS);
                for (int i = 0; i < fds.length; i++) {
                    control.putInt(CMSG_HEADER + 4 * i, fds[i]);
                }
                msghdr.putLong(MSG_CONTROL, controlAddress).putLong(MSG_CONTROLLEN, (cmsgLength + 7) & ~7);
            } else {
                msghdr.putLong(MSG_CONTROL, 0).putLong(MSG_CONTROLLEN, 0);
            }
            long r = LinuxNative.sendmsg(fd, msghdrAddress, LinuxNative.MSG_NOSIGNAL);
            if (r > 0) {
                done += (int) r;
                withFds = false;
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
