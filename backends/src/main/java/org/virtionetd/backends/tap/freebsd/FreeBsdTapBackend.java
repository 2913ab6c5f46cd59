package org.virtionetd.backends.tap.freebsd;

import org.virtionetd.backends.tap.StagedFrame;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_LRO;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_RXCSUM;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_RXCSUM_IPV6;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_TSO4;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_TSO6;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_TXCSUM;
import static org.virtionetd.backends.tap.freebsd.IfCap.IFCAP_TXCSUM_IPV6;

/**
 * A FreeBSD tap (/dev/tapN, /dev/vmnetN) as a {@link NetBackend}, through {@link FreeBsdTapOps}.
 * <b>Cannot run on this Linux machine</b>: its logic is unit-tested with a fake ops; {@link FreeBsdNative} is
 * written from the FreeBSD headers and has not met a FreeBSD kernel yet.
 *
 * <p>What FreeBSD 14's if_tuntap.c does with a vnet header (TAPSVNETHDR), and so what we offer:
 * <ul>
 *   <li>write (guest TX): tunwrite_l2 only calls virtio_net_rx_csum, which turns NEEDS_CSUM into mbuf checksum
 *       flags. It does <i>not</i> segment GSO frames. So CSUM is offered (when the interface has RXCSUM and
 *       RXCSUM_IPV6), HOST_TSO/UFO/USO are not: the device segments in software for this backend.</li>
 *   <li>read (guest RX): tunread fills the header with virtio_net_tx_offload when the stack handed the tap a
 *       partially checksummed or TSO mbuf, which it does only for the IFCAP_TXCSUM / IFCAP_TSO4/6 bits enabled.
 *       So GUEST_CSUM / GUEST_TSO4 / GUEST_TSO6 map to those bits, set with SIOCSIFCAP from the acked features.
 *       ECN is never produced (allow_ecn is false there), so GUEST_ECN is not needed and not offered.</li>
 * </ul>
 */
public final class FreeBsdTapBackend implements NetBackend {
    private static final System.Logger LOG = System.getLogger(FreeBsdTapBackend.class.getName());
    /** The capability bits this backend owns; others on the interface are left as they are. */
    static final int MANAGED = IFCAP_RXCSUM | IFCAP_TXCSUM | IFCAP_RXCSUM_IPV6 | IFCAP_TXCSUM_IPV6 | IFCAP_TSO4
            | IFCAP_TSO6 | IFCAP_LRO;

    private final FreeBsdTapOps ops;
    private final boolean vnetHeader;
    private final int supported;
    private final long capabilities;
    private final StagedFrame staged = new StagedFrame();
    private final StagedFrame.Source source;
    private int headerLength = VirtioNetHeader.LENGTH_MRG;
    private long negotiated;
    private volatile int programmed;
    private long refusedWrites;
    private boolean loggedRefusal;

    /**
     * @param offload false: no vnet header (TAPSVNETHDR 0), no offloads. True: a 12-byte vnet header if the
     *                kernel has TAPSVNETHDR (FreeBSD 14+), otherwise falls back to no header with a log line.
     */
    public FreeBsdTapBackend(FreeBsdTapOps ops, boolean offload) throws IOException {
        this.ops = ops;
        this.source = ops::read;
        boolean header = false;
        if (offload) {
            try {
                ops.setVnetHeaderLength(headerLength);
                header = ops.vnetHeaderLength() == headerLength;
            } catch (IOException e) {
                LOG.log(System.Logger.Level.INFO, "tap " + ops.interfaceName() + ": no vnet header ("
                        + e.getMessage() + "); running without offloads");
            }
        }
        vnetHeader = header;
        if (vnetHeader) {
            supported = ops.supportedCapabilities();
            capabilities = capabilitiesFor(supported);
            program(0); // nothing partial or segmented reaches us before the driver acks it
        } else {
            supported = 0;
            capabilities = 0;
        }
    }

    /** Opens /dev/{@code name} (tapN or vmnetN) with the real FreeBSD calls. */
    public static FreeBsdTapBackend open(String name, boolean offload) throws IOException {
        FreeBsdTapOps ops = FreeBsdNative.open("/dev/" + name);
        try {
            return new FreeBsdTapBackend(ops, offload);
        } catch (IOException | RuntimeException e) {
            ops.close();
            throw e;
        }
    }

    /** The virtio offload bits an interface with these IFCAP_* capabilities can carry (see the class comment). */
    static long capabilitiesFor(int supportedCaps) {
        long f = 0;
        if (has(supportedCaps, IFCAP_RXCSUM | IFCAP_RXCSUM_IPV6)) {
            f |= VirtioNetFeature.bits(VirtioNetFeature.CSUM);
        }
        if (has(supportedCaps, IFCAP_TXCSUM | IFCAP_TXCSUM_IPV6)) {
            f |= VirtioNetFeature.bits(VirtioNetFeature.GUEST_CSUM);
            if (has(supportedCaps, IFCAP_TSO4)) {
                f |= VirtioNetFeature.bits(VirtioNetFeature.GUEST_TSO4);
            }
            if (has(supportedCaps, IFCAP_TSO6)) {
                f |= VirtioNetFeature.bits(VirtioNetFeature.GUEST_TSO6);
            }
        }
        return f;
    }

    /** The IFCAP_* bits (within {@link #MANAGED}) to enable for these negotiated features. */
    static int capsFor(long features) {
        int caps = 0;
        if (VirtioNetFeature.has(features, VirtioNetFeature.CSUM)) {
            caps |= IFCAP_RXCSUM | IFCAP_RXCSUM_IPV6;
        }
        if (VirtioNetFeature.has(features, VirtioNetFeature.GUEST_CSUM)) {
            caps |= IFCAP_TXCSUM | IFCAP_TXCSUM_IPV6;
            if (VirtioNetFeature.has(features, VirtioNetFeature.GUEST_TSO4)) {
                caps |= IFCAP_TSO4;
            }
            if (VirtioNetFeature.has(features, VirtioNetFeature.GUEST_TSO6)) {
                caps |= IFCAP_TSO6;
            }
        }
        return caps;
    }

    private static boolean has(int caps, int bits) {
        return (caps & bits) == bits;
    }

    private void program(long features) throws IOException {
        int want = capsFor(features & capabilities) & supported;
        int others = ops.enabledCapabilities() & ~MANAGED;
        ops.setEnabledCapabilities(others | want);
        programmed = want;
    }

    @Override
    public String name() {
        return "tap:" + ops.interfaceName();
    }

    public boolean vnetHeader() {
        return vnetHeader;
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
        staged.discard();
        headerLength = vnetHeaderLength;
        negotiated = negotiatedFeatures;
        if (vnetHeader) {
            ops.setVnetHeaderLength(vnetHeaderLength);
            program(negotiatedFeatures);
        }
    }

    @Override
    public void setGuestOffloads(long guestOffloads) throws IOException {
        if (vnetHeader) {
            program((negotiated & ~VirtioNetFeature.GUEST_OFFLOADS)
                    | (guestOffloads & VirtioNetFeature.GUEST_OFFLOADS));
        }
    }

    @Override
    public List<String> programmedOffloads() {
        return IfCap.names(programmed);
    }

    @Override
    public boolean send(Packet packet) throws IOException {
        int first = vnetHeader ? 0 : 1;
        int count = packet.count() - first;
        if (count <= 0) {
            return false;
        }
        long n = ops.write(packet.slices(), first, count);
        if (n > 0) {
            return true;
        }
        refusedWrites++;
        if (n < 0 && !loggedRefusal) {
            loggedRefusal = true;
            LOG.log(System.Logger.Level.WARNING, name() + ": the kernel refused a frame; dropping, logged once");
        }
        return false;
    }

    @Override
    public int peekLength() throws IOException {
        return staged.peek(source, vnetHeader, headerLength);
    }

    @Override
    public int receive(ByteBuffer[] slices, int count) throws IOException {
        return staged.scatter(source, vnetHeader, headerLength, slices, count);
    }

    /**
     * The most a tap read gives besides the vnet header: an Ethernet frame of the largest MTU (TUNMRU, 65535, in
     * sys/net/if_tuntap.c), its header and a VLAN tag; TSO frames are at most IP_MAXPACKET (65535) plus headers.
     */
    static final int MAX_FRAME = 65535 + 14 + 4;

    /** With a vnet header the kernel writes header and frame; without one the header is ours: the staged way. */
    @Override
    public int directReceiveRoom() {
        return vnetHeader ? headerLength + MAX_FRAME : 0;
    }

    @Override
    public int receiveDirect(long iov, int count) throws IOException {
        if (staged.staged()) {
            throw new IllegalStateException(name() + ": receiveDirect with a frame staged by peekLength");
        }
        return (int) ops.readv(iov, count);
    }

    @Override
    public int discardQueued(int limit) throws IOException {
        return staged.discardQueued(source, limit);
    }

    @Override
    public int receiveReadyFd() {
        return ops.fd();
    }

    /** Frames dropped at send (refused or would block). */
    public long refusedWrites() {
        return refusedWrites;
    }

    @Override
    public void close() {
        ops.close();
    }
}
