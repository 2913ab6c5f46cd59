package org.virtionetd.glue.bhyve;

import org.virtionetd.glue.control.ControlServer;

import java.io.File;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Pattern;

/**
 * Runs a {@link Plan}: the setup commands, its virtio-netd processes (one per tap NIC, one for the VM's VALE NICs;
 * each waited for until the sockets of every NIC it serves exist, bounded), then the VMM in the foreground with this process's stdin/stdout/stderr (com1,stdio is the console).
 * SIGTERM, SIGINT and SIGHUP reach the JVM's shutdown hook, which stops the VMM first (SIGTERM, then SIGKILL after
 * 5 s), then the devices, and undoes the setup; the same cleanup runs when the VMM exits by itself.
 */
final class Runner {
    private static final Pattern ACKED_SOMETHING = Pattern.compile("\"acked\"\\s*:\\s*\\[\\s*\"");

    private final Plan plan;
    private final WrapperOptions options;
    private final PrintStream err;
    private final List<Process> devices = new ArrayList<>();
    private volatile Process vmm;
    private final AtomicBoolean cleaned = new AtomicBoolean();
    private final List<List<String>> undo = new ArrayList<>();

    Runner(Plan plan, WrapperOptions options, PrintStream err) {
        this.plan = plan;
        this.options = options;
        this.err = err;
    }

    int run() throws IOException, InterruptedException {
        Thread hook = new Thread(this::cleanup, "bhyve-wrapper-cleanup");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            for (int i = 0; i < plan.setup().size(); i++) {
                runChecked(plan.setup().get(i));
                undo.add(plan.teardown().get(i));
            }
            List<Plan.Daemon> daemons = plan.daemons();
            for (Plan.Daemon d : daemons) {
                for (Plan.Nic nic : d.nics()) {
                    Files.createDirectories(nic.socket().getParent());
                    Files.deleteIfExists(nic.socket());
                    Files.deleteIfExists(nic.control());
                }
                Files.createDirectories(d.log().getParent());
                Process p = new ProcessBuilder(d.command()).redirectErrorStream(true)
                        .redirectOutput(d.log().toFile()).redirectInput(new File("/dev/null")).start();
                devices.add(p);
            }
            for (int i = 0; i < daemons.size(); i++) {
                for (Plan.Nic nic : daemons.get(i).nics()) {
                    awaitSockets(nic, devices.get(i));
                }
            }
            vmm = new ProcessBuilder(plan.vmm()).inheritIO().start();
            List<Thread> watchers = new ArrayList<>();
            if (options.showFeatures()) {
                for (Plan.Nic nic : plan.nics()) {
                    Thread t = new Thread(() -> showFeatures(nic), "features-" + nic.at());
                    t.setDaemon(true);
                    t.start();
                    watchers.add(t);
                }
            }
            int rc = vmm.waitFor();
            for (Thread t : watchers) {
                t.join(TimeUnit.SECONDS.toMillis(2));
            }
            return rc;
        } finally {
            cleanup();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException e) {
                // already shutting down: the hook runs (and finds everything cleaned)
            }
        }
    }

    private void runChecked(List<String> cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        boolean done = p.waitFor(options.waitSeconds(), TimeUnit.SECONDS);
        String output = new String(p.getInputStream().readNBytes(4096), StandardCharsets.UTF_8).strip();
        if (!done) {
            p.destroyForcibly();
            throw new IOException(Plan.shellLine(cmd) + " did not finish within " + options.waitSeconds() + " s");
        }
        if (p.exitValue() != 0) {
            throw new IOException(Plan.shellLine(cmd) + " failed with exit " + p.exitValue() + ": " + output);
        }
    }

    /** Polls (every 50 ms, bounded) until the device made both sockets; fails at once if it exited. */
    private void awaitSockets(Plan.Nic nic, Process p) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(options.waitSeconds());
        while (!(Files.exists(nic.socket()) && Files.exists(nic.control()))) {
            if (!p.isAlive()) {
                throw new IOException("virtio-netd for pci slot " + nic.at() + " exited with " + p.exitValue()
                        + " before making " + nic.socket() + "; its log " + nic.log() + " ends:\n" + tail(nic.log()));
            }
            if (System.nanoTime() > deadline) {
                throw new IOException("virtio-netd for pci slot " + nic.at() + " made no socket " + nic.socket()
                        + " within " + options.waitSeconds() + " s; its log ends:\n" + tail(nic.log()));
            }
            Thread.sleep(50);
        }
    }

    /**
     * Waits (polling every 200 ms, bounded) until the guest's driver has acknowledged features on this NIC, then
     * prints its feature table, as {@code virtio-netd features} would.
     */
    private void showFeatures(Plan.Nic nic) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(options.waitSeconds());
        String last = "(no answer)";
        try {
            while (System.nanoTime() < deadline && vmm != null && vmm.isAlive()) {
                try {
                    last = ControlServer.query(nic.control(), "features json");
                    if (ACKED_SOMETHING.matcher(last).find()) {
                        String table = ControlServer.query(nic.control(), "features table");
                        synchronized (err) {
                            err.println("--- pci slot " + nic.at() + " virtio-net (" + nic.control() + ")");
                            err.print(table.endsWith("\n") ? table : table + "\n");
                            err.flush();
                        }
                        return;
                    }
                } catch (IOException e) {
                    last = e.getMessage();
                }
                Thread.sleep(200);
            }
            if (vmm != null && vmm.isAlive()) {
                err.println("bhyve: pci slot " + nic.at() + ": no guest driver acknowledged features within "
                        + options.waitSeconds() + " s; last answer: " + last.strip());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void cleanup() {
        if (!cleaned.compareAndSet(false, true)) {
            return;
        }
        Process v = vmm;
        if (v != null) {
            stop(v);
        }
        devices.forEach(Runner::stop);
        for (List<String> cmd : undo) {
            try {
                runChecked(cmd);
            } catch (IOException | InterruptedException e) {
                err.println("bhyve: cleanup: " + e.getMessage());
            }
        }
        for (Plan.Nic nic : plan.nics()) {
            try {
                Files.deleteIfExists(nic.socket());
                Files.deleteIfExists(nic.control());
            } catch (IOException e) {
                err.println("bhyve: cleanup: cannot remove " + nic.socket() + ": " + e.getMessage());
            }
        }
    }

    private static void stop(Process p) {
        if (!p.isAlive()) {
            return;
        }
        p.destroy();
        try {
            if (!p.waitFor(5, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                p.waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }

    private static String tail(Path log) {
        try {
            List<String> lines = Files.readAllLines(log);
            return String.join("\n", lines.subList(Math.max(0, lines.size() - 20), lines.size()));
        } catch (IOException e) {
            return "(cannot read " + log + ": " + e.getMessage() + ")";
        }
    }
}
