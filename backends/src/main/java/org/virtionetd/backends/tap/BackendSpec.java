package org.virtionetd.backends.tap;

import org.virtionetd.backends.tap.freebsd.FreeBsdNative;
import org.virtionetd.backends.tap.freebsd.FreeBsdTapBackend;
import org.virtionetd.virtio.net.NetBackend;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * A backend named on the command line: {@code tap:NAME[,no-offload]}, or bhyve's spellings {@code tapN} and
 * {@code vmnetN} (bhyve(8) "-s 2,virtio-net,tap0"). The {@code --no-offload} flag of the command line maps to
 * {@link #withoutOffload()}. On Linux every spelling is a tap of that name; on FreeBSD it is /dev/NAME.
 */
public final class BackendSpec implements org.virtionetd.backends.BackendFactory {
    private static final Pattern BHYVE = Pattern.compile("(tap|vmnet)[0-9]+");

    private final String text;
    private final String tapName;
    private final boolean offload;

    private BackendSpec(String text, String tapName, boolean offload) {
        this.text = text;
        this.tapName = tapName;
        this.offload = offload;
    }

    /** Parses a spec; the exception message names the part that is wrong. */
    public static BackendSpec parse(String text) {
        if (text == null || text.isBlank()) {
            throw new IllegalArgumentException("backend is empty; expected tap:NAME, tapN or vmnetN");
        }
        String[] parts = text.split(",", -1);
        String head = parts[0];
        boolean offload = true;
        for (int i = 1; i < parts.length; i++) {
            if (parts[i].equals("no-offload")) {
                offload = false;
            } else {
                throw new IllegalArgumentException("backend '" + text + "': unknown option '" + parts[i]
                        + "'; the only option is no-offload");
            }
        }
        String name;
        if (head.startsWith("tap:")) {
            name = head.substring(4);
            if (name.isEmpty()) {
                throw new IllegalArgumentException("backend '" + text + "': tap name after 'tap:' is empty");
            }
        } else if (BHYVE.matcher(head).matches()) {
            name = head;
        } else {
            int colon = head.indexOf(':');
            String kind = colon >= 0 ? head.substring(0, colon) : head;
            throw new IllegalArgumentException("backend '" + text + "': unknown backend '" + kind
                    + "'; expected tap:NAME, tapN or vmnetN");
        }
        if (name.length() > 15) {
            throw new IllegalArgumentException("backend '" + text + "': tap name '" + name + "' is "
                    + name.length() + " characters; at most 15");
        }
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            if (c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == ',') {
                throw new IllegalArgumentException("backend '" + text + "': tap name '" + name
                        + "' has a forbidden character at " + i);
            }
        }
        return new BackendSpec(text, name, offload);
    }

    /** The same backend with no vnet header, hence no offloads (the {@code --no-offload} flag). */
    @Override
    public BackendSpec withoutOffload() {
        return new BackendSpec(text, tapName, false);
    }

    public String tapName() {
        return tapName;
    }

    public boolean offload() {
        return offload;
    }

    /** Opens one backend per queue pair. FreeBSD's tap has one queue. */
    @Override
    public List<NetBackend> open(int queuePairs) throws IOException {
        if (FreeBsdNative.isAvailable()) {
            if (queuePairs != 1) {
                throw new IllegalArgumentException("backend '" + text + "': a FreeBSD tap has one queue pair, "
                        + queuePairs + " asked");
            }
            return List.of(FreeBsdTapBackend.open(tapName, offload));
        }
        return new ArrayList<>(TapBackend.openQueues(tapName, queuePairs, offload));
    }

    @Override
    public String toString() {
        return "tap:" + tapName + (offload ? "" : ",no-offload");
    }
}
