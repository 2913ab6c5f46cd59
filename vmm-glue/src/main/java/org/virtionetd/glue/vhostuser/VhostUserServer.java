package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.os.Epoll;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.file.Path;
import java.util.BitSet;

import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.CONFIG;
import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.CONFIGURE_MEM_SLOTS;
import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.LOG_SHMFD;
import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.MQ;
import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.MTU;
import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.RARP;
import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.REPLY_ACK;
import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.RESET_DEVICE;
import static org.virtionetd.glue.vhostuser.VhostUserProtocolFeature.STATUS;

/**
 * The vhost-user back-end (QEMU docs/interop/vhost-user.rst): listens on a unix socket, serves one front-end at a
 * time and drives a {@link VirtioDevice} from its messages. When the front-end goes away the device is reset and
 * the next front-end is accepted (QEMU {@code reconnect=1}).
 *
 * <p>One thread reads and handles messages in order; the device's own threads run the queues. Front-end input is
 * hostile: a malformed message closes the connection with a logged reason, a refused request gets an error reply
 * (REPLY_ACK) and keeps the old state, and no fd received is ever left open.
 *
 * <p>This class owns the socket, the accept loop and what becomes of a request that fails. Each connection is a
 * {@link Session} (its {@link MemoryTable}, {@link DirtyLogControl} and {@link VringTable}); its
 * {@link RequestDispatcher} hands every request to the part that owns it.
 */
public final class VhostUserServer implements AutoCloseable {
    /** Protocol features this server implements. */
    public static final long SUPPORTED_PROTOCOL_FEATURES =
            VhostUserProtocolFeature.maskOf(MQ, LOG_SHMFD, RARP, REPLY_ACK, MTU, CONFIG, RESET_DEVICE,
                    CONFIGURE_MEM_SLOTS, STATUS);
    /**
     * What we offer by default: all but CONFIG. QEMU's vhost-user-net keeps the config space itself and warns
     * "backend supports VHOST_USER_PROTOCOL_F_CONFIG but QEMU does not" when a net back-end offers it.
     */
    public static final long DEFAULT_PROTOCOL_FEATURES = SUPPORTED_PROTOCOL_FEATURES & ~CONFIG.mask();
    /** GET_MAX_MEM_SLOTS: memory regions we accept through ADD_MEM_REG. */
    public static final int MAX_MEM_SLOTS = 32;
    /** Feature bits that belong to the vhost-user socket, not to the virtio device. */
    static final long VHOST_USER_ONLY_FEATURES =
            VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES) | VirtioFeature.bit(VirtioFeature.VHOST_F_LOG_ALL);

    private static final System.Logger LOG = System.getLogger(VhostUserServer.class.getName());
    private static final long TAG_WAKE = 0;
    private static final long TAG_LISTEN = 1;
    private static final long TAG_CONNECTION = 2;

    private final Path socketPath;
    private final VirtioDevice device;
    private final long offeredProtocolFeatures;
    private final LifecycleCounters lifecycle = new LifecycleCounters();
    private final BitSet unsupportedLogged = new BitSet();
    private final java.util.concurrent.atomic.AtomicLongArray handled = new java.util.concurrent.atomic.AtomicLongArray(64);
    private final VhostUserMessage message = new VhostUserMessage();
    private UnixSocketServer listener;
    private EventFd wake;
    private Epoll epoll;
    private Thread thread;
    private volatile boolean closing;
    private volatile boolean connected;
    private Session session;
    private RequestDispatcher dispatcher;

    /** Stops a wait in the read loop: {@link #close()} was called. */
    private static final class Closing extends IOException {
        private static final long serialVersionUID = 1L;

        Closing() {
            super("vhost-user server is closing");
        }
    }

    /** A server offering {@link #DEFAULT_PROTOCOL_FEATURES}. */
    public VhostUserServer(Path socketPath, VirtioDevice device) {
        this(socketPath, device, DEFAULT_PROTOCOL_FEATURES);
    }

    /** A server offering the given protocol features, a subset of {@link #SUPPORTED_PROTOCOL_FEATURES}. */
    public VhostUserServer(Path socketPath, VirtioDevice device, long offeredProtocolFeatures) {
        if ((offeredProtocolFeatures & ~SUPPORTED_PROTOCOL_FEATURES) != 0) {
            throw new IllegalArgumentException("protocol features " + VhostUserProtocolFeature.describe(
                    offeredProtocolFeatures & ~SUPPORTED_PROTOCOL_FEATURES) + " are not implemented");
        }
        this.socketPath = socketPath;
        this.device = device;
        this.offeredProtocolFeatures = offeredProtocolFeatures;
    }

    /** The protocol features GET_PROTOCOL_FEATURES answers. */
    public long offeredProtocolFeatures() {
        return offeredProtocolFeatures;
    }

    /**
     * Binds the socket (mode 0600; a stale file is replaced, one in use is an error) and starts the thread that
     * accepts and serves front-ends.
     */
    public synchronized void start() throws IOException {
        if (thread != null) {
            throw new IllegalStateException("vhost-user server on " + socketPath + " already started");
        }
        listener = UnixSocketServer.listen(socketPath);
        try {
            wake = EventFd.create();
            epoll = new Epoll(4);
            epoll.add(wake.fd(), LinuxNative.EPOLLIN, TAG_WAKE);
            epoll.add(listener.fd(), LinuxNative.EPOLLIN, TAG_LISTEN);
        } catch (IOException e) {
            releaseListener();
            throw e;
        }
        thread = new Thread(this::run, "vhost-user " + socketPath.getFileName());
        thread.start();
        LOG.log(System.Logger.Level.INFO, "vhost-user back-end listening on " + socketPath);
    }

    public Path socketPath() {
        return socketPath;
    }

    /** True while a front-end is connected. */
    public boolean connected() {
        return connected;
    }

    /** Front-ends accepted so far. */
    public long connections() {
        return lifecycle.connections();
    }

    /** Connections ended and cleaned up (device reset, memory unmapped, fds closed) so far. */
    public long disconnects() {
        return lifecycle.disconnects();
    }

    /** The device's connections, resets, memory changes and dirty logging, over all connections. */
    public LifecycleCounters lifecycle() {
        return lifecycle;
    }

    /** How many {@code request} messages were handled successfully (all connections). */
    public long handled(VhostUserRequest request) {
        return handled.get(request.id());
    }

    /**
     * Ends the current connection (queues stopped, device reset, memory unmapped), stops the thread, closes the
     * socket and removes its file. Safe from any thread, e.g. a SIGTERM hook; idempotent.
     */
    @Override
    public void close() {
        Thread t;
        synchronized (this) {
            if (closing) {
                return;
            }
            closing = true;
            t = thread;
        }
        if (t == null) {
            return;
        }
        wake.signal();
        boolean interrupted = false;
        while (t.isAlive()) {
            try {
                t.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        releaseListener();
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        LOG.log(System.Logger.Level.INFO, "vhost-user back-end on " + socketPath + " closed");
    }

    private void releaseListener() {
        if (epoll != null) {
            epoll.close();
        }
        if (wake != null) {
            wake.close();
        }
        listener.close();
    }

    // ------------------------------------------------------------------ thread

    private void run() {
        try {
            while (!closing) {
                int fd = awaitConnection();
                if (fd < 0) {
                    break;
                }
                serve(fd);
            }
        } catch (IOException e) {
            if (!(e instanceof Closing)) {
                LOG.log(System.Logger.Level.ERROR, "vhost-user server on " + socketPath + " stopped: "
                        + e.getMessage(), e);
            }
        } catch (RuntimeException | Error e) {
            LOG.log(System.Logger.Level.ERROR, "vhost-user server on " + socketPath + " failed", e);
            throw e;
        }
    }

    /** Waits for a front-end; -1 when closing. */
    private int awaitConnection() throws IOException {
        while (!closing) {
            int n = epoll.await(-1);
            for (int i = 0; i < n; i++) {
                if (epoll.readyTag(i) == TAG_WAKE) {
                    return -1;
                }
            }
            int fd = listener.accept();
            if (fd >= 0) {
                return fd;
            }
        }
        return -1;
    }

    private void awaitReadable() throws IOException {
        while (true) {
            if (closing) {
                throw new Closing();
            }
            int n = epoll.await(-1);
            for (int i = 0; i < n; i++) {
                if (epoll.readyTag(i) == TAG_WAKE) {
                    throw new Closing();
                }
            }
            if (n > 0) {
                return;
            }
        }
    }

    private void serve(int fd) throws IOException {
        UnixConnection connection = new UnixConnection(fd);
        session = new Session(connection, device, offeredProtocolFeatures, lifecycle,
                socketPath.getFileName().toString());
        dispatcher = new RequestDispatcher(session, device);
        lifecycle.connected();
        connected = true;
        epoll.remove(listener.fd());
        LOG.log(System.Logger.Level.INFO, "vhost-user front-end connected on " + socketPath);
        try {
            epoll.add(fd, LinuxNative.EPOLLIN | LinuxNative.EPOLLHUP, TAG_CONNECTION);
            while (true) {
                boolean got;
                try {
                    got = connection.receive(message, this::awaitReadable);
                } catch (VhostUserException e) {
                    LOG.log(System.Logger.Level.WARNING, "closing vhost-user connection on " + socketPath + ": "
                            + e.getMessage());
                    return;
                }
                if (!got) {
                    LOG.log(System.Logger.Level.INFO, "vhost-user front-end on " + socketPath + " disconnected");
                    return;
                }
                try {
                    if (!handle(message)) {
                        return;
                    }
                } finally {
                    message.closeFds();
                }
            }
        } catch (Closing e) {
            throw e;
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "vhost-user connection on " + socketPath + " failed: "
                    + e.getMessage());
        } finally {
            message.closeFds();
            epoll.remove(fd);
            endSession();
            if (!closing) {
                epoll.add(listener.fd(), LinuxNative.EPOLLIN, TAG_LISTEN);
            }
        }
    }

    /** Handles one message; false closes the connection. */
    private boolean handle(VhostUserMessage m) throws IOException {
        int id = m.request();
        VhostUserRequest request = m.requestType();
        boolean ack = request != null && !request.replies() && m.needReply()
                && session.negotiated(REPLY_ACK);
        try {
            m.validate();
            if (request == null || request.payload() == VhostUserRequest.Payload.UNSUPPORTED) {
                throw new VhostUserException(VhostUserException.Kind.UNSUPPORTED,
                        VhostUserRequest.describe(id) + " is not supported");
            }
            dispatcher.dispatch(request, m);
            handled.incrementAndGet(request.id());
            if (ack) {
                session.send(m.replyU64(id, 0));
            }
            return true;
        } catch (VhostUserException e) {
            switch (e.kind()) {
                case MALFORMED:
                    LOG.log(System.Logger.Level.WARNING, "closing vhost-user connection on " + socketPath + ": "
                            + e.getMessage());
                    return false;
                case UNSUPPORTED:
                    synchronized (unsupportedLogged) {
                        int key = id >= 0 && id < 4096 ? id : 4095;
                        if (!unsupportedLogged.get(key)) {
                            unsupportedLogged.set(key);
                            LOG.log(System.Logger.Level.WARNING, e.getMessage() + " (payload " + m.size()
                                    + " bytes, " + m.fdCount() + " fds; logged once per request)");
                        }
                    }
                    if (m.needReply()) {
                        session.send(m.replyU64(id, 1));
                    }
                    return true;
                case REFUSED:
                default:
                    LOG.log(System.Logger.Level.WARNING, VhostUserRequest.describe(id) + " refused: "
                            + e.getMessage());
                    if (ack) {
                        session.send(m.replyU64(id, 1));
                    }
                    return true;
            }
        } catch (RuntimeException e) {
            // A fault of ours, not of the front-end: the request fails, and this socket keeps serving (the thread
            // ending here would leave the device unreachable until the process restarts).
            LOG.log(System.Logger.Level.ERROR, VhostUserRequest.describe(id) + " failed inside the device", e);
            if (ack) {
                session.send(m.replyU64(id, 1));
            }
            return true;
        }
    }

    /** After a disconnect: queues stopped, device reset, memory and log unmapped, every fd closed. */
    private void endSession() {
        Session s = session;
        session = null;
        dispatcher = null;
        try {
            s.stopDevice();
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, "device reset after disconnect failed", e);
        } finally {
            s.release();
            connected = false;
            lifecycle.disconnected();
            // Last: a front-end that sees the socket close knows the device is already reset.
            s.closeConnection();
        }
    }
}
