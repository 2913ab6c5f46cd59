package org.virtionetd.virtio.os;

import jnr.posix.CmsgHdr;
import jnr.posix.MsgHdr;

import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * sendmsg(2) and recvmsg(2) on a unix stream socket with file descriptors in SCM_RIGHTS ancillary data (unix(7),
 * cmsg(3)), through jnr-posix's {@code MsgHdr} and {@code CmsgHdr}: JDK 17 channels cannot pass fds. One per
 * connection, used by one thread at a time; it remembers the fds the last {@link #receive} brought.
 *
 * <p>Native memory: {@code MsgHdr.setIov} allocates the iovec array from jnr-ffi's temporary memory and keeps no
 * Java reference to it, and jnr-ffi frees a block (two pages) of temporary memory once no Java object allocated in
 * it is reachable. So each call allocates its msghdr before the iovec and a small keeper after it, and holds both
 * until the system call has returned: the few bytes allocated between them cannot fill a block, so the iovec lies
 * in the block of one of the two. The control buffer is held by the {@code CmsgHdr} that allocated it.
 */
public final class ScmRights {
    private static final int FD_BYTES = 4;

    private final int maxFds;
    private final int[] received;
    private int receivedCount;
    private boolean truncated;

    /** Room for {@code maxFds} fds in each received message; more are closed by the kernel ({@link #truncated}). */
    public ScmRights(int maxFds) {
        if (maxFds <= 0) {
            throw new IllegalArgumentException("maxFds " + maxFds + " must be positive");
        }
        this.maxFds = maxFds;
        this.received = new int[maxFds];
    }

    /**
     * One recvmsg(2) with MSG_CMSG_CLOEXEC into {@code into} from its position to its limit (a direct buffer; the
     * position does not move). Returns the bytes received (0 at end of stream) or -errno. The fds that came with
     * them ({@link #receivedFd}) belong to the caller, who must close them.
     */
    public long receive(int fd, ByteBuffer into) {
        receivedCount = 0;
        truncated = false;
        MsgHdr msg = LinuxPosix.NATIVE.allocateMsgHdr();
        msg.setIov(new ByteBuffer[] {into});
        CmsgHdr control = msg.allocateControl(maxFds * FD_BYTES);
        jnr.ffi.Pointer keeper = keeper();
        int r = LinuxPosix.NATIVE.recvmsg(fd, msg, LinuxNative.MSG_CMSG_CLOEXEC);
        if (r < 0) {
            int errno = LinuxPosix.errno();
            Reference.reachabilityFence(msg);
            Reference.reachabilityFence(control);
            Reference.reachabilityFence(keeper);
            return -errno;
        }
        for (CmsgHdr c : msg.getControls()) {
            if (c.getLevel() == LinuxNative.SOL_SOCKET && c.getType() == LinuxNative.SCM_RIGHTS) {
                ByteBuffer data = c.getData(); // a copy, big-endian like every new ByteBuffer; null if empty
                if (data != null) {
                    data.order(ByteOrder.nativeOrder());
                    for (int i = 0; i + FD_BYTES <= data.limit(); i += FD_BYTES) {
                        keep(data.getInt(i));
                    }
                }
            }
        }
        if ((msg.getFlags() & LinuxNative.MSG_CTRUNC) != 0) {
            truncated = true;
        }
        Reference.reachabilityFence(control);
        Reference.reachabilityFence(keeper);
        return r;
    }

    private void keep(int fd) {
        if (receivedCount < maxFds) {
            received[receivedCount++] = fd;
        } else {
            LinuxNative.close(fd);
            truncated = true;
        }
    }

    /** How many fds the last {@link #receive} brought. */
    public int receivedFds() {
        return receivedCount;
    }

    public int receivedFd(int i) {
        if (i < 0 || i >= receivedCount) {
            throw new IndexOutOfBoundsException("fd " + i + " of " + receivedCount + " received");
        }
        return received[i];
    }

    /**
     * Whether the last {@link #receive} was sent more fds than {@code maxFds} (MSG_CTRUNC): the kernel closed
     * the ones that did not fit; the others are in {@link #receivedFd} as usual.
     */
    public boolean truncated() {
        return truncated;
    }

    /**
     * One sendmsg(2) with MSG_NOSIGNAL of {@code from} between its position and limit (a direct buffer; the
     * position does not move), with {@code fds} attached if there are any. Returns the bytes sent or -errno.
     */
    public long send(int fd, ByteBuffer from, int[] fds) {
        if (fds.length > maxFds) {
            throw new IllegalArgumentException(fds.length + " fds, at most " + maxFds);
        }
        MsgHdr msg = LinuxPosix.NATIVE.allocateMsgHdr();
        msg.setIov(new ByteBuffer[] {from});
        CmsgHdr control = null;
        if (fds.length > 0) {
            control = msg.allocateControl(fds.length * FD_BYTES);
            control.setLevel(LinuxNative.SOL_SOCKET);
            control.setType(LinuxNative.SCM_RIGHTS);
            // setData copies from the position to the capacity.
            ByteBuffer data = ByteBuffer.allocate(fds.length * FD_BYTES).order(ByteOrder.nativeOrder());
            for (int f : fds) {
                data.putInt(f);
            }
            data.flip();
            control.setData(data);
        }
        jnr.ffi.Pointer keeper = keeper();
        int r = LinuxPosix.NATIVE.sendmsg(fd, msg, LinuxNative.MSG_NOSIGNAL);
        long result = r >= 0 ? r : -LinuxPosix.errno();
        Reference.reachabilityFence(msg);
        Reference.reachabilityFence(control);
        Reference.reachabilityFence(keeper);
        return result;
    }

    private static jnr.ffi.Pointer keeper() {
        return jnr.ffi.Runtime.getSystemRuntime().getMemoryManager().allocateTemporary(8, false);
    }
}
