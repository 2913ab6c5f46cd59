package org.virtionetd.glue.control;

import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import java.util.function.Function;

/**
 * The control socket of a running device: a second invocation ({@code virtio-netd features --control PATH})
 * connects, writes one command line ("features json", "stats table", ...) and reads the answer until EOF.
 * Text only, so the JDK's UNIX-domain channels suffice. The socket is mode 0600 (only the owner may inspect).
 */
public final class ControlServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(ControlServer.class.getName());
    private static final int MAX_REQUEST = 256;

    private final Path path;
    private final ServerSocketChannel server;
    private final Map<String, Function<String, String>> handlers;
    private final Thread thread;
    private volatile boolean running = true;

    /**
     * Listens at {@code path}. {@code handlers} maps a command word ("features", "stats") to a function of the
     * format word ("json" or "table") giving the answer.
     */
    public ControlServer(Path path, Map<String, Function<String, String>> handlers) throws IOException {
        this.path = path;
        this.handlers = Map.copyOf(handlers);
        SocketFiles.prepare(path);
        this.server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        // Born 0600 (umask narrowed around bind), and set again in case the file system ignored the umask.
        LinuxNative.withPrivateUmask(() -> server.bind(UnixDomainSocketAddress.of(path)));
        Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
        this.thread = new Thread(this::serve, "control-" + path.getFileName());
        thread.setDaemon(true);
        thread.start();
    }

    private void serve() {
        while (running) {
            try (SocketChannel c = server.accept()) {
                answer(c);
            } catch (IOException e) {
                if (running) {
                    LOG.log(System.Logger.Level.WARNING, "control socket " + path + ": " + e.getMessage());
                }
            }
        }
    }

    private void answer(SocketChannel c) throws IOException {
        ByteBuffer in = ByteBuffer.allocate(MAX_REQUEST);
        while (in.hasRemaining() && c.read(in) > 0) {
            if (in.get(in.position() - 1) == '\n') {
                break;
            }
        }
        String line = new String(in.array(), 0, in.position(), StandardCharsets.UTF_8).trim();
        String[] words = line.split("\\s+");
        Function<String, String> h = handlers.get(words[0]);
        String format = words.length > 1 ? words[1] : "table";
        String reply = h == null ? "error: unknown control command '" + words[0] + "', known: " + handlers.keySet() + "\n"
                : h.apply(format);
        ByteBuffer out = ByteBuffer.wrap(reply.getBytes(StandardCharsets.UTF_8));
        while (out.hasRemaining()) {
            c.write(out);
        }
    }

    /** Sends one command to a running device's control socket and returns the answer. */
    public static String query(Path path, String command) throws IOException {
        try (SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            try {
                c.connect(UnixDomainSocketAddress.of(path));
            } catch (IOException e) {
                throw new IOException("cannot connect to control socket " + path + ": " + e.getMessage(), e);
            }
            c.write(ByteBuffer.wrap((command + "\n").getBytes(StandardCharsets.UTF_8)));
            c.shutdownOutput();
            ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
            StringBuilder sb = new StringBuilder();
            while (c.read(buf) > 0 || buf.position() > 0) {
                buf.flip();
                sb.append(StandardCharsets.UTF_8.decode(buf));
                buf.clear();
            }
            return sb.toString();
        }
    }

    @Override
    public void close() {
        running = false;
        try {
            server.close();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, e.getMessage());
        }
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, e.getMessage());
        }
    }
}
