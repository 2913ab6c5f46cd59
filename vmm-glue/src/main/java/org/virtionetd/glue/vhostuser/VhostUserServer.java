package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.DirtyLog;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.memory.MemoryRegion;
import org.virtionetd.virtio.os.Epoll;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.queue.Notifier;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

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
    private final AtomicLong connections = new AtomicLong();
    private final AtomicLong disconnects = new AtomicLong();
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
        return connections.get();
    }

    /** Connections ended and cleaned up (device reset, memory unmapped, fds closed) so far. */
    public long disconnects() {
        return disconnects.get();
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
        session = new Session(connection, device.queueCount());
        connections.incrementAndGet();
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
                && REPLY_ACK.in(session.protocolFeatures);
        try {
            m.validate();
            if (request == null || request.payload() == VhostUserRequest.Payload.UNSUPPORTED) {
                throw new VhostUserException(VhostUserException.Kind.UNSUPPORTED,
                        VhostUserRequest.describe(id) + " is not supported");
            }
            dispatch(request, m);
            handled.incrementAndGet(request.id());
            if (ack) {
                session.connection.send(m.replyU64(id, 0));
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
                        session.connection.send(m.replyU64(id, 1));
                    }
                    return true;
                case REFUSED:
                default:
                    LOG.log(System.Logger.Level.WARNING, VhostUserRequest.describe(id) + " refused: "
                            + e.getMessage());
                    if (ack) {
                        session.connection.send(m.replyU64(id, 1));
                    }
                    return true;
            }
        }
    }

    private void dispatch(VhostUserRequest request, VhostUserMessage m) throws VhostUserException, IOException {
        Session s = session;
        switch (request) {
            case GET_FEATURES:
                s.connection.send(m.replyU64(request.id(), backendFeatures()));
                break;
            case SET_FEATURES:
                setFeatures(m.u64());
                break;
            case GET_PROTOCOL_FEATURES:
                s.connection.send(m.replyU64(request.id(), offeredProtocolFeatures));
                break;
            case SET_PROTOCOL_FEATURES: {
                long v = m.u64();
                if ((v & ~offeredProtocolFeatures) != 0) {
                    throw VhostUserException.refused("protocol features "
                            + VhostUserProtocolFeature.describe(v & ~offeredProtocolFeatures) + " were not offered");
                }
                s.protocolFeatures = v;
                LOG.log(System.Logger.Level.DEBUG, "protocol features " + VhostUserProtocolFeature.describe(v));
                break;
            }
            case SET_OWNER:
                s.owner = true;
                break;
            case RESET_OWNER:
                // Deprecated; the spec recommends ignoring it or disabling all rings. We disable them.
                for (Vring v : s.vrings) {
                    v.enabled = Boolean.FALSE;
                    if (v.started) {
                        device.setQueueEnabled(v.index, false);
                    }
                }
                break;
            case GET_QUEUE_NUM:
                s.connection.send(m.replyU64(request.id(), queuePairs()));
                break;
            case SET_MEM_TABLE:
                setMemTable(m);
                break;
            case ADD_MEM_REG:
                addMemoryRegion(m);
                break;
            case REM_MEM_REG:
                removeMemoryRegion(m);
                break;
            case GET_MAX_MEM_SLOTS:
                s.connection.send(m.replyU64(request.id(), MAX_MEM_SLOTS));
                break;
            case SET_LOG_BASE:
                setLogBase(m);
                break;
            case SET_LOG_FD: {
                EventFd fd = EventFd.adopt(m.takeFd(0));
                if (s.logFd != null) {
                    s.logFd.close();
                }
                s.logFd = fd;
                break;
            }
            case SET_VRING_NUM:
                setVringNum(vring(m.stateIndex(), request), m.stateNum());
                break;
            case SET_VRING_ADDR:
                setVringAddress(vring(m.addressIndex(), request), m);
                break;
            case SET_VRING_BASE: {
                Vring v = vring(m.stateIndex(), request);
                if (v.started) {
                    throw VhostUserException.refused("SET_VRING_BASE on queue " + v.index + " while it runs");
                }
                int base = m.stateNum();
                if (base < 0 || base > 0xffff) {
                    throw VhostUserException.refused("queue " + v.index + ": base "
                            + Integer.toUnsignedString(base) + " is not a 16-bit ring index");
                }
                v.base = base;
                break;
            }
            case GET_VRING_BASE: {
                int index = m.stateIndex();
                if (index < 0 || index >= s.vrings.length) {
                    // The front-end waits for a vring state we cannot give: end the connection.
                    throw VhostUserException.malformed("GET_VRING_BASE for queue " + Integer.toUnsignedString(index)
                            + ", the device has " + s.vrings.length);
                }
                Vring v = s.vrings[index];
                stopVring(v, true);
                s.connection.send(m.replyState(request.id(), index, v.base));
                break;
            }
            case SET_VRING_KICK:
                setVringKick(m);
                break;
            case SET_VRING_CALL:
                setVringCall(m);
                break;
            case SET_VRING_ERR: {
                long u = m.u64();
                Vring v = vring((int) (u & VhostUserMessage.VRING_INDEX_MASK), request);
                EventFd fd = (u & VhostUserMessage.VRING_NOFD_MASK) != 0 ? null : EventFd.adopt(m.takeFd(0));
                if (v.err != null) {
                    v.err.close();
                }
                v.err = fd;
                break;
            }
            case SET_VRING_ENABLE: {
                Vring v = vring(m.stateIndex(), request);
                int num = m.stateNum();
                if (num != 0 && num != 1) {
                    throw VhostUserException.refused("SET_VRING_ENABLE queue " + v.index + " with "
                            + Integer.toUnsignedString(num) + ", expected 0 or 1");
                }
                v.enabled = num == 1;
                if (v.started) {
                    device.setQueueEnabled(v.index, num == 1);
                }
                break;
            }
            case SEND_RARP: {
                byte[] mac = new byte[6];
                m.buffer().get(VhostUserMessage.HEADER_SIZE, mac);
                device.sendRarp(mac);
                break;
            }
            case NET_SET_MTU: {
                long mtu = m.u64();
                if (mtu < 0 || mtu > 0xffff) {
                    throw VhostUserException.refused("MTU " + Long.toUnsignedString(mtu) + " is not a 16-bit value");
                }
                try {
                    device.setMtu((int) mtu);
                } catch (VirtioException e) {
                    throw VhostUserException.refused("MTU " + mtu + ": " + e.getMessage(), e);
                }
                break;
            }
            case GET_CONFIG: {
                int offset = m.configOffset();
                int flags = m.configFlags();
                int size = m.configSize();
                try {
                    byte[] data = device.readConfig(offset, size);
                    s.connection.send(m.replyConfig(request.id(), offset, flags, data));
                } catch (VirtioException e) {
                    // "vhost-user back-end uses zero length of payload to indicate an error".
                    LOG.log(System.Logger.Level.WARNING, "GET_CONFIG offset " + offset + " size " + size
                            + " refused: " + e.getMessage());
                    s.connection.send(m.reply(request.id(), 0));
                }
                break;
            }
            case SET_CONFIG:
                try {
                    device.writeConfig(m.configOffset(), m.configPayload());
                } catch (VirtioException e) {
                    throw VhostUserException.refused("SET_CONFIG offset " + m.configOffset() + " size "
                            + m.configSize() + " flags " + m.configFlags() + ": " + e.getMessage(), e);
                }
                break;
            case SET_STATUS: {
                long status = m.u64();
                if (status < 0 || status > 0xff) {
                    throw VhostUserException.refused("device status 0x" + Long.toHexString(status)
                            + " is not an 8-bit value");
                }
                if (status == 0) {
                    // 2.1.2: writing 0 resets the device, its queues with it; stop ours first so that the
                    // bases are kept and no queue runs on when the device forgets it.
                    for (Vring v : s.vrings) {
                        stopVring(v, true);
                        v.configured = false;
                    }
                    s.deviceFeatures = -1;
                }
                device.setStatus((int) status);
                if (status == 0 && s.memory != null) {
                    device.setMemory(s.memory);
                }
                break;
            }
            case GET_STATUS:
                s.connection.send(m.replyU64(request.id(), device.status() & 0xffL));
                break;
            case RESET_DEVICE:
                resetDevice();
                break;
            default:
                throw new VhostUserException(VhostUserException.Kind.UNSUPPORTED,
                        VhostUserRequest.describe(request.id()) + " is not supported");
        }
    }

    // ------------------------------------------------------------------ features

    private long backendFeatures() {
        long f = device.offeredFeatures() | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES);
        if (LOG_SHMFD.in(offeredProtocolFeatures)) {
            f |= VirtioFeature.bit(VirtioFeature.VHOST_F_LOG_ALL);
        }
        return f;
    }

    private long queuePairs() {
        // vhost-user-net counts queue pairs (QEMU compares it with queues=N); other devices count queues.
        return device.deviceType() == 1 ? Math.max(1, device.queueCount() / 2) : device.queueCount();
    }

    private void setFeatures(long features) throws VhostUserException {
        Session s = session;
        long offered = backendFeatures();
        if ((features & ~offered) != 0) {
            throw VhostUserException.refused("features 0x" + Long.toHexString(features) + " include bits 0x"
                    + Long.toHexString(features & ~offered) + " that were not offered (offered 0x"
                    + Long.toHexString(offered) + ")");
        }
        long deviceBits = features & ~VHOST_USER_ONLY_FEATURES;
        // QEMU sends SET_FEATURES again only to switch VHOST_F_LOG_ALL on a running device: do not make the
        // device renegotiate for that.
        if (deviceBits != s.deviceFeatures) {
            try {
                device.setDriverFeatures(deviceBits);
            } catch (VirtioException e) {
                throw VhostUserException.refused("features 0x" + Long.toHexString(features) + ": "
                        + e.getMessage(), e);
            }
            s.deviceFeatures = deviceBits;
        }
        s.features = features;
        installDirtyLog();
    }

    private boolean protocolFeaturesAcked() {
        return VirtioFeature.has(session.features, VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES);
    }

    // ------------------------------------------------------------------ memory

    /** Maps one region described at index {@code i} of the message with {@code fd}; takes ownership of fd. */
    private MemoryRegion mapRegion(VhostUserMessage m, int i, int fd) throws VhostUserException {
        long gpa = m.regionGuestAddress(i);
        long size = m.regionSize(i);
        long user = m.regionUserAddress(i);
        long offset = m.regionMmapOffset(i);
        String what = "memory region guest 0x" + Long.toHexString(gpa) + " size 0x" + Long.toHexString(size)
                + " user 0x" + Long.toHexString(user) + " mmap offset 0x" + Long.toHexString(offset);
        try {
            if (size <= 0 || offset < 0 || offset + size < offset) {
                throw VhostUserException.refused(what + ": size and offset must be positive and not wrap");
            }
            // Unsigned: the region must end at or below 2^64 - 1 in both address spaces.
            if (Long.compareUnsigned(gpa, -size) >= 0 || Long.compareUnsigned(user, -size) >= 0) {
                throw VhostUserException.refused(what + " wraps around the address space");
            }
            long fileSize = LinuxNative.fileSize(fd);
            // Mapping past the end of the file would succeed and then SIGBUS on first access.
            if (offset + size > fileSize) {
                throw VhostUserException.refused(what + " goes beyond the end of its fd (" + fileSize
                        + " bytes)");
            }
            return MemoryRegion.map(gpa, size, user, fd, offset);
        } catch (GuestMemoryException | IOException e) {
            LinuxNative.close(fd);
            throw VhostUserException.refused(what + ": " + e.getMessage(), e);
        } catch (VhostUserException e) {
            LinuxNative.close(fd);
            throw e;
        }
    }

    /** A memory from regions, refusing overlaps in guest-physical or front-end user addresses. */
    private static GuestMemory memoryOf(List<MemoryRegion> regions) throws VhostUserException {
        for (int i = 0; i < regions.size(); i++) {
            for (int j = i + 1; j < regions.size(); j++) {
                MemoryRegion a = regions.get(i);
                MemoryRegion b = regions.get(j);
                if (Long.compareUnsigned(a.userAddress() - b.userAddress(), b.size()) < 0
                        || Long.compareUnsigned(b.userAddress() - a.userAddress(), a.size()) < 0) {
                    throw VhostUserException.refused("memory regions overlap in user addresses: " + a + " and " + b);
                }
            }
        }
        try {
            return GuestMemory.of(regions);
        } catch (GuestMemoryException e) {
            throw VhostUserException.refused(e.getMessage(), e);
        }
    }

    private void setMemTable(VhostUserMessage m) throws VhostUserException {
        int n = m.regionCount();
        List<MemoryRegion> mapped = new ArrayList<>();
        GuestMemory next;
        try {
            for (int i = 0; i < n; i++) {
                mapped.add(mapRegion(m, i, m.takeFd(i)));
            }
            next = memoryOf(mapped);
        } catch (VhostUserException e) {
            mapped.forEach(MemoryRegion::close);
            throw e;
        }
        List<MemoryRegion> retired = session.memory == null ? List.of() : session.memory.regions();
        session.extraRefs.clear();
        replaceMemory(next, retired);
        LOG.log(System.Logger.Level.DEBUG, "memory table: " + next.regions());
    }

    private void addMemoryRegion(VhostUserMessage m) throws VhostUserException {
        List<MemoryRegion> current = session.memory == null ? List.of() : session.memory.regions();
        if (current.size() >= MAX_MEM_SLOTS) {
            throw VhostUserException.refused("ADD_MEM_REG: all " + MAX_MEM_SLOTS + " memory slots are in use");
        }
        long gpa = m.regionGuestAddress(0);
        long size = m.regionSize(0);
        long user = m.regionUserAddress(0);
        for (MemoryRegion r : current) {
            if (r.guestAddress() == gpa && r.size() == size && r.userAddress() == user) {
                // The same region again (another queue pair's vhost device): one more reference, nothing to map.
                LinuxNative.close(m.takeFd(0));
                session.extraRefs.merge(r, 1, Integer::sum);
                return;
            }
        }
        MemoryRegion region = mapRegion(m, 0, m.takeFd(0));
        List<MemoryRegion> all = new ArrayList<>(current);
        all.add(region);
        GuestMemory next;
        try {
            next = memoryOf(all);
        } catch (VhostUserException e) {
            region.close();
            throw e;
        }
        replaceMemory(next, List.of());
    }

    private void removeMemoryRegion(VhostUserMessage m) throws VhostUserException {
        // "identified by its guest address, user address and size. The mmap offset is ignored."
        long gpa = m.regionGuestAddress(0);
        long size = m.regionSize(0);
        long user = m.regionUserAddress(0);
        List<MemoryRegion> current = session.memory == null ? List.of() : session.memory.regions();
        List<MemoryRegion> rest = new ArrayList<>();
        MemoryRegion removed = null;
        for (MemoryRegion r : current) {
            if (removed == null && r.guestAddress() == gpa && r.size() == size && r.userAddress() == user) {
                removed = r;
            } else {
                rest.add(r);
            }
        }
        if (removed == null) {
            throw VhostUserException.refused("REM_MEM_REG: no memory region at guest 0x" + Long.toHexString(gpa)
                    + " size 0x" + Long.toHexString(size) + " user 0x" + Long.toHexString(user));
        }
        Integer extra = session.extraRefs.get(removed);
        if (extra != null) {
            // Another queue pair's vhost device still has it.
            if (extra == 1) {
                session.extraRefs.remove(removed);
            } else {
                session.extraRefs.put(removed, extra - 1);
            }
            return;
        }
        replaceMemory(memoryOf(rest), List.of(removed));
    }

    /**
     * Gives the device a new memory: running rings are stopped (the device needs that), ring addresses are
     * translated again in the new table, the rings restarted, and only then the retired regions unmapped.
     */
    private void replaceMemory(GuestMemory next, List<MemoryRegion> retired) {
        Session s = session;
        pauseRunning();
        s.memory = next;
        installDirtyLog();
        device.setMemory(next);
        for (Vring v : s.vrings) {
            v.configured = false;
            if (v.addressSet && v.sizeSet) {
                try {
                    configure(v);
                } catch (VhostUserException e) {
                    LOG.log(System.Logger.Level.WARNING, "queue " + v.index + " no longer fits the new memory table: "
                            + e.getMessage());
                }
            }
        }
        // Every ring that has its kick starts if it can, also one stopped by an earlier table that lost its ring.
        resume(List.of(s.vrings));
        updateUsedRingLog();
        retired.forEach(MemoryRegion::close);
    }

    private void setLogBase(VhostUserMessage m) throws IOException {
        Session s = session;
        long result = 0;
        try {
            if (!LOG_SHMFD.in(s.protocolFeatures)) {
                throw VhostUserException.refused("SET_LOG_BASE without LOG_SHMFD negotiated");
            }
            DirtyPageLog log = DirtyPageLog.map(m.takeFd(0), m.logSize(), m.logOffset());
            // A device thread may be marking into the old log: stop the rings before unmapping it.
            List<Vring> paused = pauseRunning();
            DirtyPageLog old = s.log;
            s.log = log;
            installDirtyLog();
            updateUsedRingLog();
            resume(paused);
            if (old != null) {
                old.close();
            }
            LOG.log(System.Logger.Level.DEBUG, "dirty log of " + log.pages() + " pages");
        } catch (VhostUserException e) {
            LOG.log(System.Logger.Level.WARNING, "SET_LOG_BASE refused: " + e.getMessage());
            result = 1;
        }
        // SET_LOG_BASE always has a reply when LOG_SHMFD is negotiated (vhost-user.rst, "Communication").
        s.connection.send(m.replyU64(VhostUserRequest.SET_LOG_BASE.id(), result));
    }

    /** Installs the log into the current memory when VHOST_F_LOG_ALL is on, removes it otherwise. */
    private void installDirtyLog() {
        Session s = session;
        if (s.memory == null) {
            return;
        }
        boolean on = VirtioFeature.has(s.features, VirtioFeature.VHOST_F_LOG_ALL) && s.log != null;
        s.memory.setDirtyLog(on ? s.log : DirtyLog.NONE);
    }

    private void updateUsedRingLog() {
        Session s = session;
        if (s.log == null) {
            return;
        }
        List<DirtyPageLog.UsedRing> rings = new ArrayList<>();
        for (Vring v : s.vrings) {
            if (v.configured) {
                rings.add(new DirtyPageLog.UsedRing(v.usedGpa, v.usedLength(), v.logGuestAddress,
                        (v.addressFlags & VhostUserMessage.VRING_F_LOG) != 0));
            }
        }
        s.log.setUsedRings(rings.toArray(new DirtyPageLog.UsedRing[0]));
    }

    // ------------------------------------------------------------------ vrings

    private Vring vring(int index, VhostUserRequest request) throws VhostUserException {
        if (index < 0 || index >= session.vrings.length) {
            throw VhostUserException.refused(request.name() + ": queue index " + Integer.toUnsignedString(index)
                    + ", the device has " + session.vrings.length + " queues");
        }
        return session.vrings[index];
    }

    private void setVringNum(Vring v, int num) throws VhostUserException {
        if (v.started) {
            throw VhostUserException.refused("SET_VRING_NUM on queue " + v.index + " while it runs");
        }
        v.size = num;
        v.sizeSet = true;
        v.configured = false;
        if (v.addressSet) {
            configure(v);
            updateUsedRingLog();
            maybeStart(v);
        }
    }

    private long translate(Vring v, String what, long user) throws VhostUserException {
        long gpa = session.memory.guestAddressOfUser(user);
        if (gpa == GuestMemory.NOWHERE) {
            throw VhostUserException.refused("queue " + v.index + ": " + what + " user address 0x"
                    + Long.toHexString(user) + " is in no memory region");
        }
        return gpa;
    }

    private void setVringAddress(Vring v, VhostUserMessage m) throws VhostUserException {
        if (session.memory == null) {
            throw VhostUserException.refused("SET_VRING_ADDR for queue " + v.index + " before any memory table");
        }
        long desc = m.descriptorAddress();
        long avail = m.availableAddress();
        long used = m.usedAddress();
        // Translate first, so that a bad message changes nothing.
        long descGpa = translate(v, "descriptor table", desc);
        long availGpa = translate(v, "available ring", avail);
        long usedGpa = translate(v, "used ring", used);
        if (v.started && v.configured && descGpa == v.descGpa && availGpa == v.availGpa && usedGpa == v.usedGpa) {
            // Same ring, new flags: QEMU switches used-ring logging this way on a running ring (migration).
            v.addressFlags = m.addressFlags();
            v.logGuestAddress = m.logGuestAddress();
            updateUsedRingLog();
            return;
        }
        List<Vring> paused = new ArrayList<>();
        if (v.started) {
            stopVring(v, false);
            paused.add(v);
        }
        long oldDesc = v.descUser;
        long oldAvail = v.availUser;
        long oldUsed = v.usedUser;
        boolean oldSet = v.addressSet;
        v.descUser = desc;
        v.availUser = avail;
        v.usedUser = used;
        v.addressSet = true;
        v.configured = false;
        try {
            if (v.sizeSet) {
                configure(v);
            }
        } catch (VhostUserException e) {
            v.descUser = oldDesc;
            v.availUser = oldAvail;
            v.usedUser = oldUsed;
            v.addressSet = oldSet;
            if (oldSet && v.sizeSet) {
                try {
                    configure(v);
                } catch (VhostUserException again) {
                    LOG.log(System.Logger.Level.WARNING, again.getMessage());
                }
            }
            resume(paused);
            throw e;
        }
        v.addressFlags = m.addressFlags();
        v.logGuestAddress = m.logGuestAddress();
        updateUsedRingLog();
        resume(paused);
        maybeStart(v);
    }

    /** Translates the ring's user addresses and gives them to the device (which checks size and addresses). */
    private void configure(Vring v) throws VhostUserException {
        long desc = translate(v, "descriptor table", v.descUser);
        long avail = translate(v, "available ring", v.availUser);
        long used = translate(v, "used ring", v.usedUser);
        try {
            device.setQueue(v.index, v.size, desc, avail, used);
        } catch (VirtioException e) {
            v.configured = false;
            throw VhostUserException.refused("queue " + v.index + " size " + Integer.toUnsignedString(v.size)
                    + ": " + e.getMessage(), e);
        }
        v.descGpa = desc;
        v.availGpa = avail;
        v.usedGpa = used;
        v.configured = true;
    }

    /** What an fd refers to, as /proc shows it (e.g. "anon_inode:[eventfd]"). */
    private static String fdTarget(int fd) {
        try {
            return java.nio.file.Files.readSymbolicLink(java.nio.file.Path.of("/proc/self/fd/" + fd)).toString();
        } catch (IOException | RuntimeException e) {
            return "unknown (" + e.getMessage() + ")";
        }
    }

    private void setVringKick(VhostUserMessage m) throws VhostUserException {
        long u = m.u64();
        Vring v = vring((int) (u & VhostUserMessage.VRING_INDEX_MASK), VhostUserRequest.SET_VRING_KICK);
        EventFd kick = (u & VhostUserMessage.VRING_NOFD_MASK) != 0 ? null : EventFd.adopt(m.takeFd(0));
        if (kick != null) {
            String what = fdTarget(kick.fd());
            if (!what.equals("anon_inode:[eventfd]")) {
                kick.close();
                // The queue loop polls the kick: a file that cannot be polled would stop the whole pair.
                throw VhostUserException.refused("queue " + v.index + ": the kick fd is " + what + ", not an eventfd");
            }
        }
        if (v.started) {
            stopVring(v, false);
        }
        if (v.kick != null) {
            v.kick.close();
        }
        v.kick = kick;
        // "The back-end must start ring upon receiving a kick": the device waits on the kick fd itself, so the
        // ring starts now (or, with no fd, polls).
        v.kickReceived = true;
        maybeStart(v);
        if (!v.started) {
            LOG.log(System.Logger.Level.DEBUG, "queue " + v.index + " has its kick; it starts once its size,"
                    + " addresses and memory are set");
        }
    }

    private void setVringCall(VhostUserMessage m) throws VhostUserException {
        long u = m.u64();
        Vring v = vring((int) (u & VhostUserMessage.VRING_INDEX_MASK), VhostUserRequest.SET_VRING_CALL);
        if ((u & VhostUserMessage.VRING_NOFD_MASK) != 0) {
            v.callActive = false;
        } else {
            int fd = m.takeFd(0);
            if (v.callSlot == null) {
                v.callSlot = EventFd.adopt(fd);
                EventFd slot = v.callSlot;
                v.callNotifier = slot::signal;
            } else {
                try {
                    LinuxNative.dup3(fd, v.callSlot.fd());
                } catch (IOException e) {
                    throw VhostUserException.refused("queue " + v.index + ": cannot install call fd: "
                            + e.getMessage(), e);
                } finally {
                    LinuxNative.close(fd);
                }
            }
            v.callActive = true;
        }
        device.setNotifier(v.index, v.notifier());
    }

    private boolean enabledAtStart(Vring v) {
        if (v.enabled != null) {
            return v.enabled;
        }
        // "If VHOST_USER_F_PROTOCOL_FEATURES has not been negotiated, the ring starts directly in the enabled
        // state ... If it has been negotiated, the ring is initialized in a disabled state".
        return !protocolFeaturesAcked();
    }

    private void maybeStart(Vring v) throws VhostUserException {
        if (v.started || !v.kickReceived || !v.configured || session.memory == null) {
            return;
        }
        try {
            device.setQueueNextAvail(v.index, v.base);
            device.startQueue(v.index, v.kick, v.notifier());
        } catch (VirtioException e) {
            throw VhostUserException.refused("queue " + v.index + " cannot start: " + e.getMessage(), e);
        }
        v.started = true;
        device.setQueueEnabled(v.index, enabledAtStart(v));
        LOG.log(System.Logger.Level.DEBUG, "queue " + v.index + " started, size " + v.size + ", base " + v.base);
    }

    /**
     * Stops a running ring and keeps its next available index as the base. {@code forGood} (GET_VRING_BASE) also
     * drops the kick: the ring starts again only with a new SET_VRING_KICK.
     */
    private void stopVring(Vring v, boolean forGood) {
        if (v.started) {
            v.base = device.stopQueue(v.index) & 0xffff;
            v.started = false;
        }
        if (forGood) {
            v.kickReceived = false;
            if (v.kick != null) {
                v.kick.close();
                v.kick = null;
            }
        }
    }

    private List<Vring> pauseRunning() {
        List<Vring> paused = new ArrayList<>();
        for (Vring v : session.vrings) {
            if (v.started) {
                stopVring(v, false);
                paused.add(v);
            }
        }
        return paused;
    }

    private void resume(List<Vring> paused) {
        for (Vring v : paused) {
            try {
                maybeStart(v);
            } catch (VhostUserException e) {
                LOG.log(System.Logger.Level.WARNING, "queue " + v.index + " cannot restart: " + e.getMessage());
            }
        }
    }

    // ------------------------------------------------------------------ reset and teardown

    private void resetDevice() {
        Session s = session;
        for (Vring v : s.vrings) {
            stopVring(v, true);
        }
        device.reset();
        detachNotifiers(s);
        s.closeVrings();
        s.vrings = newVrings(s.vrings.length);
        s.features = 0;
        s.deviceFeatures = -1;
        installDirtyLog();
        if (s.memory != null) {
            device.setMemory(s.memory);
        }
    }

    /** The device forgets our call eventfds before they are closed. */
    private void detachNotifiers(Session s) {
        for (Vring v : s.vrings) {
            if (v.callSlot != null) {
                device.setNotifier(v.index, Notifier.NONE);
            }
        }
    }

    private static Vring[] newVrings(int n) {
        Vring[] v = new Vring[n];
        for (int i = 0; i < n; i++) {
            v[i] = new Vring(i);
        }
        return v;
    }

    /** After a disconnect: queues stopped, device reset, memory and log unmapped, every fd closed. */
    private void endSession() {
        Session s = session;
        session = null;
        try {
            for (Vring v : s.vrings) {
                stopVring(v, true);
            }
            device.reset();
            detachNotifiers(s);
            device.setMemory(GuestMemory.empty());
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, "device reset after disconnect failed", e);
        } finally {
            if (s.memory != null) {
                s.memory.setDirtyLog(DirtyLog.NONE);
                s.memory.close();
            }
            if (s.log != null) {
                s.log.close();
            }
            if (s.logFd != null) {
                s.logFd.close();
            }
            s.closeVrings();
            connected = false;
            disconnects.incrementAndGet();
            // Last: a front-end that sees the socket close knows the device is already reset.
            s.connection.close();
        }
    }

    /** Per-connection state: everything here is dropped when the front-end goes. */
    private static final class Session {
        final UnixConnection connection;
        Vring[] vrings;
        boolean owner;
        /** Features as the front-end set them, vhost-user bits included. */
        long features;
        /** What the device last accepted (-1: nothing yet). */
        long deviceFeatures = -1;
        long protocolFeatures;
        GuestMemory memory;
        /**
         * Extra references to a region added again identically by ADD_MEM_REG: QEMU keeps one vhost device per queue
         * pair on one connection, each with its own shadow of the memory table, so with queues=N every region
         * arrives N times (and is removed N times). Reset by SET_MEM_TABLE.
         */
        final java.util.Map<MemoryRegion, Integer> extraRefs = new java.util.IdentityHashMap<>();
        DirtyPageLog log;
        EventFd logFd;

        Session(UnixConnection connection, int queues) {
            this.connection = connection;
            this.vrings = newVrings(queues);
        }

        void closeVrings() {
            for (Vring v : vrings) {
                for (EventFd e : new EventFd[] {v.kick, v.callSlot, v.err}) {
                    if (e != null) {
                        e.close();
                    }
                }
                v.kick = null;
                v.callSlot = null;
                v.err = null;
                v.callActive = false;
                v.callNotifier = Notifier.NONE;
            }
        }
    }
}
