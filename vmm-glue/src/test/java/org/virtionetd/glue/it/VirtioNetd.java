package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * The device under test as users run it: the packaged jar ({@code vmm-glue/target/virtio-netd.jar}) started with
 * {@code java -jar} inside a {@link NetNs}, on a tap there, with a vhost-user socket and a control socket in the
 * namespace's directory. {@link #features()} and {@link #stats()} ask it through {@code virtio-netd features|stats
 * --control P --json}, as a user would. {@link #close()} ends it (SIGTERM, then SIGKILL); the namespace's close
 * does too.
 */
public final class VirtioNetd implements AutoCloseable {
    /** JVM start and socket creation; generous because guests may be booting on the same two cores. */
    public static final Duration START_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration QUERY_TIMEOUT = Duration.ofSeconds(60);

    private static final java.util.concurrent.atomic.AtomicInteger LAUNCHES = new java.util.concurrent.atomic.AtomicInteger();

    private final Spawned process;
    private final Path socket;
    private final Path control;
    private final String tap;

    private VirtioNetd(Spawned process, Path socket, Path control, String tap) {
        this.process = process;
        this.socket = socket;
        this.control = control;
        this.tap = tap;
    }

    /** The packaged jar; fails when it is missing or older than the main sources (it would test stale code). */
    public static Path jar() {
        Path root = GuestVm.projectRoot();
        Path jar = root.resolve("vmm-glue/target/virtio-netd.jar");
        if (!Files.isRegularFile(jar)) {
            throw new AssertionError(jar + " does not exist: build it first with `mvn -o -q -B package -DskipTests` in "
                    + root);
        }
        Optional<Path> newer = newestSource(root).filter(p -> modified(p).compareTo(modified(jar)) > 0);
        if (newer.isPresent()) {
            throw new AssertionError(jar + " (" + modified(jar) + ") is older than " + newer.get() + " ("
                    + modified(newer.get()) + "): rebuild it with `mvn -o -q -B package -DskipTests` in " + root);
        }
        return jar;
    }

    private static Optional<Path> newestSource(Path root) {
        List<Path> roots = new ArrayList<>(List.of(root.resolve("pom.xml")));
        for (String module : List.of("virtio", "backends", "vmm-glue")) {
            roots.add(root.resolve(module).resolve("pom.xml"));
            roots.add(root.resolve(module).resolve("src/main"));
        }
        Path newest = null;
        for (Path r : roots) {
            if (!Files.exists(r)) {
                continue;
            }
            try (Stream<Path> walk = Files.walk(r)) {
                for (Path p : (Iterable<Path>) walk.filter(Files::isRegularFile)::iterator) {
                    if (newest == null || modified(p).compareTo(modified(newest)) > 0) {
                        newest = p;
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot list " + r, e);
            }
        }
        return Optional.ofNullable(newest);
    }

    private static FileTime modified(Path p) {
        try {
            return Files.getLastModifiedTime(p);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot stat " + p, e);
        }
    }

    /** The java launcher of the JVM running the tests (the project's JDK 17). */
    static String java() {
        return Path.of(System.getProperty("java.home"), "bin", "java").toString();
    }

    /**
     * Starts {@code virtio-netd --socket DIR/vnd.sock --backend tap:TAP --control DIR/vnd.ctl [extra...]} in
     * {@code ns} (the tap must exist there) and waits until both sockets exist.
     */
    public static VirtioNetd start(NetNs ns, String tap, String... extraArgs) {
        return launch(ns, "tap:" + tap, tap, extraArgs);
    }

    /**
     * Starts {@code virtio-netd --socket DIR/vnd.sock --backend BACKEND --control DIR/vnd.ctl [extra...]} in
     * {@code ns} (any backend spec, e.g. {@code switch:sw0,uplink=tap:vnd0}) and waits until both sockets exist.
     */
    public static VirtioNetd startBackend(NetNs ns, String backend, String... extraArgs) {
        return launch(ns, backend, backend, extraArgs);
    }

    private static VirtioNetd launch(NetNs ns, String backend, String tap, String... extraArgs) {
        return launch(ns, backend, tap, ns.dir().resolve("vnd.sock"), ns.dir().resolve("vnd.ctl"), "virtio-netd",
                extraArgs);
    }

    private static VirtioNetd launch(NetNs ns, String backend, String tap, Path socket, Path control, String logName,
                                     String... extraArgs) {
        List<String> argv = new ArrayList<>(List.of(java(), "-jar", jar().toString(), "--socket", socket.toString(),
                "--backend", backend, "--control", control.toString()));
        argv.addAll(List.of(extraArgs));
        Spawned p = ns.spawn(logName, argv.toArray(String[]::new));
        VirtioNetd d = new VirtioNetd(p, socket, control, tap);
        Poll.until("vhost-user socket " + socket + " and control socket " + control + " of virtio-netd",
                START_TIMEOUT, () -> (Files.exists(socket) && Files.exists(control)) || !p.isAlive(),
                () -> d.logTail(30));
        if (!p.isAlive()) {
            throw new AssertionError("virtio-netd exited before making its sockets; " + argv + "\n" + d.logTail(30));
        }
        return d;
    }

    /**
     * Like {@link #start}, with the vhost-user and control sockets at these paths (e.g. in a directory that
     * libvirt's QEMU, another user, can reach), and waits until both exist.
     */
    public static VirtioNetd startAt(NetNs ns, String tap, Path socket, Path control, String... extraArgs) {
        return launch(ns, "tap:" + tap, tap, socket, control, "virtio-netd-" + LAUNCHES.incrementAndGet(), extraArgs);
    }

    /**
     * Starts one virtio-netd process serving one device per tap of {@code taps} (the first with --socket/--backend/
     * --control, the others with --device), with sockets {@code DIR/NAME-TAP.sock} and {@code DIR/NAME-TAP.ctl}, and
     * waits until all sockets exist. Returns one view per device; they share the process, and closing any ends it.
     */
    public static List<VirtioNetd> startDevices(NetNs ns, String name, List<String> taps, String... extraArgs) {
        List<String> argv = new ArrayList<>(List.of(java(), "-jar", jar().toString()));
        List<Path[]> paths = new ArrayList<>();
        for (int i = 0; i < taps.size(); i++) {
            Path socket = ns.dir().resolve(name + "-" + taps.get(i) + ".sock");
            Path control = ns.dir().resolve(name + "-" + taps.get(i) + ".ctl");
            paths.add(new Path[] {socket, control});
            if (i == 0) {
                argv.addAll(List.of("--socket", socket.toString(), "--backend", "tap:" + taps.get(i), "--control",
                        control.toString()));
            } else {
                argv.addAll(List.of("--device", "socket=" + socket + ",backend=tap:" + taps.get(i) + ",control="
                        + control));
            }
        }
        argv.addAll(List.of(extraArgs));
        // A process started again on the same sockets (after a kill) gets a log of its own.
        Spawned p = ns.spawn(name + "-" + LAUNCHES.incrementAndGet(), argv.toArray(String[]::new));
        List<VirtioNetd> devices = new ArrayList<>();
        for (int i = 0; i < taps.size(); i++) {
            devices.add(new VirtioNetd(p, paths.get(i)[0], paths.get(i)[1], taps.get(i)));
        }
        VirtioNetd first = devices.get(0);
        Poll.until("the " + taps.size() + " vhost-user and control sockets of virtio-netd " + name,
                START_TIMEOUT, () -> !p.isAlive() || paths.stream().allMatch(
                        x -> Files.exists(x[0]) && Files.exists(x[1])), () -> first.logTail(30));
        if (!p.isAlive()) {
            throw new AssertionError("virtio-netd " + name + " exited before making its sockets; " + argv + "\n"
                    + first.logTail(30));
        }
        return devices;
    }

    public Path socket() {
        return socket;
    }

    public Path control() {
        return control;
    }

    public String tap() {
        return tap;
    }

    public Spawned process() {
        return process;
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** Everything the device printed (its System.Logger output). */
    public String log() {
        return process.output();
    }

    public String logTail(int lines) {
        return "virtio-netd log (" + process.log() + ", " + (process.isAlive() ? "running" : "exited") + "), tail:\n"
                + Cmd.indent(Cmd.tail(log(), lines));
    }

    /** Runs {@code virtio-netd SUBCOMMAND --control P [--json]} and returns its output; fails on a non-zero exit. */
    public String query(String subcommand, boolean json) {
        List<String> argv = new ArrayList<>(List.of(java(), "-jar", jar().toString(), subcommand, "--control",
                control.toString()));
        if (json) {
            argv.add("--json");
        }
        return Cmd.run(QUERY_TIMEOUT, argv).orFail().output();
    }

    /** {@code virtio-netd features --control P --json}: offered, acked, negotiated, backend_offloads, ... */
    public Map<String, Object> features() {
        return JsonText.object(lastLine(query("features", true)));
    }

    /** {@code virtio-netd stats --control P --json}: device and queue_pairs (one object of counters each). */
    public Map<String, Object> stats() {
        return JsonText.object(lastLine(query("stats", true)));
    }

    /**
     * The feature bits of an array of spec names in {@link #features()} ({@code offered}, {@code acked},
     * {@code negotiated}); a name without a known bit ({@code BIT_n} aside) is an error.
     */
    public static long featureBits(Map<String, Object> features, String key) {
        long bits = 0;
        for (String name : JsonText.strings(features, key)) {
            int bit = name.startsWith("BIT_") ? Integer.parseInt(name.substring(4))
                    : org.virtionetd.virtio.net.VirtioNetFeature.bitOf(name);
            if (bit < 0 || bit > 63) {
                throw new IllegalArgumentException("'" + key + "' names an unknown feature '" + name + "': " + features);
            }
            bits |= 1L << bit;
        }
        return bits;
    }

    /** A counter of {@link #stats()} summed over all queue pairs, e.g. {@code counter(stats, "tx_packets")}. */
    public static long counter(Map<String, Object> stats, String name) {
        Object pairs = stats.get("queue_pairs");
        if (!(pairs instanceof List) || ((List<?>) pairs).isEmpty()) {
            throw new IllegalArgumentException("no queue_pairs in the stats: " + stats);
        }
        long sum = 0;
        for (Object p : (List<?>) pairs) {
            Object v = ((Map<?, ?>) p).get(name);
            if (!(v instanceof Long)) {
                throw new IllegalArgumentException("no counter '" + name + "' in the stats of a queue pair: " + p);
            }
            sum += (Long) v;
        }
        return sum;
    }

    /**
     * What a failure message shows about the device: the log tail and the answer of {@code virtio-netd stats}
     * (or why there was none). Never throws.
     */
    public String describe() {
        String stats;
        try {
            stats = isAlive() ? query("stats", false) : "(not running)";
        } catch (RuntimeException e) {
            stats = "(virtio-netd stats failed: " + e.getMessage() + ")";
        }
        return logTail(30) + "\nvirtio-netd stats:\n" + Cmd.indent(stats);
    }

    /** {@link #describe()} plus the tail of the guest's serial log. */
    public String describe(GuestVm vm) {
        return "guest " + vm + " serial log tail:\n" + Cmd.indent(Cmd.tail(vm.output(), 40)) + "\n" + describe();
    }

    static String lastLine(String output) {
        List<String> lines = output.strip().lines().toList();
        return lines.isEmpty() ? "" : lines.get(lines.size() - 1);
    }

    @Override
    public void close() {
        process.close();
    }

    @Override
    public String toString() {
        return "virtio-netd on tap " + tap + ", socket " + socket;
    }
}
