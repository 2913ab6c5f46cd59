package org.virtionetd.glue.control;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;

/** Rules for socket files we create: a stale one (nobody listening) is replaced, a live one is an error. */
public final class SocketFiles {
    private SocketFiles() {
    }

    public static void prepare(Path path) throws IOException {
        if (!Files.exists(path, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            Path parent = path.toAbsolutePath().getParent();
            if (parent != null && !Files.isDirectory(parent)) {
                throw new IOException("socket directory " + parent + " does not exist");
            }
            return;
        }
        if (!"socket".equals(kind(path))) {
            throw new IOException("socket path " + path + " exists and is not a socket; refusing to replace it");
        }
        try (SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            c.connect(UnixDomainSocketAddress.of(path));
            throw new IOException("socket " + path + " is in use by a running process");
        } catch (IOException e) {
            if (e.getMessage() != null && e.getMessage().contains("in use by a running process")) {
                throw e;
            }
            Files.delete(path); // stale: nobody listens
        }
    }

    private static String kind(Path p) throws IOException {
        Object mode = Files.getAttribute(p, "unix:mode", java.nio.file.LinkOption.NOFOLLOW_LINKS);
        int m = (Integer) mode;
        return (m & 0170000) == 0140000 ? "socket" : "other";
    }
}
