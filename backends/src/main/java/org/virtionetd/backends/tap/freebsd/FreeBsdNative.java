package org.virtionetd.backends.tap.freebsd;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import org.virtionetd.backends.tap.StagedFrame;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/**
 * The FreeBSD calls of the tap backend (the one native class for FreeBSD, as LinuxNative is for Linux), and the
 * real {@link FreeBsdTapOps}. <b>Untested</b>: this machine runs Linux; constants come from FreeBSD's
 * sys/net/if_tap.h, sys/sockio.h, sys/fcntl.h, sys/errno.h (amd64 / arm64). The libc binding is registered only
 * when first used, so loading this class on Linux is harmless.
 *
 * <p>Writes gather the frame into a staging buffer and make one write(2) (FreeBSD's tap takes a frame per write);
 * reads go straight into the caller's direct buffer. Nothing is allocated per frame.
 */
public final class FreeBsdNative implements FreeBsdTapOps {
    static final int O_RDWR = 0x0002;
    static final int O_NONBLOCK = 0x0004;
    static final int O_CLOEXEC = 0x00100000;
    static final int AF_INET = 2;
    static final int SOCK_DGRAM = 2;
    static final int EAGAIN = 35;

    private static final class Libc {
        static {
            Native.register(Libc.class, "c");
        }

        static native int open(String path, int flags);

        static native int close(int fd);

        static native int ioctl(int fd, long request, Pointer arg);

        static native long read(int fd, long buf, long count);

        static native long write(int fd, long buf, long count);

        static native long readv(int fd, long iov, int iovcnt);

        static native int socket(int domain, int type, int protocol);
    }

    private final String path;
    private final int fd;
    private final int sock;
    private final String ifName;
    private final Memory ifr = new Memory(IfCap.IFREQ_SIZE);
    private final Memory intArg = new Memory(4);
    private final ByteBuffer tx = ByteBuffer.allocateDirect(StagedFrame.CAPACITY);
    private final long txAddress = Pointer.nativeValue(Native.getDirectBufferPointer(tx));
    private ByteBuffer rxBuffer;
    private long rxAddress;

    private FreeBsdNative(String path, int fd, int sock, String ifName) {
        this.path = path;
        this.fd = fd;
        this.sock = sock;
        this.ifName = ifName;
    }

    public static boolean isAvailable() {
        return System.getProperty("os.name", "").startsWith("FreeBSD");
    }

    /** Opens {@code path} (e.g. /dev/tap0) non-blocking, and a datagram socket for the SIOC*IFCAP ioctls. */
    public static FreeBsdNative open(String path) throws IOException {
        if (!isAvailable()) {
            throw new IOException(path + ": the FreeBSD tap backend needs FreeBSD; this is "
                    + System.getProperty("os.name"));
        }
        int fd = Libc.open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            throw failure("open(" + path + ")");
        }
        int sock = Libc.socket(AF_INET, SOCK_DGRAM, 0);
        if (sock < 0) {
            IOException e = failure("socket(AF_INET, SOCK_DGRAM) for " + path);
            Libc.close(fd);
            throw e;
        }
        Memory req = new Memory(IfCap.IFREQ_SIZE);
        req.clear();
        if (Libc.ioctl(fd, IfCap.TAPGIFNAME, req) < 0) {
            IOException e = failure("ioctl(TAPGIFNAME, " + path + ")");
            Libc.close(sock);
            Libc.close(fd);
            throw e;
        }
        return new FreeBsdNative(path, fd, sock, req.getString(0, StandardCharsets.US_ASCII.name()));
    }

    private static IOException failure(String call) {
        return new IOException(call + " failed: errno " + Native.getLastError());
    }

    @Override
    public String interfaceName() {
        return ifName;
    }

    @Override
    public int fd() {
        return fd;
    }

    @Override
    public void setVnetHeaderLength(int length) throws IOException {
        intArg.setInt(0, length);
        if (Libc.ioctl(fd, IfCap.TAPSVNETHDR, intArg) < 0) {
            throw failure("ioctl(TAPSVNETHDR " + length + ", " + path + ")");
        }
    }

    @Override
    public int vnetHeaderLength() throws IOException {
        intArg.setInt(0, 0);
        if (Libc.ioctl(fd, IfCap.TAPGVNETHDR, intArg) < 0) {
            throw failure("ioctl(TAPGVNETHDR, " + path + ")");
        }
        return intArg.getInt(0);
    }

    private void getCaps() throws IOException {
        ifr.clear();
        byte[] n = ifName.getBytes(StandardCharsets.US_ASCII);
        ifr.write(0, n, 0, Math.min(n.length, 15));
        if (Libc.ioctl(sock, IfCap.SIOCGIFCAP, ifr) < 0) {
            throw failure("ioctl(SIOCGIFCAP, " + ifName + ")");
        }
    }

    @Override
    public int supportedCapabilities() throws IOException {
        getCaps();
        return ifr.getInt(IfCap.IFR_REQCAP_OFFSET);
    }

    @Override
    public int enabledCapabilities() throws IOException {
        getCaps();
        return ifr.getInt(IfCap.IFR_CURCAP_OFFSET);
    }

    @Override
    public void setEnabledCapabilities(int caps) throws IOException {
        getCaps();
        ifr.setInt(IfCap.IFR_REQCAP_OFFSET, caps);
        if (Libc.ioctl(sock, IfCap.SIOCSIFCAP, ifr) < 0) {
            throw failure("ioctl(SIOCSIFCAP 0x" + Integer.toHexString(caps) + ", " + ifName + ")");
        }
    }

    @Override
    public long write(ByteBuffer[] slices, int offset, int count) {
        tx.clear();
        for (int i = offset; i < offset + count; i++) {
            if (slices[i].remaining() > tx.remaining()) {
                return -1; // larger than any frame the tap takes (TAPMRU + header)
            }
            tx.put(slices[i]);
        }
        long n = Libc.write(fd, txAddress, tx.position());
        if (n >= 0) {
            return n;
        }
        return Native.getLastError() == EAGAIN ? 0 : -1;
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        if (dst != rxBuffer) {
            rxBuffer = dst;
            rxAddress = Pointer.nativeValue(Native.getDirectBufferPointer(dst));
        }
        long n = Libc.read(fd, rxAddress + dst.position(), dst.remaining());
        if (n < 0) {
            if (Native.getLastError() == EAGAIN) {
                return 0;
            }
            throw failure("read(" + path + ")");
        }
        dst.position(dst.position() + (int) n);
        return (int) n;
    }

    @Override
    public long readv(long iov, int count) throws IOException {
        long n = Libc.readv(fd, iov, count);
        if (n < 0) {
            if (Native.getLastError() == EAGAIN) {
                return 0;
            }
            throw failure("readv(" + path + ", " + count + " buffers)");
        }
        return n;
    }

    @Override
    public void close() {
        Libc.close(sock);
        Libc.close(fd);
    }
}
