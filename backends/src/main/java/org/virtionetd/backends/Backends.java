package org.virtionetd.backends;

import org.virtionetd.backends.nullnet.NullBackend;
import org.virtionetd.backends.offload.OffloadingBackend;
import org.virtionetd.backends.tap.BackendSpec;
import org.virtionetd.backends.vswitch.SwitchSpec;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.VirtioNetFeature;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * The registry of backend kinds for the command line: {@code tap:NAME[,no-offload]} (and bhyve's {@code tapN},
 * {@code vmnetN}), {@code switch:NAME} (and bhyve's {@code valeNAME:PORT}), {@code null} (discards, for benchmarks;
 * {@code null:copy} copies each packet first) and {@code null:source=SIZE} (also feeds the guest SIZE-byte frames as
 * fast as it takes them).
 *
 * <p>It also assembles what a device gets ({@link #assemble}): a spec names a backend, the registry decides what
 * wraps it. The software offload engine ({@link OffloadingBackend}) goes in front of every backend that cannot carry
 * each HOST_* offload a guest may hand over: it passes through what the backend carries and completes the rest, so
 * the device can offer them all. A switch port carries every offload itself (it segments only for a driver that did
 * not accept them), so {@link Offloads#SOFTWARE} changes nothing there.
 */
public final class Backends {
    private static final Pattern BHYVE_TAP = Pattern.compile("(tap|vmnet)[0-9]+(,.*)?");
    public static final String KINDS = "tap:NAME, tapN, vmnetN, switch:NAME, valeNAME:PORT, null, null:copy or null:source=SIZE";

    /** What the command line asks of the offloads a device offers its guest. */
    public enum Offloads {
        /** What the backend carries, and the rest completed in software (the default). */
        BACKEND,
        /** Every offload completed in software; a tap is opened without a vnet header ({@code --software-offload}). */
        SOFTWARE,
        /** None at all; no software engine ({@code --no-offload}). */
        NONE
    }

    /** A spec and whether the backends it opens carry offloads themselves (no use for a software-only mode). */
    private record Entry(BackendFactory spec, boolean carriesOffloadsItself) {
    }

    private Backends() {
    }

    /** Parses a backend spec; the exception names the wrong part. */
    public static BackendFactory parse(String text) {
        return entry(text).spec();
    }

    /**
     * The backend {@code text} names, assembled for a device with {@code offloads}: opening it opens the spec's
     * backends, each behind the software engine where it needs one. Its {@code toString} is the spec's (as it was
     * opened: {@code tap:t0,no-offload} for a tap under {@link Offloads#SOFTWARE}). The exception names the wrong
     * part of {@code text}.
     */
    public static BackendFactory assemble(String text, Offloads offloads) {
        Entry e = entry(text);
        boolean plain = offloads == Offloads.NONE || offloads == Offloads.SOFTWARE && !e.carriesOffloadsItself();
        return new Assembly(plain ? e.spec().withoutOffload() : e.spec(), offloads != Offloads.NONE);
    }

    private static Entry entry(String text) {
        if (text == null || text.isBlank()) {
            throw new IllegalArgumentException("backend is empty; expected " + KINDS);
        }
        String kind = text.split("[:,]", 2)[0];
        if (kind.equals("tap") || BHYVE_TAP.matcher(text).matches()) {
            return new Entry(BackendSpec.parse(text), false);
        }
        if (SwitchSpec.matches(text)) {
            return new Entry(SwitchSpec.parse(text), true);
        }
        if (kind.equals("null")) {
            return new Entry(NullBackend.Spec.parse(text), false);
        }
        throw new IllegalArgumentException("backend '" + text + "': unknown backend '" + kind + "'; expected " + KINDS);
    }

    /** The backend {@code b} behind the software engine, unless it carries every HOST_* offload itself. */
    static NetBackend withEngineIfNeeded(NetBackend b) {
        boolean carriesAll = (b.capabilities() & VirtioNetFeature.HOST_OFFLOADS) == VirtioNetFeature.HOST_OFFLOADS;
        return carriesAll ? b : new OffloadingBackend(b);
    }

    /** A spec as a device gets it: its backends, each behind the software engine where needed ({@code engine}). */
    private record Assembly(BackendFactory spec, boolean engine) implements BackendFactory {
        @Override
        public List<NetBackend> open(int queuePairs) throws IOException {
            List<NetBackend> opened = spec.open(queuePairs);
            if (!engine) {
                return opened;
            }
            List<NetBackend> out = new ArrayList<>(opened.size());
            for (NetBackend b : opened) {
                out.add(withEngineIfNeeded(b));
            }
            return out;
        }

        @Override
        public BackendFactory withoutOffload() {
            return new Assembly(spec.withoutOffload(), false);
        }

        @Override
        public String toString() {
            return spec.toString();
        }
    }
}
