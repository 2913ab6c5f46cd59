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
 * Every Linux system call the project makes, in one place (design card, rule 10).
 *
 * <p>Mapping and ioctls go through JNA direct mapping (called once per setup, 126 ns is fine); calls made per
 * batch on the data path (eventfd, epoll, read/write) go through jnr-ffi (17 ns). Each wrapper returns the
 * result or throws an {@link IOException} that names the call, the arguments that matter and errno.
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
    public static final int F_GETFL = 3;
    public static final int F_SETFL = 4;
    public static final int EAGAIN = 11;
    public static final int EINTR = 4;

    private static final long MAP_FAILED = -1L;

    /** JNA direct-mapped libc: setup-time calls. */
    private static final class Libc {
        static {
            Native.register(Libc.class, "c");
        }

        static native Pointer mmap(Pointer addr, long length, int prot, int flags, int fd, long offset);

        static native int munmap(Pointer addr, long length);

        static native int memfd_create(String name, int flags);

        static native int ftruncate(int fd, long length);

        static native int close(int fd);

        static native int ioctl(int fd, NativeLong request, Pointer arg);

        static native int ioctl(int fd, NativeLong request, long arg);

        static native int fcntl(int fd, int cmd, int arg);

        static native int open(String path, int flags);

        static native int dup(int fd);

        static native int dup2(int oldfd, int newfd);
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
            case 9: return "EBADF";
            case 11: return "EAGAIN";
            case 12: return "ENOMEM";
            case 13: return "EACCES";
            case 14: return "EFAULT";
            case 16: return "EBUSY";
            case 19: return "ENODEV";
            case 22: return "EINVAL";
            case 25: return "ENOTTY";
            case 95: return "EOPNOTSUPP";
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
        if (Libc.ftruncate(fd, size) != 0) {
            int e = errno();
            Libc.close(fd);
            throw failure("ftruncate(memfd " + name + ", " + size + ")", e);
        }
        return fd;
    }

    public static void close(int fd) {
        if (fd >= 0) {
            Libc.close(fd);
        }
    }

    public static int dup(int fd) throws IOException {
        int r = Libc.dup(fd);
        if (r < 0) {
            throw failure("dup(" + fd + ")", errno());
        }
        return r;
    }

    /**
     * Makes {@code newfd} refer to the file of {@code oldfd} (closing what {@code newfd} referred to, atomically).
     * Used to put a tap fd under a descriptor the JDK owns, so that a FileChannel does the tap's I/O.
     */
    public static void dup2(int oldfd, int newfd) throws IOException {
        if (Libc.dup2(oldfd, newfd) < 0) {
            throw failure("dup2(" + oldfd + ", " + newfd + ")", errno());
        }
    }

    public static int open(String path, int flags) throws IOException {
        int fd = Libc.open(path, flags);
        if (fd < 0) {
            throw failure("open(" + path + ")", errno());
        }
        return fd;
    }

    /** ioctl with a pointer argument; {@code what} names the request in the error message. */
    public static int ioctl(int fd, long request, Pointer arg, String what) throws IOException {
        int r = Libc.ioctl(fd, new NativeLong(request), arg);
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
        int flags = Libc.fcntl(fd, F_GETFL, 0);
        if (flags < 0 || Libc.fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
            throw failure("fcntl(fd=" + fd + ", O_NONBLOCK)", errno());
        }
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

    /** Address of a native buffer (a direct ByteBuffer's memory), for jnr-ffi calls that take a pointer. */
    public static long address(ByteBuffer direct) {
        return Pointer.nativeValue(Native.getDirectBufferPointer(direct));
    }
}
