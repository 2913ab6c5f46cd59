package org.virtionetd.backends.vswitch;

import org.virtionetd.backends.offload.OffloadCounters;
import org.virtionetd.backends.offload.OffloadingBackend;
import org.virtionetd.backends.tap.BackendSpec;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;
import org.virtionetd.virtio.os.Epoll;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ClosedChannelException;
import java.util.List;
import java.util.concurrent.atomic.LongAdder;

/**
 * A tap as one more port of a {@link VirtualSwitch} (its "uplink" to the host's network stack), as a VALE switch
 * attaches a host NIC: what the tap receives from the kernel is switched to the guests like any port's frames
 * (learned, flooded), and what the switch forwards to the uplink port is written to the tap.
 *
 * <p>Offloads: the tap sits behind an {@link OffloadingBackend}, so a frame leaves the switch with what the tap can
 * carry. A tap with a vnet header takes a guest's GSO frame with its partial checksum as it is (the kernel
 * segments or hands it on whole: offloads are done only at the port that cannot take them); a tap without
 * one gets plain frames, segmented and checksummed in software. In the other direction the tap is programmed
 * (TUNSETOFFLOAD) with every GUEST_* offload it can deliver, so the kernel may hand the switch 64 KiB TCP frames
 * with partial checksums; each guest port then completes what its own driver did not accept.
 *
 * <p>I/O: one thread per uplink waits with epoll (level-triggered) on the tap's fd, on the uplink port's ring
 * eventfd and on a wake-up eventfd; it moves at most {@link #BURST} frames each way per wake-up and sleeps when
 * neither has anything. A frame the tap refuses or would block on is dropped and counted, as a full NIC ring would.
 * Nothing is allocated per frame.
 */
public final class TapUplink implements AutoCloseable {
    /** The uplink's port name on its switch. */
    public static final String PORT_NAME = "uplink";
    static final int BURST = 128;
    /** One frame as the switch carries it: the 12-byte header, up to 64 KiB of GSO frame, VLAN tags and slack. */
    static final int FRAME_ROOM = VirtioNetHeader.LENGTH_MRG + 65536 + 512;
    private static final System.Logger LOG = System.getLogger(TapUplink.class.getName());
    private static final long TAG_WAKE = 0;
    private static final long TAG_RING = 1;
    private static final long TAG_TAP = 2;
    private static final int ERROR_BACKOFF_MILLIS = 100;
    private static final int HL = VirtioNetHeader.LENGTH_MRG;

    private final VirtualSwitch sw;
    private final BackendSpec spec;
    private final OffloadingBackend tap;
    private final SwitchPort port;
    private final EventFd wake;
    private final Epoll epoll;
    private final Thread thread;
    private volatile boolean running = true;

    /** Frames from the switch written to the tap (one segmented in software counts once). */
    public final LongAdder toTap = new LongAdder();
    /** Frames the tap refused, would block on, or that the software engine could not complete: dropped. */
    public final LongAdder toTapDropped = new LongAdder();
    /** Frames read from the tap and switched. */
    public final LongAdder fromTap = new LongAdder();

    // Switch -> tap (the uplink thread): one record copied out of the port's ring, sent as a Packet.
    private final ByteBuffer out = ByteBuffer.allocateDirect(FRAME_ROOM).order(ByteOrder.LITTLE_ENDIAN);
    private final ByteBuffer[] outSlices = {out};
    private final ByteBuffer outFrame = out.duplicate();
    private final Packet packet = new Packet(1);

    // Tap -> switch (the uplink thread): one frame read with its header.
    private final ByteBuffer in = ByteBuffer.allocateDirect(FRAME_ROOM).order(ByteOrder.LITTLE_ENDIAN);
    private final ByteBuffer[] inSlices = {in};
    private final ByteBuffer inFrame = in.duplicate();
    private final ByteBuffer[] inFrames = {inFrame};
    private final VirtioNetHeader inHeader = new VirtioNetHeader(in, 0);

    private TapUplink(VirtualSwitch sw, BackendSpec spec, OffloadingBackend tap, SwitchPort port) throws IOException {
        this.sw = sw;
        this.spec = spec;
        this.tap = tap;
        this.port = port;
        this.wake = EventFd.create();
        Epoll e = null;
        try {
            e = new Epoll(4);
            e.add(wake.fd(), LinuxNative.EPOLLIN, TAG_WAKE);
            e.add(port.receiveReadyFd(), LinuxNative.EPOLLIN, TAG_RING);
            e.add(tap.receiveReadyFd(), LinuxNative.EPOLLIN, TAG_TAP);
        } catch (IOException | RuntimeException ex) {
            if (e != null) {
                e.close();
            }
            wake.close();
            throw ex;
        }
        this.epoll = e;
        this.thread = new Thread(this::run, "uplink-" + sw.name() + "-" + spec.tapName());
        this.thread.setDaemon(true);
    }

    /**
     * Opens the tap of {@code spec} (created if missing; without a vnet header for {@code no-offload}), attaches it
     * to {@code sw} as port {@value #PORT_NAME} and starts its thread. Called with the switch's lock held.
     */
    static TapUplink start(VirtualSwitch sw, BackendSpec spec) throws IOException {
        List<NetBackend> opened = spec.open(1);
        OffloadingBackend tap = new OffloadingBackend(opened.get(0));
        SwitchPort port = null;
        try {
            // The switch may hand the uplink anything a guest sent; the tap gets what it can carry (the engine
            // completes the rest), and delivers every GUEST_* offload it can so that GSO frames stay whole.
            tap.configure(VirtioNetFeature.OFFLOADS, HL);
            port = sw.attach(PORT_NAME, VlanSet.ALL, true);
            port.configure(VirtioNetFeature.OFFLOADS, HL);
            TapUplink u = new TapUplink(sw, spec, tap, port);
            u.thread.start();
            LOG.log(System.Logger.Level.INFO, "switch " + sw.name() + ": uplink " + spec.tapName()
                    + (spec.offload() ? " with vnet header, kernel offloads " + String.join(" ", tap.programmedOffloads())
                    : " without vnet header (offloads done in software)"));
            return u;
        } catch (IOException | RuntimeException e) {
            if (port != null) {
                port.close();
            }
            tap.close();
            throw e;
        }
    }

    /** The tap spec this uplink was opened from. */
    public BackendSpec spec() {
        return spec;
    }

    /** The uplink's port on the switch (its counters: tx = from the tap, rx = to the tap). */
    public SwitchPort port() {
        return port;
    }

    /** What the software engine did for the tap (segmented / checksummed frames, drops by reason). */
    public OffloadCounters offloadCounters() {
        return tap.counters();
    }

    /** The features the tap was configured with (what it carries itself). */
    public long tapFeatures() {
        return tap.innerConfigured();
    }

    private void run() {
        boolean logged = false;
        while (running) {
            try {
                int n = epoll.await(-1);
                for (int i = 0; i < n; i++) {
                    long tag = epoll.readyTag(i);
                    if (tag == TAG_RING) {
                        switchToTap();
                    } else if (tag == TAG_TAP) {
                        tapToSwitch();
                    } else {
                        wake.drain();
                    }
                }
            } catch (ClosedChannelException e) {
                if (running) {
                    LOG.log(System.Logger.Level.ERROR, "switch " + sw.name() + ": uplink tap " + spec.tapName()
                            + " was closed; the uplink stops");
                }
                return;
            } catch (IOException | RuntimeException e) {
                if (!logged) {
                    logged = true;
                    LOG.log(System.Logger.Level.WARNING, "switch " + sw.name() + ": uplink " + spec.tapName()
                            + ": " + e + "; retrying every " + ERROR_BACKOFF_MILLIS + " ms, logged once");
                }
                try {
                    epoll.await(ERROR_BACKOFF_MILLIS);
                } catch (IOException ignored) {
                    // the next round reports it
                }
            }
        }
    }

    /** Frames the switch queued for the uplink port go to the tap (through the offload engine). */
    private void switchToTap() throws IOException {
        for (int i = 0; i < BURST; i++) {
            if (port.peekLength() == 0) {
                return;
            }
            out.clear();
            int n = port.receive(outSlices, 1);
            if (n == 0) {
                return;
            }
            packet.reset(HL);
            packet.headerBuffer().put(0, out, 0, HL);
            outFrame.clear();
            outFrame.limit(n).position(HL);
            packet.add(outFrame);
            if (tap.send(packet)) {
                toTap.increment();
            } else {
                toTapDropped.increment();
            }
        }
    }

    /** Frames the kernel sent into the tap are switched as if a device had sent them on the uplink port. */
    private void tapToSwitch() throws IOException {
        for (int i = 0; i < BURST; i++) {
            in.clear();
            int n = tap.receive(inSlices, 1);
            if (n <= 0) {
                return;
            }
            fromTap.increment();
            inFrame.clear();
            inFrame.limit(n).position(Math.min(HL, n));
            // Short frames are counted and dropped by the port as from any device.
            port.switchFrame(inHeader, inFrames, 0, 1, n - inFrame.position());
        }
    }

    /** Stops the thread, detaches the port and closes the tap. */
    @Override
    public void close() {
        if (!running) {
            return;
        }
        running = false;
        wake.signal();
        if (thread.isAlive() && thread != Thread.currentThread()) {
            try {
                thread.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        epoll.close();
        wake.close();
        port.close();
        tap.close();
    }

    @Override
    public String toString() {
        return "uplink " + spec + " on switch " + sw.name();
    }
}
