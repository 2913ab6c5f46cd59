package org.virtionetd.glue.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.virtionetd.glue.vhostuser.VhostUserException;
import org.virtionetd.glue.vhostuser.VhostUserMessage;
import org.virtionetd.glue.vhostuser.VhostUserProtocolFeature;
import org.virtionetd.glue.vhostuser.VhostUserRequest;
import org.virtionetd.glue.vhostuser.VhostUserServer;
import org.virtionetd.glue.vhostuser.UnixConnection;
import org.virtionetd.virtio.fuzz.FuzzInput;
import org.virtionetd.virtio.net.NetDeviceConfig;
import org.virtionetd.virtio.net.VirtioNetDevice;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.os.Epoll;
import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.testdriver.InMemoryBackend;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import java.util.stream.Stream;

/**
 * Coverage-guided fuzzing of the vhost-user back-end (QEMU docs/interop/vhost-user.rst) as a hostile front-end
 * drives it: each input is a session of raw messages (any request id, flags, payload, a size field that may lie)
 * with 0-3 memfds or eventfds attached, sent over a real unix socket to one {@link VhostUserServer} that drives a
 * real {@link VirtioNetDevice} on {@link InMemoryBackend}s, for all inputs of the run. Memory tables, vring
 * addresses, queue sizes and indices come from the payload bytes; the committed seeds are QEMU-like sessions.
 *
 * <p>Invariants, after every message: the server either closed the connection or answered a GET_FEATURES round
 * trip within 5 s; every reply is a well-formed reply to the message just sent; a message whose request the server
 * does not implement is answered with a non-zero u64 when it asked for a reply, a request that always replies was
 * answered exactly once, any other request with NEED_REPLY under REPLY_ACK exactly once (0 or an error), and
 * nothing else was answered. After every input: the session's end is seen by the server, a fresh well-behaved
 * front-end completes GET_FEATURES, no fd the session brought is left open in this process, and no error with an
 * exception was logged by the server or a device loop.
 *
 * <p>This is the coverage-guided counterpart of the hand-written {@code VhostUserFuzzTest} cases. Input layout
 * ({@link FuzzInput}), per message until the input ends (at most 24): u8 control (bits 0-1 fd count; bit 2 fds are
 * eventfds, else the 2 MiB guest memfd; bit 3 alternate the kinds; bit 4 the size field lies and a u32 follows the
 * payload; bit 5 NEED_REPLY; bit 6 a raw flags byte follows; bit 7 a raw u32 request id instead of a byte), the
 * request, [flags], u16 payload length (mod 512), payload, [size].
 */
class VhostUserMessageFuzzTest {
    static final long TIMEOUT_MS = 5000;
    static final int ROUND_TRIP = VhostUserRequest.GET_FEATURES.id();
    static final Fixture FIXTURE = new Fixture();

    /** The server, device, the fds the front-end sends, and the fd baseline: one per JVM. */
    static final class Fixture {
        final Path dir;
        final VirtioNetDevice device;
        final VhostUserServer server;
        final int memfd;
        final int eventfd;
        final List<String> loggedErrors = new ArrayList<>();
        final Logger logger = Logger.getLogger("org.virtionetd");
        long fdBaseline = -1;
        /** Sockets, memfds and anon inodes (eventfd, epoll) open at the baseline: the server's and the JVM's. */
        long oursAtBaseline;

        Fixture() {
            try {
                // Quiet and watched: refusals are logged at WARNING for every bad message; only errors that carry
                // an exception (a device loop or the server thread caught one) are recorded, and fail the input.
                logger.setUseParentHandlers(false);
                logger.setLevel(Level.SEVERE);
                logger.addHandler(new Handler() {
                    @Override
                    public void publish(LogRecord r) {
                        if (r.getThrown() != null) {
                            synchronized (loggedErrors) {
                                loggedErrors.add(r.getLoggerName() + ": " + r.getMessage() + ": " + r.getThrown());
                            }
                        }
                    }

                    @Override
                    public void flush() {
                    }

                    @Override
                    public void close() {
                    }
                });
                dir = Files.createTempDirectory("vhost-user-fuzz");
                NetDeviceConfig config = NetDeviceConfig.builder().queuePairs(2).build();
                device = new VirtioNetDevice(config, p -> new InMemoryBackend("fuzz" + p, VirtioNetFeature.OFFLOADS));
                server = new VhostUserServer(dir.resolve("vhost.sock"), device,
                        VhostUserServer.SUPPORTED_PROTOCOL_FEATURES);
                server.start();
                memfd = LinuxNative.memfdCreate("fuzz-guest", 2L << 20);
                eventfd = LinuxNative.eventfd();
            } catch (IOException e) {
                throw new IllegalStateException("cannot set up the vhost-user fuzzing server: " + e.getMessage(), e);
            }
        }
    }

    @FuzzTest(maxDuration = "5m")
    void messages(byte[] data) throws Exception {
        Fixture fx = FIXTURE;
        if (fx.fdBaseline < 0) {
            // Warm up (JNA, lazily opened files) with one well-behaved session, then take the baseline.
            wellBehavedRoundTrip(fx);
            fx.fdBaseline = openFds();
            fx.oursAtBaseline = countOurs();
        }
        FuzzInput in = new FuzzInput(data);
        long disconnects = fx.server.disconnects();
        long protocol = 0;
        try (FrontEnd fe = FrontEnd.connect(fx.server.socketPath())) {
            for (int n = 0; n < 24 && !in.exhausted(); n++) {
                int ctrl = in.u8();
                int request = (ctrl & 0x80) != 0 ? in.u32() : in.u8();
                boolean needReply = (ctrl & 0x20) != 0;
                int flags = (ctrl & 0x40) != 0 ? in.u8() : VhostUserMessage.VERSION
                        | (needReply ? VhostUserMessage.FLAG_NEED_REPLY : 0);
                needReply = (flags & VhostUserMessage.FLAG_NEED_REPLY) != 0;
                byte[] payload = in.bytes(in.u16() % 512);
                boolean lies = (ctrl & 0x10) != 0;
                int size = lies ? in.u32() : payload.length;
                lies = size != payload.length;
                int[] fds = new int[ctrl & 3];
                for (int i = 0; i < fds.length; i++) {
                    boolean event = (ctrl & 4) != 0 ^ ((ctrl & 8) != 0 && (i & 1) != 0);
                    fds[i] = event ? fx.eventfd : fx.memfd;
                }
                String what = VhostUserRequest.describe(request) + " flags 0x" + Integer.toHexString(flags) + " size "
                        + Integer.toUnsignedString(size) + " (" + payload.length + " sent) with " + fds.length + " fds";
                if (!fe.send(request, flags, size, payload, fds)) {
                    break; // the server already closed the connection (an earlier message was malformed)
                }
                if (lies) {
                    // The stream is out of step now. A size beyond any message must end the connection at once;
                    // otherwise the server waits for bytes that never come, and our closing must end it.
                    if (size < 0 || size > VhostUserMessage.MAX_PAYLOAD) {
                        check(fe.awaitClosed(), "server kept the connection after " + what);
                    }
                    break;
                }
                Map<Integer, Integer> replies = new TreeMap<>();
                boolean roundTripIsAlsoM = request == ROUND_TRIP;
                if (!fe.roundTrip(replies, roundTripIsAlsoM ? 2 : 1, what)) {
                    break; // closed: fine for any message; the fresh front-end below checks the server still serves
                }
                // The message was accepted as well-formed: check what was answered.
                VhostUserRequest r = VhostUserRequest.of(request);
                int expected;
                if (r == null || r.payload() == VhostUserRequest.Payload.UNSUPPORTED) {
                    expected = needReply ? 1 : 0;
                    if (needReply && !roundTripIsAlsoM) {
                        check(fe.lastU64.getOrDefault(request, 0L) != 0, "unsupported " + what
                                + " was answered with 0 (success)");
                    }
                } else if (r.replies()) {
                    expected = 1;
                } else {
                    expected = needReply && VhostUserProtocolFeature.REPLY_ACK.in(protocol) ? 1 : 0;
                }
                int got = replies.getOrDefault(request, 0) - (roundTripIsAlsoM ? 1 : 0);
                check(got == expected, what + " was answered " + got + " times, expected " + expected
                        + " (REPLY_ACK " + VhostUserProtocolFeature.REPLY_ACK.in(protocol) + "); replies " + replies);
                check(replies.keySet().stream().allMatch(id -> id == request || id == ROUND_TRIP),
                        "replies to requests not sent: " + replies);
                if (r == VhostUserRequest.SET_PROTOCOL_FEATURES) {
                    long v = ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
                    if ((v & ~fx.server.offeredProtocolFeatures()) == 0) {
                        protocol = v;
                    }
                }
            }
        }
        awaitDisconnects(fx, disconnects + 1);
        wellBehavedRoundTrip(fx);
        checkFds(fx);
        synchronized (fx.loggedErrors) {
            check(fx.loggedErrors.isEmpty(), "errors with exceptions were logged: " + fx.loggedErrors);
        }
    }

    static void wellBehavedRoundTrip(Fixture fx) throws IOException {
        long d = fx.server.disconnects();
        try (FrontEnd fe = FrontEnd.connect(fx.server.socketPath())) {
            Map<Integer, Integer> replies = new TreeMap<>();
            check(fe.send(ROUND_TRIP, VhostUserMessage.VERSION, 0, new byte[0], new int[0])
                    && fe.roundTrip(replies, 2, "GET_FEATURES of a fresh front-end"),
                    "a fresh front-end could not complete GET_FEATURES");
        }
        awaitDisconnects(fx, d + 1);
    }

    static void awaitDisconnects(Fixture fx, long n) {
        long deadline = System.nanoTime() + TIMEOUT_MS * 1_000_000;
        while (fx.server.disconnects() < n) {
            check(System.nanoTime() < deadline, "the server did not end the session within " + TIMEOUT_MS
                    + " ms (disconnects " + fx.server.disconnects() + ", expected " + n + ")");
            Thread.onSpinWait();
            sleep(1);
        }
    }

    /** No fd of ours (socket, memfd, eventfd, epoll) stays open beyond the baseline once the session ended. */
    static void checkFds(Fixture fx) {
        long deadline = System.nanoTime() + 2_000_000_000L;
        while (openFds() > fx.fdBaseline) {
            if (System.nanoTime() > deadline) {
                List<String> ours = new ArrayList<>();
                for (String l : fdList()) {
                    if (l.contains("socket:") || l.contains("memfd:") || l.contains("anon_inode:")) {
                        ours.add(l);
                    }
                }
                long extra = openFds() - fx.fdBaseline;
                // Files the JVM opens lazily (jars) move the baseline; sockets, memfds and eventfds are ours.
                check(ours.size() <= fx.oursAtBaseline, extra + " fds above the baseline " + fx.fdBaseline + ", "
                        + ours.size() + " sockets/memfds/anon inodes where " + fx.oursAtBaseline + " were open: " + ours);
                fx.fdBaseline = openFds();
                return;
            }
            sleep(5);
        }
    }

    static long countOurs() {
        return fdList().stream().filter(l -> l.contains("socket:") || l.contains("memfd:")
                || l.contains("anon_inode:")).count();
    }

    static long openFds() {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    static List<String> fdList() {
        List<String> out = new ArrayList<>();
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            s.forEach(p -> {
                try {
                    out.add(p.getFileName() + "->" + Files.readSymbolicLink(p));
                } catch (IOException e) {
                    out.add(p.getFileName() + "->?");
                }
            });
        } catch (IOException e) {
            out.add(e.toString());
        }
        return out;
    }

    static void sleep(int ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    /** A raw front-end: sends any bytes with any fds, reads replies with a timeout. */
    static final class FrontEnd implements AutoCloseable {
        final int fd;
        final UnixConnection connection;
        final Epoll epoll;
        final VhostUserMessage rx = new VhostUserMessage();
        final Map<Integer, Long> lastU64 = new TreeMap<>();
        final ByteBuffer frame = ByteBuffer.allocateDirect(12 + 4096).order(ByteOrder.nativeOrder());
        final ByteBuffer iov = ByteBuffer.allocateDirect(16).order(ByteOrder.nativeOrder());
        final ByteBuffer control = ByteBuffer.allocateDirect(64).order(ByteOrder.nativeOrder());
        final ByteBuffer msg = ByteBuffer.allocateDirect(56).order(ByteOrder.nativeOrder());

        private FrontEnd(int fd) throws IOException {
            this.fd = fd;
            this.connection = new UnixConnection(fd);
            this.epoll = new Epoll(2);
            epoll.add(fd, LinuxNative.EPOLLIN | LinuxNative.EPOLLHUP, 1);
        }

        static FrontEnd connect(Path socket) throws IOException {
            int fd = LinuxNative.unixStreamSocket(false);
            int r = LinuxNative.connectUnix(fd, socket.toString());
            if (r != 0) {
                LinuxNative.close(fd);
                throw new IOException("cannot connect to " + socket + ": errno " + -r);
            }
            LinuxNative.setNonBlocking(fd);
            return new FrontEnd(fd);
        }

        /** Sends header + payload as given; false if the server has closed the connection (EPIPE, ECONNRESET). */
        boolean send(int request, int flags, int size, byte[] payload, int[] fds) throws IOException {
            frame.clear();
            frame.putInt(0, request).putInt(4, flags).putInt(8, size).put(12, payload);
            int length = 12 + payload.length;
            iov.putLong(0, LinuxNative.address(frame)).putLong(8, length);
            int controlLength = fds.length == 0 ? 0 : (16 + 4 * fds.length + 7) & ~7;
            if (fds.length > 0) {
                control.putLong(0, 16 + 4L * fds.length).putInt(8, LinuxNative.SOL_SOCKET)
                        .putInt(12, LinuxNative.SCM_RIGHTS);
                for (int i = 0; i < fds.length; i++) {
                    control.putInt(16 + 4 * i, fds[i]);
                }
            }
            for (int i = 0; i < 56; i++) {
                msg.put(i, (byte) 0);
            }
            msg.putLong(16, LinuxNative.address(iov)).putLong(24, 1);
            if (fds.length > 0) {
                msg.putLong(32, LinuxNative.address(control)).putLong(40, controlLength);
            }
            long r = LinuxNative.sendmsg(fd, LinuxNative.address(msg), LinuxNative.MSG_NOSIGNAL);
            if (r == -32 || r == -104) {
                return false;
            }
            if (r != length) {
                throw new IOException("sendmsg sent " + r + " of " + length + " bytes");
            }
            return true;
        }

        private void awaitReadable() throws IOException {
            if (epoll.await((int) TIMEOUT_MS) == 0) {
                throw new IOException("no reply from the back-end within " + TIMEOUT_MS + " ms");
            }
        }

        /**
         * Sends GET_FEATURES and collects replies (count per request id) until {@code roundTrips} GET_FEATURES
         * replies arrived (true) or the server closed the connection (false). A timeout is a failure.
         */
        boolean roundTrip(Map<Integer, Integer> replies, int roundTrips, String after) throws IOException {
            if (!send(ROUND_TRIP, VhostUserMessage.VERSION, 0, new byte[0], new int[0])) {
                return false;
            }
            while (replies.getOrDefault(ROUND_TRIP, 0) < roundTrips) {
                boolean got;
                try {
                    got = connection.receive(rx, this::awaitReadable);
                } catch (VhostUserException e) {
                    throw new AssertionError("malformed reply after " + after + ": " + e.getMessage());
                } catch (IOException e) {
                    if (e.getMessage().contains("no reply")) {
                        throw new AssertionError("no reply and no close within " + TIMEOUT_MS + " ms after " + after
                                + "; replies so far " + replies);
                    }
                    return false; // ECONNRESET: closed
                }
                if (!got) {
                    return false;
                }
                rx.closeFds();
                check((rx.flags() & VhostUserMessage.FLAG_REPLY) != 0 && (rx.flags() & 3) == 1,
                        "reply to " + VhostUserRequest.describe(rx.request()) + " has flags 0x"
                                + Integer.toHexString(rx.flags()) + " after " + after);
                replies.merge(rx.request(), 1, Integer::sum);
                if (rx.size() == 8) {
                    lastU64.put(rx.request(), rx.u64());
                }
            }
            return true;
        }

        /** True if the server closes the connection within the timeout without sending anything. */
        boolean awaitClosed() throws IOException {
            try {
                boolean got = connection.receive(rx, this::awaitReadable);
                rx.closeFds();
                return !got;
            } catch (VhostUserException e) {
                return true;
            } catch (IOException e) {
                return !e.getMessage().contains("no reply");
            }
        }

        @Override
        public void close() {
            epoll.close();
            connection.close();
        }
    }
}
