package org.virtionetd.backends.nullnet;

import org.virtionetd.backends.BackendFactory;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;
import org.virtionetd.virtio.os.EventFd;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * A backend for measuring the device alone (the pps benchmark): every packet sent is counted and discarded,
 * whatever its offloads (so it carries them all); with a source size it also delivers an endless stream of
 * UDP frames of that size to the guest, as fast as the guest posts buffers. With {@code copy} every packet sent
 * is first copied, header and frame, into a buffer of the backend's own, as DPDK's net_vhost copies each one into
 * an mbuf: the benchmark's tx case then does the same work on both sides (discarding untouched is the other,
 * labelled, figure).
 */
public final class NullBackend implements NetBackend {
    /** Broadcast, from 02:00:00:00:00:01, IPv4/UDP 10.0.0.1 -> 10.0.0.2 port 9 (discard). */
    private static final int ETH_IP_UDP = 14 + 20 + 8;

    private final int sourceSize;
    /** Where a copying sink puts each packet sent (header and frame); null when packets are discarded untouched. */
    private final ByteBuffer sink;
    private final byte[] frame;
    private final EventFd ready;
    private int headerLength = 12;
    /** Written by the queue pair's thread only; read by anyone (opaque: no tearing, no ordering needed). */
    private long sent;
    private long delivered;
    private static final java.lang.invoke.VarHandle SENT;
    private static final java.lang.invoke.VarHandle DELIVERED;

    static {
        try {
            java.lang.invoke.MethodHandles.Lookup l = java.lang.invoke.MethodHandles.lookup();
            SENT = l.findVarHandle(NullBackend.class, "sent", long.class);
            DELIVERED = l.findVarHandle(NullBackend.class, "delivered", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    public NullBackend(int sourceSize) {
        this(sourceSize, false);
    }

    /** {@code copy}: every packet sent is copied into the backend's own buffer before it is counted. */
    public NullBackend(int sourceSize, boolean copy) {
        if (sourceSize != 0 && (sourceSize < ETH_IP_UDP || sourceSize > 65535)) {
            throw new IllegalArgumentException("null backend source size " + sourceSize + " is outside "
                    + ETH_IP_UDP + "..65535");
        }
        this.sourceSize = sourceSize;
        this.sink = copy ? ByteBuffer.allocateDirect(VirtioNetHeader.LENGTH_MRG + Packet.MAX_FRAME_LENGTH) : null;
        this.frame = sourceSize == 0 ? new byte[0] : udpFrame(sourceSize);
        try {
            this.ready = EventFd.create();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (sourceSize > 0) {
            ready.signal(); // never drained: a source is always readable
        }
    }

    private static byte[] udpFrame(int size) {
        ByteBuffer b = ByteBuffer.allocate(size);
        b.put(new byte[] {-1, -1, -1, -1, -1, -1, 2, 0, 0, 0, 0, 1}).putShort((short) 0x0800);
        int ipLen = size - 14;
        b.put((byte) 0x45).put((byte) 0).putShort((short) ipLen).putShort((short) 0).putShort((short) 0x4000)
                .put((byte) 64).put((byte) 17).putShort((short) 0).putInt(0x0a000001).putInt(0x0a000002);
        int sum = 0;
        for (int i = 14; i < 34; i += 2) {
            sum += b.getShort(i) & 0xffff;
        }
        while ((sum >>> 16) != 0) {
            sum = (sum & 0xffff) + (sum >>> 16);
        }
        b.putShort(24, (short) ~sum);
        b.position(34);
        b.putShort((short) 9).putShort((short) 9).putShort((short) (ipLen - 20)).putShort((short) 0); // no UDP csum
        return b.array();
    }

    @Override
    public String name() {
        return Spec.name(sourceSize, sink != null);
    }

    @Override
    public long capabilities() {
        return VirtioNetFeature.OFFLOADS;
    }

    @Override
    public void configure(long negotiatedFeatures, int vnetHeaderLength) {
        headerLength = vnetHeaderLength;
    }

    @Override
    public void setGuestOffloads(long guestOffloads) {
        // Source frames carry no offload: nothing to change.
    }

    @Override
    public boolean send(Packet packet) {
        if (sink != null) {
            copy(packet, sink);
        }
        SENT.setOpaque(this, sent + 1);
        return true;
    }

    /** Copies the packet's header and frame into {@code into} (bulk copies, as large as the slices). */
    private static void copy(Packet packet, ByteBuffer into) {
        into.clear();
        ByteBuffer[] slices = packet.slices();
        for (int i = 0; i < packet.count(); i++) {
            into.put(slices[i]); // consumes the slice's position, which Packet allows
        }
    }

    @Override
    public int peekLength() {
        return sourceSize == 0 ? 0 : headerLength + sourceSize;
    }

    @Override
    public int receive(ByteBuffer[] slices, int count) {
        if (sourceSize == 0) {
            return 0;
        }
        int header = headerLength;
        int at = 0;
        int total = header + sourceSize;
        for (int i = 0; i < count && at < total; i++) {
            ByteBuffer s = slices[i];
            int pos = s.position();
            int n = Math.min(s.remaining(), total - at);
            int k = 0;
            for (; k < n && at + k < header; k++) {
                s.put(pos + k, (byte) 0);
            }
            if (k < n) {
                s.put(pos + k, frame, at + k - header, n - k);
            }
            at += n;
        }
        DELIVERED.setOpaque(this, delivered + 1);
        return at;
    }

    @Override
    public int receiveReadyFd() {
        return ready.fd();
    }

    public long sentCount() {
        return (long) SENT.getOpaque(this);
    }

    /** What the copying sink holds: the last packet sent, header and frame (the test's window on the copy). */
    ByteBuffer lastCopied() {
        return sink.duplicate().flip();
    }

    public long deliveredCount() {
        return (long) DELIVERED.getOpaque(this);
    }

    @Override
    public void close() {
        ready.close();
    }

    /** {@code null}, {@code null:copy}, {@code null:source=SIZE} or {@code null:copy,source=SIZE}. */
    public static final class Spec implements BackendFactory {
        private final int sourceSize;
        private final boolean copy;

        private Spec(int sourceSize, boolean copy) {
            this.sourceSize = sourceSize;
            this.copy = copy;
        }

        public static Spec parse(String text) {
            if (text.equals("null")) {
                return new Spec(0, false);
            }
            String prefix = "null:";
            if (!text.startsWith(prefix) || text.length() == prefix.length()) {
                throw new IllegalArgumentException("backend '" + text + "': expected null, null:copy, "
                        + "null:source=SIZE or null:copy,source=SIZE");
            }
            int size = 0;
            boolean copy = false;
            for (String option : text.substring(prefix.length()).split(",", -1)) {
                if (option.equals("copy") && !copy) {
                    copy = true;
                } else if (option.startsWith("source=") && size == 0) {
                    size = sourceSize(text, option.substring("source=".length()));
                } else {
                    throw new IllegalArgumentException("backend '" + text + "': option '" + option + "' is not "
                            + "copy or source=SIZE, or is given twice (null:copy, null:source=SIZE or "
                            + "null:copy,source=SIZE)");
                }
            }
            return new Spec(size, copy);
        }

        private static int sourceSize(String text, String n) {
            int size;
            try {
                size = Integer.parseInt(n);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("backend '" + text + "': source size '" + n + "' is not a number");
            }
            if (size < ETH_IP_UDP || size > 65535) {
                throw new IllegalArgumentException("backend '" + text + "': source size " + size + " is outside "
                        + ETH_IP_UDP + "..65535");
            }
            return size;
        }

        /** The spec's text, as {@link #parse} reads it. */
        static String name(int sourceSize, boolean copy) {
            if (sourceSize == 0) {
                return copy ? "null:copy" : "null";
            }
            return (copy ? "null:copy,source=" : "null:source=") + sourceSize;
        }

        @Override
        public List<NetBackend> open(int queuePairs) {
            List<NetBackend> out = new ArrayList<>();
            for (int i = 0; i < queuePairs; i++) {
                out.add(new NullBackend(sourceSize, copy));
            }
            return out;
        }

        @Override
        public BackendFactory withoutOffload() {
            return this;
        }

        @Override
        public String toString() {
            return name(sourceSize, copy);
        }
    }
}
