package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * A listening AF_UNIX stream socket at a path, mode 0600, non-blocking (the caller waits with epoll).
 *
 * <p>A socket file left behind by a dead process is replaced; one that still accepts connections belongs to a
 * running process and is refused, so two back-ends never fight over one path.
 */
public final class UnixSocketServer implements AutoCloseable {
    private static final int S_IFMT = 0170000;
    private static final int S_IFSOCK = 0140000;

    private final Path path;
    private final int fd;
    private boolean closed;

    private UnixSocketServer(Path path, int fd) {
        this.path = path;
        this.fd = fd;
    }

    /** Binds and listens at {@code path}, replacing a stale socket file. */
    public static UnixSocketServer listen(Path path) throws IOException {
        String name = path.toString();
        removeIfStale(path);
        int fd = LinuxNative.unixStreamSocket(true);
        try {
            LinuxNative.bindUnixAndListen(fd, name, 4);
        } catch (IOException e) {
            LinuxNative.close(fd);
            throw e;
        }
        return new UnixSocketServer(path, fd);
    }

    private static void removeIfStale(Path path) throws IOException {
        int mode;
        try {
            mode = (Integer) Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            return;
        }
        if ((mode & S_IFMT) != S_IFSOCK) {
            throw new IOException("socket path " + path + " exists and is not a socket (mode 0"
                    + Integer.toOctalString(mode) + "); not replacing it");
        }
        int probe = LinuxNative.unixStreamSocket(false);
        int r;
        try {
            r = LinuxNative.connectUnix(probe, path.toString());
        } finally {
            LinuxNative.close(probe);
        }
        if (r == 0) {
            throw new IOException("socket " + path + " is in use by a running process");
        }
        if (r != -LinuxNative.ECONNREFUSED && r != -LinuxNative.ENOENT) {
            throw new IOException("cannot tell whether socket " + path + " is in use: connect failed with errno "
                    + -r + " (" + LinuxNative.strerror(-r) + ")");
        }
        // Nobody listens: a file left by a process that died. Replace it.
        Files.deleteIfExists(path);
    }

    public Path path() {
        return path;
    }

    public int fd() {
        return fd;
    }

    /** The next pending connection's fd (non-blocking, close-on-exec), or -1 if none is pending. */
    public int accept() throws IOException {
        int r = LinuxNative.accept(fd);
        if (r >= 0) {
            return r;
        }
        if (r == -LinuxNative.EAGAIN || r == -LinuxNative.EINTR) {
            return -1;
        }
        throw new IOException("accept on socket " + path + " failed: errno " + -r + " ("
                + LinuxNative.strerror(-r) + ")");
    }

    /** Closes the socket and removes its file. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        LinuxNative.close(fd);
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            System.getLogger(UnixSocketServer.class.getName()).log(System.Logger.Level.WARNING,
                    "cannot remove socket file " + path + ": " + e.getMessage());
        }
    }
}
