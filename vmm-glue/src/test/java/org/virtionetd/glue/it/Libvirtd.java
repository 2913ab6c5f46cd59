package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cleanup;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.Spawned;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Debian 12's libvirt (9.0, the monolithic libvirtd of libvirt-daemon-system) reached as {@code qemu:///system}.
 * Under systemd its sockets start libvirtd and virtlogd on demand; here PID 1 is not systemd, so when no libvirtd
 * answers, {@link #ensureRunning} starts both itself in the foreground, as child processes ({@code virtlogd}
 * first: libvirt's default {@code stdio_handler = "logd"} in qemu.conf sends QEMU's output through it, and a
 * domain does not start without it), and {@link #close()} stops what it started, and only that.
 */
public final class Libvirtd implements AutoCloseable {
    public static final String URI = "qemu:///system";
    /** libvirtd probes QEMU's capabilities at its first start (cached after): seconds under TCG on 2 busy cores. */
    private static final Duration START_TIMEOUT = Duration.ofSeconds(120);
    private static final Duration VIRSH_TIMEOUT = Duration.ofSeconds(120);
    private static final Path QEMU_CONF = Path.of("/etc/libvirt/qemu.conf");
    private static final Pattern QEMU_USER = Pattern.compile("(?m)^\\s*user\\s*=\\s*\"([^\"]+)\"");

    private final List<Spawned> started;

    private Libvirtd(List<Spawned> started) {
        this.started = started;
    }

    /** Uses the running libvirtd, or starts virtlogd (unless running) and libvirtd, logging into {@code logDir}. */
    public static Libvirtd ensureRunning(Path logDir) {
        if (answers()) {
            return new Libvirtd(List.of());
        }
        List<Spawned> started = new ArrayList<>();
        Libvirtd d = new Libvirtd(started);
        Cleanup.register(d);
        try {
            if (!running("virtlogd")) {
                started.add(Spawned.start(logDir.resolve("virtlogd.log"), List.of("virtlogd")));
            }
            Spawned libvirtd = Spawned.start(logDir.resolve("libvirtd.log"), List.of("libvirtd"));
            started.add(libvirtd);
            Poll.until("libvirtd answering on " + URI, START_TIMEOUT, () -> !libvirtd.isAlive() || answers(),
                    () -> "libvirtd log tail:\n" + Cmd.indent(Cmd.tail(libvirtd.output(), 20)));
            if (!libvirtd.isAlive()) {
                throw new AssertionError("libvirtd exited at start:\n" + Cmd.indent(Cmd.tail(libvirtd.output(), 30)));
            }
        } catch (RuntimeException | AssertionError e) {
            d.close();
            throw e;
        }
        return d;
    }

    private static boolean answers() {
        return Cmd.run(Duration.ofSeconds(30), List.of("virsh", "-c", URI, "version")).ok();
    }

    private static boolean running(String daemon) {
        return ProcessHandle.allProcesses().anyMatch(h -> h.info().command()
                .map(c -> c.equals("/usr/sbin/" + daemon) || c.endsWith("/" + daemon)).orElse(false));
    }

    /** {@code virsh -c qemu:///system ARGS...}, any exit code. */
    public static Cmd.Result virsh(String... args) {
        List<String> argv = new ArrayList<>(List.of("virsh", "-c", URI));
        argv.addAll(List.of(args));
        return Cmd.run(VIRSH_TIMEOUT, argv);
    }

    /** The user libvirt runs QEMU as: qemu.conf's {@code user = "..."}, else Debian's default libvirt-qemu. */
    public static String qemuUser() {
        try {
            Matcher m = QEMU_USER.matcher(Files.readString(QEMU_CONF));
            return m.find() ? m.group(1) : "libvirt-qemu";
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + QEMU_CONF + " (is libvirt-daemon-system installed?)", e);
        }
    }

    /** The tail of what the daemons this started printed (empty when libvirtd was running already). */
    public String logTail(int lines) {
        StringBuilder b = new StringBuilder();
        for (Spawned s : started) {
            b.append(s.command()).append(" log tail:\n").append(Cmd.indent(Cmd.tail(s.output(), lines))).append('\n');
        }
        return b.toString();
    }

    /** Stops libvirtd, then virtlogd, if this started them (SIGTERM: both shut down cleanly on it). */
    @Override
    public void close() {
        Cleanup.unregister(this);
        for (int i = started.size() - 1; i >= 0; i--) {
            started.get(i).close();
        }
    }

    @Override
    public String toString() {
        return started.isEmpty() ? "libvirtd (already running)" : "libvirtd started by the test";
    }
}
