package org.virtionetd.backends.tap;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;

/**
 * Test plumbing for real taps: unique names, network namespaces the test creates and removes, commands with
 * bounded waits, and background processes (listeners, tcpdump) whose output lines are awaited with a deadline.
 * A missing tool (ip, ethtool, tcpdump, python3) fails the test: it is part of the test bed.
 */
final class TapTestNet {
    private static final AtomicInteger COUNTER = new AtomicInteger();
    private static final String RUN = Long.toString(ProcessHandle.current().pid() % 100000, 36);

    private TapTestNet() {
    }

    /** A fresh name of at most 15 bytes: prefix + pid + counter. */
    static String uniqueName(String prefix) {
        String n = prefix + RUN + COUNTER.incrementAndGet();
        if (n.length() > 15) {
            throw new IllegalStateException("name too long: " + n);
        }
        return n;
    }

    /** Runs a command, waits at most 20 s, returns stdout+stderr; a non-zero exit fails with the output. */
    static String run(String... argv) {
        Result r = tryRun(argv);
        if (r.exit != 0) {
            throw new AssertionError("command " + Arrays.toString(argv) + " exited " + r.exit + ": " + r.output);
        }
        return r.output;
    }

    static final class Result {
        final int exit;
        final String output;

        Result(int exit, String output) {
            this.exit = exit;
            this.output = output;
        }
    }

    static Result tryRun(String... argv) {
        try {
            Process p = new ProcessBuilder(argv).redirectErrorStream(true).start();
            p.getOutputStream().close();
            byte[] out = p.getInputStream().readAllBytes();
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("command " + Arrays.toString(argv) + " did not finish in 20 s");
            }
            return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new AssertionError("cannot run " + Arrays.toString(argv) + " (missing tool?): " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted running " + Arrays.toString(argv), e);
        }
    }

    /** A network namespace, removed on close. */
    static final class Netns implements AutoCloseable {
        final String name;

        Netns() {
            name = uniqueName("vnns");
            run("ip", "netns", "add", name);
            run("ip", "-n", name, "link", "set", "lo", "up");
            // No IPv6 chatter (router solicitations, MLD) on the links: the tests look at what they send only.
            exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
            exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1");
        }

        /** Runs a command inside the namespace. */
        String exec(String... argv) {
            return run(prefixed(argv));
        }

        String[] prefixed(String... argv) {
            String[] full = new String[argv.length + 4];
            full[0] = "ip";
            full[1] = "netns";
            full[2] = "exec";
            full[3] = name;
            System.arraycopy(argv, 0, full, 4, argv.length);
            return full;
        }

        /** Moves {@code link} here, gives it {@code mac} and {@code cidr}, brings it up. */
        void adopt(String link, String mac, String cidr) {
            run("ip", "link", "set", link, "netns", name);
            run("ip", "-n", name, "link", "set", link, "address", mac);
            run("ip", "-n", name, "addr", "add", cidr, "dev", link);
            run("ip", "-n", name, "link", "set", link, "up");
        }

        void neighbour(String ip, String mac, String link) {
            run("ip", "-n", name, "neigh", "replace", ip, "lladdr", mac, "dev", link, "nud", "permanent");
        }

        @Override
        public void close() {
            tryRun("ip", "netns", "del", name);
        }
    }

    /** A process whose output lines are collected by a reader thread, killed on close. */
    static final class Background implements AutoCloseable {
        private final Process process;
        private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();
        private final List<String> seen = new ArrayList<>();
        private final String what;

        Background(String... argv) {
            what = Arrays.toString(argv);
            try {
                process = new ProcessBuilder(argv).redirectErrorStream(true).start();
                process.getOutputStream().close();
            } catch (IOException e) {
                throw new AssertionError("cannot start " + what + " (missing tool?): " + e.getMessage(), e);
            }
            Thread t = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(
                        new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                    String l;
                    while ((l = r.readLine()) != null) {
                        lines.add(l);
                    }
                } catch (IOException e) {
                    // process gone
                }
            }, "test-output " + what);
            t.setDaemon(true);
            t.start();
        }

        /** Waits for a line matching {@code p}; fails with everything seen after {@code timeout}. */
        String await(Predicate<String> p, Duration timeout, String description) {
            long deadline = System.nanoTime() + timeout.toNanos();
            try {
                while (true) {
                    long left = deadline - System.nanoTime();
                    String l = left > 0 ? lines.poll(left, TimeUnit.NANOSECONDS) : null;
                    if (l == null) {
                        throw new AssertionError("no " + description + " from " + what + " within " + timeout
                                + "; lines seen: " + seen + (process.isAlive() ? "" : " (exited "
                                + process.exitValue() + ")"));
                    }
                    seen.add(l);
                    if (p.test(l)) {
                        return l;
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted", e);
            }
        }

        List<String> seen() {
            return seen;
        }

        @Override
        public void close() {
            process.destroy();
            try {
                if (!process.waitFor(5, TimeUnit.SECONDS)) {
                    process.destroyForcibly();
                }
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
    }
}
