package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.os.EventFd;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * A {@link NetBackend} that keeps everything in memory, for device tests: it records every packet the device
 * sends (a copy of the header and the frame), delivers frames the test queued, signals an eventfd while frames
 * wait, and remembers configure() and setGuestOffloads() calls.
 *
 * <p>Thread-safe between the test thread and the device's event loop: all state is guarded by this object.
 * The receive-ready eventfd is signalled when a frame is queued and drained (under the same lock) when the queue
 * becomes empty, so a level-triggered epoll neither misses a frame nor spins on an empty queue.
 */
public final class InMemoryBackend implements NetBackend {
    /** A packet as the device handed it to {@link #send}: header bytes (vnet header length) and frame bytes. */
    public record Sent(byte[] header, byte[] frame) {
        public NetHeaderFields fields() {
            return header.length >= 10 ? NetHeaderFields.decode(header) : null;
        }
    }

    /** One configure() call. */
    public record Configured(long features, int vnetHeaderLength) {
    }

    private record Pending(byte[] header, byte[] frame) {
    }

    private final String name;
    private final EventFd ready;
    private final List<Sent> sent = new ArrayList<>();
    private final ArrayDeque<Pending> toGuest = new ArrayDeque<>();
    private final List<Configured> configureCalls = new ArrayList<>();
    private final List<Long> guestOffloadCalls = new ArrayList<>();
    private final List<Boolean> enabledCalls = new ArrayList<>();
    private final List<String> violations = new ArrayList<>();
    private long capabilities;
    private boolean acceptSends = true;
    private int vnetHeaderLength = -1;
    private boolean closed;

    public InMemoryBackend(String name, long capabilities) {
        this.name = name;
        this.capabilities = capabilities;
        try {
            this.ready = EventFd.create();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create the receive-ready eventfd of backend " + name, e);
        }
    }

    @Override
    public String name() {
        return "memory:" + name;
    }

    @Override
    public synchronized long capabilities() {
        return capabilities;
    }

    public synchronized void setCapabilities(long capabilities) {
        this.capabilities = capabilities;
    }

    @Override
    public synchronized void configure(long negotiatedFeatures, int vnetHeaderLength) {
        if (vnetHeaderLength != 10 && vnetHeaderLength != 12) {
            violations.add("configure with vnet header length " + vnetHeaderLength + " (10 or 12 expected)");
        }
        configureCalls.add(new Configured(negotiatedFeatures, vnetHeaderLength));
        this.vnetHeaderLength = vnetHeaderLength;
    }

    @Override
    public synchronized void setGuestOffloads(long guestOffloads) {
        guestOffloadCalls.add(guestOffloads);
    }

    /** Whether {@link #send} accepts packets (true) or reports them dropped (false, a full queue). */
    public synchronized void setAcceptSends(boolean accept) {
        this.acceptSends = accept;
    }

    @Override
    public boolean send(Packet packet) {
        int hl = packet.headerLength();
        byte[] header = new byte[hl];
        ByteBuffer hb = packet.headerBuffer();
        for (int i = 0; i < hl; i++) {
            header[i] = hb.get(i);
        }
        byte[] frame = new byte[packet.frameLength()];
        int at = 0;
        ByteBuffer[] slices = packet.slices();
        for (int s = 1; s < packet.count(); s++) {
            ByteBuffer b = slices[s];
            int n = b.remaining();
            if (at + n > frame.length) {
                synchronized (this) {
                    violations.add("send: slices hold more than frameLength " + frame.length);
                }
                return false;
            }
            b.get(b.position(), frame, at, n);
            at += n;
        }
        synchronized (this) {
            if (vnetHeaderLength >= 0 && hl != vnetHeaderLength) {
                violations.add("send with header length " + hl + " but configured " + vnetHeaderLength);
            }
            if (!acceptSends) {
                return false;
            }
            sent.add(new Sent(header, frame));
            notifyAll();
            return true;
        }
    }

    /**
     * Queues a frame for the guest; {@code header} becomes the first bytes of the vnet header (zero-padded or
     * cut to the configured length when delivered).
     */
    public synchronized void deliver(byte[] header, byte[] frame) {
        toGuest.addLast(new Pending(header.clone(), frame.clone()));
        ready.signal();
    }

    /** Queues a frame with an all-zero header ("no offload, checksum complete"). */
    public void deliver(byte[] frame) {
        deliver(new byte[0], frame);
    }

    public synchronized int pendingToGuest() {
        return toGuest.size();
    }

    @Override
    public synchronized int peekLength() {
        Pending p = toGuest.peekFirst();
        if (p == null) {
            ready.drain();
            return 0;
        }
        return headerLength() + p.frame.length;
    }

    /**
     * Writes header + frame with absolute puts from each slice's position up to its limit; positions are
     * left unchanged (as a readv into guest memory would).
     */
    @Override
    public synchronized int receive(ByteBuffer[] slices, int count) {
        Pending p = toGuest.peekFirst();
        if (p == null) {
            ready.drain();
            return 0;
        }
        int hl = headerLength();
        byte[] all = new byte[hl + p.frame.length];
        System.arraycopy(p.header, 0, all, 0, Math.min(hl, p.header.length));
        System.arraycopy(p.frame, 0, all, hl, p.frame.length);
        int room = 0;
        for (int i = 0; i < count; i++) {
            room += slices[i].remaining();
        }
        toGuest.removeFirst();
        if (toGuest.isEmpty()) {
            ready.drain();
        }
        if (room < all.length) {
            violations.add("receive with room for " + room + " bytes, frame needs " + all.length
                    + " (peekLength said so); frame dropped");
            return 0;
        }
        int at = 0;
        for (int i = 0; i < count && at < all.length; i++) {
            ByteBuffer s = slices[i];
            int n = Math.min(s.remaining(), all.length - at);
            s.put(s.position(), all, at, n);
            at += n;
        }
        return all.length;
    }

    @Override
    public int receiveReadyFd() {
        return ready.fd();
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            ready.close();
        }
    }

    public synchronized boolean closed() {
        return closed;
    }

    public synchronized List<Sent> sent() {
        return List.copyOf(sent);
    }

    /** Waits until at least {@code n} packets were sent; returns them all. */
    public List<Sent> awaitSent(int n, Duration timeout) {
        Await.until(timeout, () -> sentCount() >= n, n + " packets sent to backend " + name,
                () -> sentCount() + " sent, violations " + violations());
        return sent();
    }

    public synchronized int sentCount() {
        return sent.size();
    }

    public synchronized List<Configured> configureCalls() {
        return List.copyOf(configureCalls);
    }

    @Override
    public synchronized void setEnabled(boolean enabled) {
        enabledCalls.add(enabled);
    }

    /** The values of every setEnabled call, in order. */
    public synchronized List<Boolean> enabledCalls() {
        return List.copyOf(enabledCalls);
    }

    /** The last setEnabled value (true if never called: a backend starts enabled). */
    public synchronized boolean enabled() {
        return enabledCalls.isEmpty() || enabledCalls.get(enabledCalls.size() - 1);
    }

    public synchronized List<Long> guestOffloadCalls() {
        return List.copyOf(guestOffloadCalls);
    }

    /** Breaches of the NetBackend contract by the device (wrong header length, too little room...). */
    public synchronized List<String> violations() {
        return List.copyOf(violations);
    }

    private int headerLength() {
        return vnetHeaderLength < 0 ? 12 : vnetHeaderLength;
    }
}
