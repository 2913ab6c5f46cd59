package org.virtionetd.backends;

import org.virtionetd.backends.nullnet.NullBackend;
import org.virtionetd.backends.tap.BackendSpec;
import org.virtionetd.backends.vswitch.SwitchSpec;

import java.util.regex.Pattern;

/**
 * The registry of backend kinds for the command line: {@code tap:NAME[,no-offload]} (and bhyve's {@code tapN},
 * {@code vmnetN}), {@code switch:NAME} (and bhyve's {@code valeNAME:PORT}), {@code null} (discards, for benchmarks) and {@code null:source=SIZE} (also feeds the guest
 * SIZE-byte frames as fast as it takes them).
 */
public final class Backends {
    private static final Pattern BHYVE_TAP = Pattern.compile("(tap|vmnet)[0-9]+(,.*)?");
    public static final String KINDS = "tap:NAME, tapN, vmnetN, switch:NAME, valeNAME:PORT, null or null:source=SIZE";

    private Backends() {
    }

    /** Parses a backend spec; the exception names the wrong part. */
    public static BackendFactory parse(String text) {
        if (text == null || text.isBlank()) {
            throw new IllegalArgumentException("backend is empty; expected " + KINDS);
        }
        String kind = text.split("[:,]", 2)[0];
        if (kind.equals("tap") || BHYVE_TAP.matcher(text).matches()) {
            return BackendSpec.parse(text);
        }
        if (SwitchSpec.matches(text)) {
            return SwitchSpec.parse(text);
        }
        if (kind.equals("null")) {
            return NullBackend.Spec.parse(text);
        }
        throw new IllegalArgumentException("backend '" + text + "': unknown backend '" + kind + "'; expected " + KINDS);
    }
}
