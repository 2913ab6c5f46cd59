package org.virtionetd.virtio.os;

import com.sun.jna.Native;
import com.sun.jna.NativeLong;
import com.sun.jna.Pointer;
import jnr.ffi.LibraryLoader;
import jnr.ffi.annotations.IgnoreError;
import jnr.ffi.annotations.SaveError;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Every Linux system call the project makes goes through this package, and callers outside it call this class
 * (or {@link ScmRights}, {@link EventFd}, {@link Epoll}): no class outside this package makes a native call.
 *
 * <p>Three bindings, by what each call needs. The POSIX control-plane calls jnr-posix has (fcntl, umask, fstat,
 * open, close, dup, dup2, ftruncate, socketpair) are made in {@link LinuxPosix}, and sendmsg/recvmsg with
 * SCM_RIGHTS in {@link ScmRights} with its MsgHdr; the methods here of those names forward to LinuxPosix.
 * What jnr-posix lacks goes through JNA direct mapping here (called once per setup, 126 ns is fine): mmap,
 * munmap, ioctl, memfd_create, dup3, the unix socket calls socket, bind, listen, accept4 and connect, and a
 * sendmsg of a msghdr the caller laid out (test front-ends that send malformed ancillary data). Calls
 * made per batch on the data path (eventfd, epoll, read, writev) go through jnr-ffi (17 ns). Each wrapper
 * returns the result or throws an {@link IOException} that names the call, the arguments that matter and errno.
 */
public final class LinuxNative {
    public static final int PROT_READ = 1;
    public static final int PROT_WRITE = 2;
    public static final int MAP_SHARED = 1;
    public static final int MFD_CLOEXEC = 1;
    public static final int EFD_NONBLOCK = 0x800;
    public static final int EFD_CLOEXEC = 0x80000;
    public static final int EPOLL_CLOEXEC = 0x80000;
    public static final int EPOLLIN = 0x1;
    public static final int EPOLLOUT = 0x4;
    public static final int EPOLLERR = 0x8;
    public static final int EPOLLHUP = 0x10;
    public static final int EPOLL_CTL_ADD = 1;
    public static final int EPOLL_CTL_DEL = 2;
    public static final int EPOLL_CTL_MOD = 3;
    public static final int O_RDWR = 2;
    public static final int O_NONBLOCK = 0x800;
    public static final int O_CLOEXEC = 0x80000;
    public static final int EAGAIN = 11;
    public static final int EINTR = 4;
    public static final int ECONNREFUSED = 111;
    public static final int ENOENT = 2;
    /** File descriptor in bad state: e.g. a tun fd whose interface was deleted (tun.c, tfile->tun == NULL). */
    public static final int EBADFD = 77;
    public static final int AF_UNIX = 1;
    public static final int SOCK_STREAM = 1;
    public static final int SOCK_NONBLOCK = 0x800;
    public static final int SOCK_CLOEXEC = 0x80000;
    public static final int SOL_SOCKET = 1;
    public static final int SCM_RIGHTS = 1;
    public static final int MSG_CTRUNC = 0x8;
    public static final int MSG_DONTWAIT = 0x40;
    public static final int MSG_NOSIGNAL = 0x4000;
    public static final int MSG_CMSG_CLOEXEC = 0x40000000;
    /** sun_path of struct sockaddr_un holds 108 bytes including the terminating NUL. */
    public static final int UNIX_PATH_MAX = 108;

    private static final long MAP_FAILED = -1L;

    /** JNA direct-mapped libc: setup-time calls. */
    private static final class Libc {
        static {
            Native.register(Libc.class, "c");
        }

        static native Pointer mmap(Pointer addr, long length, int prot, int flags, int fd, long offset);

        static native int munmap(Pointer addr, long length);

        static native int memfd_create(String name, int flags);

        static native int ioctl(int fd, NativeLong request, Pointer arg);

        static native int ioctl(int fd, NativeLong request, long arg);

        static native int dup3(int oldFd, int newFd, int flags);

        static native int socket(int domain, int type, int protocol);

        static native int bind(int fd, Pointer address, int length);

        static native int listen(int fd, int backlog);

        static native int accept4(int fd, Pointer address, Pointer length, int flags);

        static native int connect(int fd, Pointer address, int length);

        static native long sendmsg(int fd, Pointer msghdr, int flags);
    }

    /** jnr-ffi bindings: the calls made once per batch. */
    public interface FastLibc {
        @SaveError
        int eventfd(int initval, int flags);

        @SaveError
        int epoll_create1(int flags);

        @SaveError
        int epoll_ctl(int epfd, int op, int fd, jnr.ffi.Pointer event);

        @SaveError
        int epoll_wait(int epfd, jnr.ffi.Pointer events, int maxevents, int timeout);

        @SaveError
        long read(int fd, jnr.ffi.Pointer buf, long count);

        @SaveError
        long write(int fd, jnr.ffi.Pointer buf, long count);

        @IgnoreError
        long write(int fd, @jnr.ffi.annotations.In byte[] buf, long count);

        @SaveError
        long writev(int fd, jnr.ffi.Pointer iov, int iovcnt);

        /** {@code iov} is the iovec array's address: a pointer and a 64-bit integer are passed alike (SysV, AAPCS64). */
        @SaveError
        long readv(int fd, long iov, int iovcnt);
    }

    private static final FastLibc FAST = LibraryLoader.create(FastLibc.class).load("c");
    private static final jnr.ffi.Runtime RUNTIME = jnr.ffi.Runtime.getRuntime(FAST);

    private LinuxNative() {
    }

    public static FastLibc fast() {
        return FAST;
    }

    public static jnr.ffi.Runtime runtime() {
        return RUNTIME;
    }

    private static int errno() {
        return Native.getLastError();
    }

    private static int jnrErrno() {
        return RUNTIME.getLastError();
    }

    private static IOException failure(String call, int errno) {
        return new IOException(call + " failed: errno " + errno + " (" + strerror(errno) + ")");
    }

    /** A short text for the errno values we meet; the number is always printed as well. */
    public static String strerror(int errno) {
        switch (errno) {
            case 1: return "EPERM";
            case 2: return "ENOENT";
            case 4: return "EINTR";
            case 5: return "EIO";
            case 9: return "EBADF";
            case 11: return "EAGAIN";
            case 12: return "ENOMEM";
            case 13: return "EACCES";
            case 14: return "EFAULT";
            case 16: return "EBUSY";
            case 19: return "ENODEV";
            case 22: return "EINVAL";
            case 25: return "ENOTTY";
            case 77: return "EBADFD";
            case 90: return "EMSGSIZE";
            case 105: return "ENOBUFS";
            case 95: return "EOPNOTSUPP";
            case 98: return "EADDRINUSE";
            case 104: return "ECONNRESET";
            case 111: return "ECONNREFUSED";
            case 32: return "EPIPE";
            case 36: return "ENAMETOOLONG";
            default: return "errno " + errno;
        }
    }

    /** Maps {@code length} bytes of {@code fd} at {@code offset}, shared and read-write. Returns the address. */
    public static long mmapShared(int fd, long offset, long length) throws IOException {
        Pointer p = Libc.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
        long address = Pointer.nativeValue(p);
        if (address == MAP_FAILED || address == 0) {
            throw failure("mmap(fd=" + fd + ", offset=" + offset + ", length=" + length + ")", errno());
        }
        return address;
    }

    public static void munmap(long address, long length) throws IOException {
        if (Libc.munmap(new Pointer(address), length) != 0) {
            throw failure("munmap(0x" + Long.toHexString(address) + ", " + length + ")", errno());
        }
    }

    /** Creates an anonymous memory file of {@code size} bytes (the backing of test guests and QEMU's memfd). */
    public static int memfdCreate(String name, long size) throws IOException {
        int fd = Libc.memfd_create(name, MFD_CLOEXEC);
        if (fd < 0) {
            throw failure("memfd_create(" + name + ")", errno());
        }
        int r = LinuxPosix.ftruncate(fd, size);
        if (r != 0) {
            LinuxPosix.close(fd);
            throw failure("ftruncate(memfd " + name + ", " + size + ")", -r);
        }
        return fd;
    }

    public static void close(int fd) {
        if (fd >= 0) {
            LinuxPosix.close(fd);
        }
    }

    public static int dup(int fd) throws IOException {
        return LinuxPosix.dup(fd);
    }

    /**
     * Makes {@code newfd} refer to the file of {@code oldfd} (closing what {@code newfd} referred to, atomically).
     * Used to put a tap fd under a descriptor the JDK owns, so that a FileChannel does the tap's I/O.
     */
    public static void dup2(int oldfd, int newfd) throws IOException {
        LinuxPosix.dup2(oldfd, newfd);
    }

    public static int open(String path, int flags) throws IOException {
        return LinuxPosix.open(path, flags);
    }

    /**
     * ioctl whose argument points at {@code arg}'s memory (a direct buffer, e.g. a struct ifreq); {@code what}
     * names the request in the error message.
     */
    public static int ioctl(int fd, long request, ByteBuffer arg, String what) throws IOException {
        int r = Libc.ioctl(fd, new NativeLong(request), new Pointer(address(arg)));
        if (r < 0) {
            throw failure("ioctl(" + what + ", fd=" + fd + ")", errno());
        }
        return r;
    }

    /** ioctl with an integer argument passed by value (TUNSETOFFLOAD takes its flags this way). */
    public static int ioctl(int fd, long request, long arg, String what) throws IOException {
        int r = Libc.ioctl(fd, new NativeLong(request), arg);
        if (r < 0) {
            throw failure("ioctl(" + what + ", fd=" + fd + ", arg=0x" + Long.toHexString(arg) + ")", errno());
        }
        return r;
    }

    /** Returns -errno instead of throwing, for callers that must try alternatives (offload fallbacks). */
    public static int ioctlOrErrno(int fd, long request, long arg) {
        int r = Libc.ioctl(fd, new NativeLong(request), arg);
        return r < 0 ? -errno() : r;
    }

    public static void setNonBlocking(int fd) throws IOException {
        LinuxPosix.setNonBlocking(fd);
    }

    public static int eventfd() throws IOException {
        int fd = FAST.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) {
            throw failure("eventfd", jnrErrno());
        }
        return fd;
    }

    public static int epollCreate() throws IOException {
        int fd = FAST.epoll_create1(EPOLL_CLOEXEC);
        if (fd < 0) {
            throw failure("epoll_create1", jnrErrno());
        }
        return fd;
    }

    /**
     * Atomically makes {@code newFd} refer to what {@code oldFd} refers to (close-on-exec kept). A thread that
     * writes to {@code newFd} meanwhile reaches either the old or the new file, never a recycled fd number:
     * this is how a vhost-user call eventfd is replaced under a running queue.
     */
    public static void dup3(int oldFd, int newFd) throws IOException {
        if (Libc.dup3(oldFd, newFd, O_CLOEXEC) < 0) {
            throw failure("dup3(" + oldFd + ", " + newFd + ")", errno());
        }
    }

    /** st_size of fstat(2): the length of a memfd or file, checked before mmap so that no access can SIGBUS. */
    public static long fileSize(int fd) throws IOException {
        return LinuxPosix.fileSize(fd);
    }

    /** A connected pair of AF_UNIX stream sockets (socketpair(2)), close-on-exec, blocking. */
    public static int[] unixStreamPair() throws IOException {
        return LinuxPosix.unixStreamPair();
    }

    /** A new AF_UNIX stream socket, close-on-exec, optionally non-blocking. */
    public static int unixStreamSocket(boolean nonBlocking) throws IOException {
        int fd = Libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0), 0);
        if (fd < 0) {
            throw failure("socket(AF_UNIX, SOCK_STREAM)", errno());
        }
        return fd;
    }

    private static com.sun.jna.Memory unixAddress(String path) throws IOException {
        byte[] name = path.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        if (name.length >= UNIX_PATH_MAX) {
            throw new IOException("unix socket path " + path + " is " + name.length + " bytes, at most "
                    + (UNIX_PATH_MAX - 1) + " fit in sockaddr_un");
        }
        com.sun.jna.Memory address = new com.sun.jna.Memory(2 + UNIX_PATH_MAX);
        address.clear();
        address.setShort(0, (short) AF_UNIX);
        address.write(2, name, 0, name.length);
        return address;
    }

    /**
     * Binds a unix socket to {@code path} and listens. The socket file is created with mode 0600: the umask is
     * narrowed around bind(2) because the file's mode comes from the umask, not from the socket; the umask is
     * process-wide, so a file created by another thread in that instant is made more private, never less.
     */
    public static void bindUnixAndListen(int fd, String path, int backlog) throws IOException {
        com.sun.jna.Memory address = unixAddress(path);
        int[] result = new int[2];
        withPrivateUmask(() -> {
            result[0] = Libc.bind(fd, address, 2 + UNIX_PATH_MAX);
            result[1] = errno();
        });
        if (result[0] != 0) {
            throw failure("bind(unix socket " + path + ")", result[1]);
        }
        if (Libc.listen(fd, backlog) != 0) {
            throw failure("listen(unix socket " + path + ")", errno());
        }
    }

    /** Something that creates a file and may fail. */
    public interface FileCreation {
        void run() throws IOException;
    }

    /**
     * Runs {@code create} with the umask narrowed to 0177, so that a socket file bound by code we do not control
     * (the JDK's UNIX-domain channels) is born 0600 instead of being chmod-ed after a window in which it is not.
     */
    public static void withPrivateUmask(FileCreation create) throws IOException {
        LinuxPosix.withPrivateUmask(create);
    }

    /** Connects a unix socket to {@code path}: 0 or -errno (ECONNREFUSED: nobody listens, a stale file). */
    public static int connectUnix(int fd, String path) throws IOException {
        com.sun.jna.Memory address = unixAddress(path);
        return Libc.connect(fd, address, 2 + UNIX_PATH_MAX) == 0 ? 0 : -errno();
    }

    /** accept4(2) with close-on-exec and non-blocking set on the new socket: its fd, or -errno (EAGAIN). */
    public static int accept(int listenFd) {
        int fd = Libc.accept4(listenFd, null, null, SOCK_CLOEXEC | SOCK_NONBLOCK);
        return fd >= 0 ? fd : -errno();
    }

    /**
     * sendmsg(2) with a caller-built struct msghdr at {@code msghdr}: bytes sent, or -errno. For test front-ends
     * that lay out any msghdr they like; the server sends and receives through {@link ScmRights}.
     */
    public static long sendmsg(int fd, long msghdr, int flags) {
        long r = Libc.sendmsg(fd, new Pointer(msghdr), flags);
        return r >= 0 ? r : -errno();
    }

    /**
     * A direct buffer over {@code length} bytes of native memory at {@code address} (a mapping this process made),
     * which it does not own: the memory stays until the caller unmaps it, and the buffer must not be used after.
     */
    public static ByteBuffer directBuffer(long address, int length) {
        return new Pointer(address).getByteBuffer(0, length);
    }

    /**
     * Address of a native buffer (a direct ByteBuffer's memory), for calls that take a pointer. Read from the
     * buffer's own field through sun.misc.Unsafe: the tap write needs it for every slice of every packet, and JNA's
     * way is a JNI call (~100 ns). Falls back to JNA if the field cannot be read on this JVM.
     */
    public static long address(ByteBuffer direct) {
        if (!direct.isDirect()) {
            throw new IllegalArgumentException("not a direct buffer: " + direct);
        }
        if (BUFFER_ADDRESS >= 0) {
            return UNSAFE.getLong(direct, BUFFER_ADDRESS);
        }
        return Pointer.nativeValue(Native.getDirectBufferPointer(direct));
    }

    private static final sun.misc.Unsafe UNSAFE;
    private static final long BUFFER_ADDRESS;

    static {
        sun.misc.Unsafe u = null;
        long offset = -1;
        try {
            java.lang.reflect.Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            u = (sun.misc.Unsafe) f.get(null);
            offset = u.objectFieldOffset(java.nio.Buffer.class.getDeclaredField("address"));
        } catch (ReflectiveOperationException | RuntimeException e) {
            offset = -1;
        }
        UNSAFE = u;
        BUFFER_ADDRESS = offset;
    }

    /**
     * readv(2) into the iovec array at native address {@code iov}: bytes read (for a tap: the frame's whole length,
     * even when it was longer than the buffers and cut, see tun_put_user in drivers/net/tun.c), or -errno.
     */
    public static long readv(int fd, long iov, int count) {
        long r = FAST.readv(fd, iov, count);
        return r >= 0 ? r : -jnrErrno();
    }

    /** writev(2) with a caller-built iovec array at {@code iov}: bytes written, or -errno (no exception). */
    public static long writev(int fd, jnr.ffi.Pointer iov, int count) {
        long r = FAST.writev(fd, iov, count);
        return r >= 0 ? r : -jnrErrno();
    }
}
