package org.virtionetd.backends.tap;

import org.virtionetd.backends.tap.uapi.IfTun;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * One queue of a Linux tap interface: an fd of /dev/net/tun attached with TUNSETIFF, non-blocking. A frame is
 * written with one writev(2) of its pieces ({@link #write}) and read through a {@link FileChannel}, which also
 * takes the rare write whose pieces are not all direct buffers or are too many for the iovec array.
 *
 * <p>How the fd gets under a FileChannel: the JDK cannot wrap an int fd, so we let it open a private temporary
 * file, find that descriptor by its unique path in /proc/self/fd, and {@code dup2} the tap fd over it. The channel
 * then owns the tap (closing it closes the tap); no other thread's open() can be confused with ours.
 *
 * <p>Never interrupt a thread doing I/O here: an interrupted FileChannel closes itself, and the tap with it.
 */
public final class TapDevice implements AutoCloseable {
    private static final String TUN_PATH = "/dev/net/tun";

    private final String name;
    private final int fd;
    private final int flags;
    private final RandomAccessFile file;
    private final FileChannel channel;
    private volatile IOException lastWriteError;
    /** iovec slots for one gathered write: a TX frame has at most 256 pieces plus its vnet header. */
    private static final int IOV_SLOTS = 260;
    private final Object iovLock = new Object();
    private final ByteBuffer iov = ByteBuffer.allocateDirect(16 * IOV_SLOTS).order(ByteOrder.nativeOrder());
    private final jnr.ffi.Pointer iovPointer = jnr.ffi.Pointer.wrap(LinuxNative.runtime(), LinuxNative.address(iov));
    private boolean closed;

    private TapDevice(String name, int fd, int flags, RandomAccessFile file) {
        this.name = name;
        this.fd = fd;
        this.flags = flags;
        this.file = file;
        this.channel = file.getChannel();
    }

    /** The IFF_* flags the running kernel supports (TUNGETFEATURES). */
    public static int kernelFeatures() throws IOException {
        int tun = LinuxNative.open(TUN_PATH, LinuxNative.O_RDWR | LinuxNative.O_CLOEXEC);
        try {
            return getFeatures(tun);
        } finally {
            LinuxNative.close(tun);
        }
    }

    /**
     * Attaches to the tap {@code name}, creating it if it does not exist (a created tap disappears when its last
     * queue is closed). IFF_TAP | IFF_NO_PI, plus IFF_VNET_HDR and IFF_MULTI_QUEUE as asked; every queue of a
     * multi-queue tap must be opened with the same flags.
     */
    public static TapDevice open(String name, boolean vnetHeader, boolean multiQueue) throws IOException {
        byte[] nameBytes = checkName(name);
        int tun = LinuxNative.open(TUN_PATH, LinuxNative.O_RDWR | LinuxNative.O_CLOEXEC);
        try {
            int features = getFeatures(tun);
            int flags = IfTun.IFF_TAP | IfTun.IFF_NO_PI;
            if (vnetHeader) {
                if ((features & IfTun.IFF_VNET_HDR) == 0) {
                    throw new IOException("tap " + name + ": this kernel has no IFF_VNET_HDR (TUNGETFEATURES=0x"
                            + Integer.toHexString(features) + "); use the no-offload option");
                }
                flags |= IfTun.IFF_VNET_HDR;
            }
            if (multiQueue) {
                if ((features & IfTun.IFF_MULTI_QUEUE) == 0) {
                    throw new IOException("tap " + name + ": this kernel has no IFF_MULTI_QUEUE (TUNGETFEATURES=0x"
                            + Integer.toHexString(features) + ")");
                }
                flags |= IfTun.IFF_MULTI_QUEUE;
            }
            ByteBuffer ifr = ifreq(nameBytes, flags);
            LinuxNative.ioctl(tun, IfTun.TUNSETIFF, ifr,
                    "TUNSETIFF " + name + " flags=0x" + Integer.toHexString(flags));
            String actual = ifrName(ifr);
            LinuxNative.setNonBlocking(tun);
            Adopted a = adopt(tun, actual);
            return new TapDevice(actual, a.fd, flags, a.file);
        } finally {
            LinuxNative.close(tun); // the tap now lives under the JDK's descriptor (or failed)
        }
    }

    private static byte[] checkName(String name) {
        if (name == null || name.isEmpty()) {
            throw new IllegalArgumentException("tap name is empty");
        }
        byte[] b = name.getBytes(StandardCharsets.US_ASCII);
        if (b.length >= IfTun.IFNAMSIZ) {
            throw new IllegalArgumentException("tap name '" + name + "' is " + b.length
                    + " bytes; at most " + (IfTun.IFNAMSIZ - 1));
        }
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            if (c <= ' ' || c >= 0x7f || c == '/' || c == ':') {
                throw new IllegalArgumentException("tap name '" + name + "' has a forbidden character at " + i);
            }
        }
        return b;
    }

    private static int getFeatures(int tun) throws IOException {
        ByteBuffer m = intArgument(0);
        LinuxNative.ioctl(tun, IfTun.TUNGETFEATURES, m, "TUNGETFEATURES");
        return m.getInt(0);
    }

    /** A zeroed struct ifreq with {@code name} (may be empty) and ifr_flags. */
    private static ByteBuffer ifreq(byte[] name, int flags) {
        ByteBuffer ifr = ByteBuffer.allocateDirect(IfTun.IFREQ_SIZE).order(ByteOrder.nativeOrder());
        ifr.put(0, name);
        ifr.putShort(IfTun.IFR_FLAGS_OFFSET, (short) flags);
        return ifr;
    }

    /** ifr_name: the NUL-terminated name at the start of a struct ifreq. */
    private static String ifrName(ByteBuffer ifr) {
        int n = 0;
        while (n < IfTun.IFNAMSIZ && ifr.get(n) != 0) {
            n++;
        }
        byte[] b = new byte[n];
        ifr.get(0, b);
        return new String(b, StandardCharsets.US_ASCII);
    }

    /** The int an ioctl reads or writes through its pointer argument. */
    private static ByteBuffer intArgument(int value) {
        return ByteBuffer.allocateDirect(4).order(ByteOrder.nativeOrder()).putInt(0, value);
    }

    /** A JDK-owned file and its descriptor number, which now refers to the tap. */
    private static final class Adopted {
        final RandomAccessFile file;
        final int fd;

        Adopted(RandomAccessFile file, int fd) {
            this.file = file;
            this.fd = fd;
        }
    }

    /** Puts the tap fd under the descriptor of a JDK-opened temporary file (see the class comment). */
    private static Adopted adopt(int tun, String name) throws IOException {
        Path tmp = Files.createTempFile("virtio-netd-" + name + "-", ".fd").toRealPath();
        RandomAccessFile file = null;
        try {
            file = new RandomAccessFile(tmp.toFile(), "rw");
            int jdkFd = findFd(tmp);
            if (jdkFd < 0) {
                throw new IOException("tap " + name + ": cannot find the descriptor of " + tmp + " in /proc/self/fd");
            }
            LinuxNative.dup2(tun, jdkFd);
            Adopted r = new Adopted(file, jdkFd);
            file = null;
            return r;
        } finally {
            if (file != null) {
                file.close();
            }
            Files.deleteIfExists(tmp);
        }
    }

    private static int findFd(Path target) throws IOException {
        String want = target.toString();
        try (DirectoryStream<Path> fds = Files.newDirectoryStream(Path.of("/proc/self/fd"))) {
            for (Path p : fds) {
                try {
                    if (Files.readSymbolicLink(p).toString().equals(want)) {
                        return Integer.parseInt(p.getFileName().toString());
                    }
                } catch (IOException e) {
                    // a descriptor closed while we listed: not ours
                }
            }
        }
        return -1;
    }

    public String name() {
        return name;
    }

    public int fd() {
        return fd;
    }

    /** The IFF_* flags this queue was attached with. */
    public int flags() {
        return flags;
    }

    public boolean vnetHeader() {
        return (flags & IfTun.IFF_VNET_HDR) != 0;
    }

    /** The interface name and flags the kernel reports for this fd (TUNGETIFF). */
    public int kernelFlags() throws IOException {
        ByteBuffer ifr = ifreq(new byte[0], 0);
        LinuxNative.ioctl(fd, IfTun.TUNGETIFF, ifr, "TUNGETIFF " + name);
        return ifr.getShort(IfTun.IFR_FLAGS_OFFSET) & 0xffff;
    }

    /**
     * False when the interface this fd was attached to is gone: deleting a tap ({@code ip link del}) detaches its
     * queues and every call on the fd but TUNSETIFF fails with EBADFD (tun.c: tfile->tun is NULL). One ioctl;
     * called only after a read or write failed.
     */
    public boolean interfaceGone() {
        ByteBuffer ifr = ifreq(new byte[0], 0);
        boolean gone = LinuxNative.ioctlOrErrno(fd, IfTun.TUNGETIFF, LinuxNative.address(ifr)) == -LinuxNative.EBADFD;
        // Only the address went to the kernel: the buffer (and its native memory) must outlive the call.
        java.lang.ref.Reference.reachabilityFence(ifr);
        return gone;
    }

    /** Whether an interface of this tap's name exists in our network namespace now (/sys/class/net/NAME). */
    public boolean interfaceExists() {
        return Files.exists(Path.of("/sys/class/net", name, "tun_flags"));
    }

    /**
     * Attaches this same fd again, with the same flags, to the interface of the same name after the one it was
     * on was deleted: TUNSETIFF is the one call a detached tun fd still takes (tun_attach clears the receive
     * shutdown the deletion set). The fd, hence the caller's epoll registration and channel, stays. A tap of
     * that name must exist ({@link #interfaceExists()}): if none does, TUNSETIFF would create one, which is not
     * ours to do. The interface's vnet header size and offloads are the new interface's defaults afterwards.
     */
    public void reattach() throws IOException {
        byte[] nameBytes = checkName(name);
        ByteBuffer ifr = ifreq(nameBytes, flags);
        LinuxNative.ioctl(fd, IfTun.TUNSETIFF, ifr, "TUNSETIFF " + name + " flags=0x" + Integer.toHexString(flags)
                + " (re-attach)");
    }

    /** TUNSETVNETHDRSZ: the length of the header in front of every frame, both ways. */
    public void setVnetHeaderSize(int length) throws IOException {
        ByteBuffer m = intArgument(length);
        LinuxNative.ioctl(fd, IfTun.TUNSETVNETHDRSZ, m, "TUNSETVNETHDRSZ " + name + " " + length);
    }

    public int vnetHeaderSize() throws IOException {
        ByteBuffer m = intArgument(0);
        LinuxNative.ioctl(fd, IfTun.TUNGETVNETHDRSZ, m, "TUNGETVNETHDRSZ " + name);
        return m.getInt(0);
    }

    /**
     * TUNSETQUEUE: attaches this queue of a multi-queue tap (the kernel may steer frames to it) or detaches it (the
     * kernel steers every flow to the other queues; the fd stays open and can be attached again). A single-queue
     * tap has nothing to steer: a no-op there.
     */
    public void setQueueAttached(boolean attached) throws IOException {
        if ((flags & IfTun.IFF_MULTI_QUEUE) == 0) {
            return;
        }
        ByteBuffer ifr = ifreq(new byte[0], attached ? IfTun.IFF_ATTACH_QUEUE : IfTun.IFF_DETACH_QUEUE);
        LinuxNative.ioctl(fd, IfTun.TUNSETQUEUE, ifr, "TUNSETQUEUE " + name + (attached ? " attach" : " detach"));
    }

    /** One TUNSETOFFLOAD: 0, or -errno if the kernel refused these flags. */
    public int trySetOffload(int tunFlags) {
        return LinuxNative.ioctlOrErrno(fd, IfTun.TUNSETOFFLOAD, tunFlags & 0xffffffffL);
    }

    /** TUNSETOFFLOAD with the fallback sequence of {@link TunOffloads#attempts}; returns the flags in effect. */
    public int setOffload(int wanted) throws IOException {
        return TunOffloads.program(wanted, this::trySetOffload, "tap " + name);
    }

    /**
     * Writes one frame gathered from {@code slices[offset .. offset+count)} (positions advance). Returns the bytes
     * written; 0 if the kernel would block; -1 if it refused this frame (ENOBUFS, EIO when the link is down, EINVAL
     * for a header it rejects): the frame is dropped and {@link #lastWriteError()} says why.
     *
     * <p>One writev(2) through jnr-ffi with an iovec array built in place: measured here, FileChannel's gathering
     * write costs about 95 ns more per 64-byte frame (its locks, interruptible-I/O bookkeeping and JNI). The lock
     * below serializes writers (a switch uplink has several) over the one iovec array, and {@link #close()} takes
     * it too, so the fd is never written after it was closed (its number could belong to another file by then).
     *
     * @throws ClosedChannelException if the tap is closed
     */
    public long write(ByteBuffer[] slices, int offset, int count) throws IOException {
        if (count > IOV_SLOTS) {
            return channelWrite(slices, offset, count); // never on the data path: TX frames have at most 257 pieces
        }
        synchronized (iovLock) {
            if (closed) {
                throw new ClosedChannelException();
            }
            long total = 0;
            for (int i = 0; i < count; i++) {
                ByteBuffer b = slices[offset + i];
                if (!b.isDirect()) {
                    return channelWrite(slices, offset, count);
                }
                int len = b.remaining();
                iov.putLong(16 * i, LinuxNative.address(b) + b.position());
                iov.putLong(16 * i + 8, len);
                total += len;
            }
            long r = LinuxNative.writev(fd, iovPointer, count);
            if (r >= 0) {
                // The kernel takes a tap frame whole or not at all.
                for (int i = 0; i < count; i++) {
                    ByteBuffer b = slices[offset + i];
                    b.position(b.limit());
                }
                return r;
            }
            if (r == -LinuxNative.EAGAIN) {
                return 0;
            }
            lastWriteError = new IOException("writev(" + this + ", " + total + " bytes): errno " + -r + " ("
                    + LinuxNative.strerror((int) -r) + ")");
            return -1;
        }
    }

    private long channelWrite(ByteBuffer[] slices, int offset, int count) throws IOException {
        try {
            return channel.write(slices, offset, count);
        } catch (ClosedChannelException e) {
            throw e;
        } catch (IOException e) {
            lastWriteError = e;
            return -1;
        }
    }

    /**
     * Reads one frame with one readv(2) into the {@code count} iovec entries at native address {@code iov}
     * (guest buffers). Returns the frame's length, which is larger than the entries' room if the frame was cut
     * (the kernel reports the whole length); 0 if none is waiting. Under the lock {@link #write} takes, so the fd
     * is never read after {@link #close()} (its number could name another file by then, and the data would land
     * in a guest's memory).
     *
     * @throws ClosedChannelException if the tap is closed
     */
    public long readv(long iov, int count) throws IOException {
        synchronized (iovLock) {
            if (closed) {
                throw new ClosedChannelException();
            }
            long r = LinuxNative.readv(fd, iov, count);
            if (r >= 0) {
                return r;
            }
            if (r == -LinuxNative.EAGAIN) {
                return 0;
            }
            throw new IOException("readv(" + this + ", " + count + " buffers): errno " + -r + " ("
                    + LinuxNative.strerror((int) -r) + ")");
        }
    }

    /** Reads one frame into {@code dst} from its position; returns its length, 0 if none is waiting. */
    public int read(ByteBuffer dst) throws IOException {
        return channel.read(dst);
    }

    /** Why the last refused write was refused, or null. */
    public IOException lastWriteError() {
        return lastWriteError;
    }

    public boolean isOpen() {
        return channel.isOpen();
    }

    @Override
    public void close() {
        synchronized (iovLock) {
            closed = true;
            try {
                file.close();
            } catch (IOException e) {
                // nothing left to do with a tap we are closing
            }
        }
    }

    @Override
    public String toString() {
        return "tap " + name + " (fd " + fd + ", flags 0x" + Integer.toHexString(flags) + ")";
    }
}
