package org.virtionetd.virtio.os;

import jnr.constants.platform.Fcntl;
import jnr.posix.FileStat;
import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;

import java.io.IOException;

/**
 * The POSIX control-plane calls that jnr-posix provides: fcntl, umask, fstat, open, close, dup, dup2, ftruncate,
 * socketpair, and (for {@link ScmRights}) sendmsg/recvmsg with its {@code MsgHdr}. Each wrapper returns the result
 * or throws an {@link IOException} that names the call, the arguments that matter and errno, as
 * {@link LinuxNative} does; callers reach these through LinuxNative's methods of the same names.
 *
 * <p>What jnr-posix 3.2.5 does not have stays in {@link LinuxNative}: socket, bind, listen, accept4 and connect
 * (its POSIX and LibC interfaces declare none of them), memfd_create and dup3 (likewise), mmap and ioctl (JNA),
 * and the per-batch calls epoll, eventfd, read and writev (jnr-ffi, no per-call conversion).
 */
final class LinuxPosix {
    /** The native implementation, never the pure-Java fallback; every wrapper here checks the result itself. */
    static final POSIX NATIVE = POSIXFactory.getNativePOSIX();

    private LinuxPosix() {
    }

    private static IOException failure(String call) {
        int errno = NATIVE.errno();
        return new IOException(call + " failed: errno " + errno + " (" + LinuxNative.strerror(errno) + ")");
    }

    /** errno of the last jnr-posix call on this thread. */
    static int errno() {
        return NATIVE.errno();
    }

    static void setNonBlocking(int fd) throws IOException {
        int flags = NATIVE.fcntl(fd, Fcntl.F_GETFL);
        if (flags < 0 || NATIVE.fcntl(fd, Fcntl.F_SETFL, flags | LinuxNative.O_NONBLOCK) < 0) {
            throw failure("fcntl(fd=" + fd + ", O_NONBLOCK)");
        }
    }

    static long fileSize(int fd) throws IOException {
        FileStat stat = NATIVE.allocateStat();
        if (NATIVE.fstat(fd, stat) != 0) {
            throw failure("fstat(fd=" + fd + ")");
        }
        return stat.st_size();
    }

    /**
     * Runs {@code create} with the umask narrowed to 0177. The umask is process-wide: one lock keeps two of these
     * from restoring each other's value, and a file another thread creates meanwhile is made more private, never
     * less.
     */
    static void withPrivateUmask(LinuxNative.FileCreation create) throws IOException {
        synchronized (LinuxPosix.class) {
            int old = NATIVE.umask(0177);
            try {
                create.run();
            } finally {
                NATIVE.umask(old);
            }
        }
    }

    static int open(String path, int flags) throws IOException {
        int fd = NATIVE.open(path, flags, 0);
        if (fd < 0) {
            throw failure("open(" + path + ")");
        }
        return fd;
    }

    static void close(int fd) {
        NATIVE.close(fd);
    }

    static int dup(int fd) throws IOException {
        int r = NATIVE.dup(fd);
        if (r < 0) {
            throw failure("dup(" + fd + ")");
        }
        return r;
    }

    static void dup2(int oldfd, int newfd) throws IOException {
        if (NATIVE.dup2(oldfd, newfd) < 0) {
            throw failure("dup2(" + oldfd + ", " + newfd + ")");
        }
    }

    /** ftruncate(2): 0, or -errno. */
    static int ftruncate(int fd, long length) {
        return NATIVE.ftruncate(fd, length) == 0 ? 0 : -NATIVE.errno();
    }

    /** A connected pair of AF_UNIX stream sockets, close-on-exec: {fd, fd}. */
    static int[] unixStreamPair() throws IOException {
        int[] fds = new int[2];
        if (NATIVE.socketpair(LinuxNative.AF_UNIX, LinuxNative.SOCK_STREAM | LinuxNative.SOCK_CLOEXEC, 0, fds) != 0) {
            throw failure("socketpair(AF_UNIX, SOCK_STREAM)");
        }
        return fds;
    }
}
