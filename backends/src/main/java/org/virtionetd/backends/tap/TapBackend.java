package org.virtionetd.backends.tap;

import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * A Linux tap as a {@link NetBackend}: with IFF_VNET_HDR the guest's vnet header goes to the kernel untouched,
 * which completes checksums and segments GSO frames itself (CSUM, HOST_*), and TUNSETOFFLOAD lets the kernel hand
 * us partially checksummed and GSO frames for the guest (GUEST_*). Without a vnet header (old kernel or the
 * no-offload option) nothing is offloaded: send strips the header, receive puts a zeroed one in front.
 *
 * <p>One instance per queue pair; every method but {@link #capabilities()} and {@link #programmedOffloads()} runs
 * on that queue pair's event-loop thread.
 */
public final class TapBackend implements NetBackend {
    private static final System.Logger LOG = System.getLogger(TapBackend.class.getName());

    private final TapDevice device;
    private final boolean vnetHeader;
    private final long capabilities;
    private final int probedFlags;
    private final StagedFrame staged = new StagedFrame();
    private final StagedFrame.Source source;
    private int headerLength = VirtioNetHeader.LENGTH_MRG;
    private volatile int programmed;
    /** The TUN_F_* flags last asked for (configure, setGuestOffloads): what a re-attach programs again. */
    private int wanted;
    /** The tap was deleted under us (see {@link TapDevice#interfaceGone()}); set and cleared on the loop thread. */
    private volatile boolean gone;
    private String lastReattachFailure;
    /** Whether this queue is attached to the tap's flow steering (TUNSETQUEUE, multi-queue only). */
    private boolean queueAttached = true;
    private long refusedWrites;
    private long blockedWrites;
    private boolean loggedRefusal;

    private TapBackend(TapDevice device) throws IOException {
        this.device = device;
        this.vnetHeader = device.vnetHeader();
        this.source = device::read;
        if (vnetHeader) {
            device.setVnetHeaderSize(headerLength);
            // Probe: the full set, then the fallbacks; what the kernel takes decides what the device may offer.
            probedFlags = device.setOffload(TunOffloads.ALL);
            capabilities = TunOffloads.hostFeatures(probedFlags) | TunOffloads.guestFeatures(probedFlags);
            // Until the driver acks GUEST_* nothing partial or GSO may reach it.
            programmed = device.setOffload(0);
        } else {
            probedFlags = 0;
            capabilities = 0;
        }
    }

    /**
     * Opens one queue of the tap {@code name} (created if missing). {@code offload} false means no vnet header,
     * hence no offload in either direction.
     */
    public static TapBackend open(String name, boolean offload) throws IOException {
        return wrap(TapDevice.open(name, offload, false));
    }

    /**
     * One backend per queue pair on the same tap. More than one queue attaches with IFF_MULTI_QUEUE (one fd per
     * queue, the kernel spreads flows over them); one queue attaches without, so that it also works with a tap
     * someone created single-queue.
     */
    public static List<TapBackend> openQueues(String name, int queuePairs, boolean offload) throws IOException {
        if (queuePairs < 1) {
            throw new IllegalArgumentException("tap " + name + ": queue pairs must be at least 1, got " + queuePairs);
        }
        List<TapBackend> out = new ArrayList<>(queuePairs);
        try {
            for (int i = 0; i < queuePairs; i++) {
                out.add(wrap(TapDevice.open(name, offload, queuePairs > 1)));
            }
        } catch (IOException | RuntimeException e) {
            out.forEach(TapBackend::close);
            throw e;
        }
        return out;
    }

    private static TapBackend wrap(TapDevice d) throws IOException {
        try {
            return new TapBackend(d);
        } catch (IOException | RuntimeException e) {
            d.close();
            throw e;
        }
    }

    @Override
    public String name() {
        return "tap:" + device.name();
    }

    public TapDevice device() {
        return device;
    }

    public boolean vnetHeader() {
        return vnetHeader;
    }

    /** The TUN_F_* set the kernel accepted when probed at open (0 without a vnet header). */
    public int probedFlags() {
        return probedFlags;
    }

    /** The TUN_F_* flags in effect now. */
    public int programmedFlags() {
        return programmed;
    }

    public int headerLength() {
        return headerLength;
    }

    @Override
    public long capabilities() {
        return capabilities;
    }

    @Override
    public void configure(long negotiatedFeatures, int vnetHeaderLength) throws IOException {
        VirtioNetHeader.requireLength(vnetHeaderLength, name());
        staged.discard(); // read with the old length, if any
        headerLength = vnetHeaderLength;
        if (vnetHeader) {
            device.setVnetHeaderSize(vnetHeaderLength);
            wanted = TunOffloads.fromGuestFeatures(negotiatedFeatures & capabilities);
            programmed = device.setOffload(wanted);
        }
        LOG.log(System.Logger.Level.DEBUG, () -> name() + ": vnet header " + (vnetHeader ? headerLength : "off")
                + ", offloads " + TunOffloads.names(programmed));
    }

    @Override
    public void setGuestOffloads(long guestOffloads) throws IOException {
        if (vnetHeader) {
            wanted = TunOffloads.fromGuestFeatures(guestOffloads & VirtioNetFeature.GUEST_OFFLOADS & capabilities);
            programmed = device.setOffload(wanted);
        }
    }

    /**
     * A queue of a multi-queue tap whose pair the driver does not use is detached (TUNSETQUEUE), as QEMU's own tap
     * backend does: the kernel would otherwise keep steering flows into a queue nobody reads, and they would stall.
     */
    @Override
    public synchronized void setEnabled(boolean enabled) throws IOException {
        if (enabled != queueAttached) {
            device.setQueueAttached(enabled);
            queueAttached = enabled;
        }
    }

    /** False while this queue is detached from a multi-queue tap's flow steering. */
    public synchronized boolean queueAttached() {
        return queueAttached;
    }

    @Override
    public List<String> programmedOffloads() {
        return TunOffloads.names(programmed);
    }

    /**
     * One gather write: the header buffer and the frame slices when the tap has a vnet header, the frame alone
     * otherwise. A frame the kernel refuses (ENOBUFS, link down, a header it rejects) or would block on is dropped.
     */
    @Override
    public boolean send(Packet packet) throws IOException {
        if (gone) {
            return false; // counted as a backend drop by the device until the tap is back
        }
        int first = vnetHeader ? 0 : 1;
        int count = packet.count() - first;
        if (count <= 0) {
            return false;
        }
        if (vnetHeader && packet.headerLength() != headerLength) {
            // The kernel would read frame bytes as header (or the reverse): a device bug, never guest input.
            throw new IllegalStateException(name() + ": packet header is " + packet.headerLength()
                    + " bytes, the tap was configured for " + headerLength);
        }
        long n = device.write(packet.slices(), first, count);
        if (n > 0) {
            return true;
        }
        if (n == 0) {
            blockedWrites++;
        } else {
            refusedWrites++;
            if (checkGone("write")) {
                return false;
            }
            if (!loggedRefusal) {
                loggedRefusal = true;
                IOException why = device.lastWriteError();
                LOG.log(System.Logger.Level.WARNING, name() + ": the kernel refused a frame ("
                        + (why == null ? "?" : why.getMessage()) + "); dropping such frames, logged once");
            }
        }
        return false;
    }

    @Override
    public int peekLength() throws IOException {
        if (gone) {
            return 0;
        }
        try {
            return staged.peek(source, vnetHeader, headerLength);
        } catch (IOException e) {
            if (checkGone("read")) {
                return 0;
            }
            throw e;
        }
    }

    @Override
    public int receive(ByteBuffer[] slices, int count) throws IOException {
        if (gone) {
            return 0;
        }
        try {
            return staged.scatter(source, vnetHeader, headerLength, slices, count);
        } catch (IOException e) {
            if (checkGone("read")) {
                return 0;
            }
            throw e;
        }
    }

    /**
     * The most a tap read gives besides the vnet header: tun_put_user (drivers/net/tun.c) writes the header, the
     * skb's bytes and a VLAN tag held out of band (VLAN_HLEN). The skb is at most 64 KiB: GSO frames stop at the
     * tap's gso_max_size (GSO_LEGACY_MAX_SIZE, 65536, tun sets no larger one), GRO'd ones at gro_max_size, and other
     * frames at its largest MTU (max_mtu 65535 less the Ethernet header) plus that header.
     */
    static final int MAX_FRAME = 65536 + 4;

    /** With a vnet header the kernel writes header and frame; without one the header is ours: the staged way. */
    @Override
    public int directReceiveRoom() {
        return vnetHeader ? headerLength + MAX_FRAME : 0;
    }

    @Override
    public int receiveDirect(long iov, int count) throws IOException {
        if (gone) {
            return 0;
        }
        if (staged.staged()) {
            throw new IllegalStateException(name() + ": receiveDirect with a frame staged by peekLength");
        }
        try {
            return (int) device.readv(iov, count);
        } catch (IOException e) {
            if (checkGone("read")) {
                return 0;
            }
            throw e;
        }
    }

    /** Reads the tap's queue empty (non-blocking reads until EAGAIN), at most {@code limit} frames. */
    @Override
    public int discardQueued(int limit) throws IOException {
        if (gone) {
            return 0;
        }
        try {
            return staged.discardQueued(source, limit);
        } catch (IOException e) {
            if (checkGone("read")) {
                return 0;
            }
            throw e;
        }
    }

    /**
     * After a failed read or write: is the interface gone (deleted)? Then say so once, in one line naming the tap,
     * and stop touching the fd until {@link #reattach()} brings it back.
     */
    private boolean checkGone(String what) {
        if (!device.interfaceGone()) {
            return false;
        }
        gone = true;
        staged.discard();
        lastReattachFailure = null;
        LOG.log(System.Logger.Level.WARNING, "tap " + device.name() + " is gone (" + what + ": EBADFD, the "
                + "interface was deleted); link down, frames to it are dropped and counted; re-attaching to a tap "
                + "named " + device.name() + " once one exists");
        return true;
    }

    @Override
    public boolean attached() {
        return !gone;
    }

    /** The fd polled as an error: a detached tun fd polls EPOLLERR (tun_chr_poll with no interface). */
    @Override
    public void checkAttachment() {
        if (!gone) {
            checkGone("poll");
        }
    }

    /**
     * Re-attaches to a tap of the same name once one exists again, with the vnet header length and offloads this
     * backend had (a new interface starts with the kernel's defaults). A failure (the new tap belongs to another
     * user, is single-queue while we are multi-queue, ...) is logged once per reason; the loop tries again later.
     */
    @Override
    public boolean reattach() {
        if (!gone) {
            return true;
        }
        if (!device.interfaceExists()) {
            return false;
        }
        try {
            if (device.interfaceGone()) { // not after an attempt that attached but failed to set the header
                device.reattach();
            }
            if (vnetHeader) {
                device.setVnetHeaderSize(headerLength);
                programmed = device.setOffload(wanted);
            }
        } catch (IOException | RuntimeException e) {
            String why = String.valueOf(e.getMessage());
            if (!why.equals(lastReattachFailure)) {
                lastReattachFailure = why;
                LOG.log(System.Logger.Level.WARNING, "tap " + device.name() + " exists again but re-attaching "
                        + "failed: " + why + "; trying again later");
            }
            return false;
        }
        staged.discard();
        gone = false;
        LOG.log(System.Logger.Level.INFO, "tap " + device.name() + " is back: re-attached" + (vnetHeader
                ? " with a " + headerLength + "-byte vnet header, offloads " + TunOffloads.names(programmed) : "")
                + "; link up");
        return true;
    }

    @Override
    public int receiveReadyFd() {
        return device.fd();
    }

    /** Frames the kernel refused (dropped). */
    public long refusedWrites() {
        return refusedWrites;
    }

    /** Frames dropped because the tap would have blocked. */
    public long blockedWrites() {
        return blockedWrites;
    }

    /** Frames read into the staging buffer rather than straight into guest buffers. */
    public long stagedFrames() {
        return staged.stagedFrames();
    }

    /** Received frames dropped because the room given was smaller than the frame. */
    public long noRoomDrops() {
        return staged.noRoomDrops();
    }

    @Override
    public void close() {
        device.close();
    }

    @Override
    public String toString() {
        return name() + " caps=" + VirtioNetFeature.names(capabilities) + " tun=" + TunOffloads.names(programmed);
    }
}
