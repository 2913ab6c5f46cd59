package org.virtionetd.backends.vswitch;

import org.virtionetd.backends.tap.BackendSpec;
import org.virtionetd.virtio.net.NetBackend;

import java.io.IOException;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A switch port named on the command line:
 * {@code switch:NAME[,port=PORT][,vlans=LIST][,no-offload][,uplink=tap:TAP[,uplink-no-offload]]}, or bhyve's
 * VALE spelling {@code valeNAME:PORT} (bhyve(8) "-s 2,virtio-net,vale0:1"), which is the switch "valeNAME".
 * The port name defaults to the first free "pN". {@code no-offload} offers the device no offloads.
 * {@code uplink=tap:TAP} attaches the tap TAP (created if missing) to the switch as one more port
 * ({@link TapUplink}); {@code uplink-no-offload} opens it without a vnet header (offloads done in software).
 * Several devices of one process may name the same uplink; naming another one for the same switch is an error.
 */
public final class SwitchSpec implements org.virtionetd.backends.BackendFactory {
    private static final Pattern VALE = Pattern.compile("(vale[A-Za-z0-9_.-]*):([A-Za-z0-9_.-]{1,32})");
    private static final Pattern PORT = Pattern.compile("[A-Za-z0-9_.-]{1,32}");

    private final String text;
    private final String switchName;
    private final String portName;
    private final VlanSet vlans;
    private final boolean offload;
    private final BackendSpec uplink;

    private SwitchSpec(String text, String switchName, String portName, VlanSet vlans, boolean offload,
                       BackendSpec uplink) {
        this.text = text;
        this.switchName = switchName;
        this.portName = portName;
        this.vlans = vlans;
        this.offload = offload;
        this.uplink = uplink;
    }

    /** True if {@code text} names a switch port (and not, say, a tap). */
    public static boolean matches(String text) {
        return text != null && (text.startsWith("switch:") || VALE.matcher(text.split(",", 2)[0]).matches());
    }

    /** Parses a spec; the exception message names the part that is wrong. */
    public static SwitchSpec parse(String text) {
        if (!matches(text)) {
            throw new IllegalArgumentException("backend '" + text + "' is not switch:NAME[,...] or valeNAME:PORT");
        }
        String[] parts = text.split(",", -1);
        String head = parts[0];
        String sw;
        String port = null;
        Matcher vale = VALE.matcher(head);
        if (vale.matches()) {
            sw = vale.group(1);
            port = vale.group(2);
        } else {
            sw = head.substring("switch:".length());
        }
        try {
            VirtualSwitch.checkName(sw);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("backend '" + text + "': " + e.getMessage());
        }
        VlanSet vlans = VlanSet.ALL;
        boolean offload = true;
        String uplinkTap = null;
        boolean uplinkOffload = true;
        for (int i = 1; i < parts.length; i++) {
            String p = parts[i];
            if (p.equals("no-offload")) {
                offload = false;
            } else if (p.startsWith("uplink=")) {
                uplinkTap = p.substring(7);
            } else if (p.equals("uplink-no-offload")) {
                uplinkOffload = false;
            } else if (p.startsWith("port=")) {
                port = p.substring(5);
                if (!PORT.matcher(port).matches()) {
                    throw new IllegalArgumentException("backend '" + text + "': port name '" + port
                            + "' must be 1..32 of A-Z a-z 0-9 _ . -");
                }
            } else if (p.startsWith("vlans=")) {
                try {
                    vlans = VlanSet.parse(p.substring(6));
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("backend '" + text + "': " + e.getMessage());
                }
            } else {
                throw new IllegalArgumentException("backend '" + text + "': unknown option '" + p
                        + "'; options are port=NAME, vlans=LIST, no-offload, uplink=tap:NAME, uplink-no-offload");
            }
        }
        BackendSpec uplink = null;
        if (uplinkTap != null) {
            try {
                uplink = BackendSpec.parse(uplinkTap);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("backend '" + text + "': uplink: " + e.getMessage());
            }
            uplink = uplinkOffload ? uplink : uplink.withoutOffload();
        } else if (!uplinkOffload) {
            throw new IllegalArgumentException("backend '" + text + "': uplink-no-offload without uplink=tap:NAME");
        }
        return new SwitchSpec(text, sw, port, vlans, offload, uplink);
    }

    public String switchName() {
        return switchName;
    }

    /** The port name asked for, or null for the first free one. */
    public String portName() {
        return portName;
    }

    public VlanSet vlans() {
        return vlans;
    }

    public boolean offload() {
        return offload;
    }

    /** The uplink tap asked for, or null. */
    public BackendSpec uplink() {
        return uplink;
    }

    /** The same port with no offloads offered (the command line's {@code --no-offload}). */
    @Override
    public SwitchSpec withoutOffload() {
        return new SwitchSpec(text, switchName, portName, vlans, false, uplink);
    }

    /** Attaches one port to the named switch (created if needed). A switch port has one queue pair. */
    @Override
    public List<NetBackend> open(int queuePairs) throws IOException {
        if (queuePairs != 1) {
            throw new IllegalArgumentException("backend '" + text + "': a switch port has one queue pair, "
                    + queuePairs + " asked");
        }
        VirtualSwitch sw = VirtualSwitch.named(switchName);
        synchronized (sw) {
            SwitchPort p = sw.attach(portName != null ? portName : sw.freePortName(), vlans, offload);
            if (uplink != null) {
                try {
                    sw.uplink(uplink);
                } catch (IOException | RuntimeException e) {
                    p.close();
                    throw e;
                }
            }
            return List.of(p);
        }
    }

    @Override
    public String toString() {
        return "switch:" + switchName + (portName != null ? ",port=" + portName : "")
                + (vlans != VlanSet.ALL ? ",vlans=" + vlans : "") + (offload ? "" : ",no-offload")
                + (uplink == null ? "" : ",uplink=tap:" + uplink.tapName() + (uplink.offload() ? "" : ",uplink-no-offload"));
    }
}
