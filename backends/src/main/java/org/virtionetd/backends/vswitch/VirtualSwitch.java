package org.virtionetd.backends.vswitch;

import org.virtionetd.virtio.net.VirtioNetHeader;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;

/**
 * A learning Ethernet switch inside the process, in the manner of netmap's VALE: its ports are virtio-net devices
 * (and optionally a tap uplink), frames travel between them as copies with their virtio_net_hdr, so a 64 KiB GSO
 * frame with a partial checksum goes from one guest to another in one piece; segmentation and checksums happen
 * only at a port whose driver did not accept them (see {@link SwitchPort}).
 *
 * <p>Forwarding (IEEE 802.1Q, simplified): the source address is learned per VLAN on the port it came in on; a
 * frame to a learned unicast address goes to that port only; broadcast, multicast and unknown destinations are
 * flooded to every other port that is a member of the frame's VLAN. The VLAN is the id of an 802.1Q / 802.1ad
 * tag, 0 for an untagged frame; a port may be restricted to some VLANs ({@link VlanSet}).
 *
 * <p>Switches are found by name in a process-wide registry ({@link #named(String)}), so several devices of one
 * process that name the same switch share it. Forwarding runs on the sending port's thread; attach and detach are
 * synchronized and publish a new port array for the senders.
 */
public final class VirtualSwitch {
    public static final int MAX_PORTS = 64;
    /** Receive ring of each port: room for 64 frames of 64 KiB or about 2800 of 1500 bytes. */
    static final int RING_BYTES = 4 << 20;
    static final int RING_SLOTS = 4096;
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9_.-]{1,32}");
    private static final ConcurrentHashMap<String, VirtualSwitch> REGISTRY = new ConcurrentHashMap<>();

    private final String name;
    private final ForwardingTable table;
    private final SwitchPort[] slots = new SwitchPort[MAX_PORTS];
    private volatile SwitchPort[] ports = new SwitchPort[0];
    private TapUplink uplink;

    VirtualSwitch(String name, long agingNanos) {
        this.name = name;
        this.table = new ForwardingTable(4096, agingNanos);
    }

    /** The switch called {@code name} in this process, created on first use. */
    public static VirtualSwitch named(String name) {
        checkName(name);
        return REGISTRY.computeIfAbsent(name, n -> new VirtualSwitch(n, ForwardingTable.DEFAULT_AGING_NANOS));
    }

    /** The switch called {@code name} if it exists, else null. */
    public static VirtualSwitch find(String name) {
        return REGISTRY.get(name);
    }

    static void checkName(String name) {
        if (name == null || !NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("switch name '" + name + "' must be 1..32 of A-Z a-z 0-9 _ . -");
        }
    }

    public String name() {
        return name;
    }

    /**
     * A new port called {@code portName} (unique on this switch), member of {@code vlans}; with {@code offloads}
     * false it offers its device no offloads (everything it receives is segmented and checksummed).
     */
    public synchronized SwitchPort attach(String portName, VlanSet vlans, boolean offloads) throws IOException {
        for (SwitchPort p : ports) {
            if (p.portName().equals(portName)) {
                throw new IllegalArgumentException("switch " + name + " already has a port named '" + portName + "'");
            }
        }
        int index = -1;
        for (int i = 0; i < slots.length; i++) {
            if (slots[i] == null) {
                index = i;
                break;
            }
        }
        if (index < 0) {
            throw new IllegalArgumentException("switch " + name + " has all its " + MAX_PORTS + " ports in use");
        }
        SwitchPort p = new SwitchPort(this, index, portName, vlans, offloads, new PortRing(RING_BYTES, RING_SLOTS));
        slots[index] = p;
        publish();
        return p;
    }

    /** A port name not yet used on this switch: "p0", "p1"... */
    public synchronized String freePortName() {
        for (int i = 0; ; i++) {
            String n = "p" + i;
            boolean used = false;
            for (SwitchPort p : ports) {
                used |= p.portName().equals(n);
            }
            if (!used) {
                return n;
            }
        }
    }

    synchronized void detach(SwitchPort port) {
        if (slots[port.index()] == port) {
            slots[port.index()] = null;
            publish();
            table.forgetPort(port.index());
        }
        // The uplink serves the devices: when the last one has left, it goes too (and its tap is closed).
        TapUplink u = uplink;
        if (u != null && port != u.port() && ports.length == 1 && ports[0] == u.port()) {
            uplink = null;
            u.close();
        }
    }

    /**
     * Attaches the tap of {@code tap} as this switch's uplink (port {@value TapUplink#PORT_NAME}), or returns the
     * uplink already attached if it is the same tap opened the same way; a switch has at most one uplink.
     */
    public synchronized TapUplink uplink(org.virtionetd.backends.tap.BackendSpec tap) throws IOException {
        if (uplink != null) {
            if (uplink.spec().tapName().equals(tap.tapName()) && uplink.spec().offload() == tap.offload()) {
                return uplink;
            }
            throw new IllegalArgumentException("switch " + name + " already has the uplink " + uplink.spec()
                    + "; it cannot also have " + tap);
        }
        uplink = TapUplink.start(this, tap);
        return uplink;
    }

    /** The uplink, or null. */
    public synchronized TapUplink uplink() {
        return uplink;
    }

    private void publish() {
        List<SwitchPort> l = new ArrayList<>();
        for (SwitchPort p : slots) {
            if (p != null) {
                l.add(p);
            }
        }
        ports = l.toArray(new SwitchPort[0]);
    }

    /** The ports attached now. */
    public List<SwitchPort> ports() {
        return List.of(ports);
    }

    /** Learned addresses (for tests and stats). */
    public int learnedAddresses() {
        return table.size();
    }

    /**
     * Forwards one frame that came in on {@code from}: {@code slices[fromIdx, toIdx)} hold its {@code length}
     * bytes, {@code header} its metadata. {@code dst}/{@code src} are the 48-bit addresses, {@code vid} its VLAN.
     * Returns false if the frame went nowhere because of a full ring or a filter (the caller counts a drop).
     */
    boolean forward(SwitchPort from, long dst, long src, int vid, VirtioNetHeader header,
                    ByteBuffer[] slices, int fromIdx, int toIdx, int length) {
        SwitchPort[] attached = ports; // volatile read first: the slots written before it are visible
        SwitchCounters c = from.counters();
        c.txFrames.increment();
        if (!from.vlans().contains(vid)) {
            c.txDroppedVlan.increment();
            return false;
        }
        long now = System.nanoTime();
        table.learn(ForwardingTable.key(src, vid), from.index(), now);
        boolean multicast = (dst & (1L << 40)) != 0; // I/G bit: least significant bit of the first octet
        if (!multicast) {
            int to = table.lookup(ForwardingTable.key(dst, vid), now);
            if (to >= 0) {
                if (to == from.index()) {
                    c.txFilteredSamePort.increment();
                    return false;
                }
                SwitchPort p = slots[to];
                if (p != null && p.vlans().contains(vid)) {
                    c.txUnicast.increment();
                    return p.enqueue(header, slices, fromIdx, toIdx, length);
                }
            }
        }
        c.txFlooded.increment();
        for (SwitchPort p : attached) {
            if (p != from && p.vlans().contains(vid)) {
                p.enqueue(header, slices, fromIdx, toIdx, length);
            }
        }
        return true;
    }

    @Override
    public String toString() {
        return "switch:" + name;
    }
}
