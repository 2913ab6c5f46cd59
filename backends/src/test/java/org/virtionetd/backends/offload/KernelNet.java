package org.virtionetd.backends.offload;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;

/**
 * Plumbing for the tests that make the Linux kernel the judge of the software offload engine: commands with
 * bounded waits, network namespaces removed on close, background processes (tcpdump, python3 listeners) whose
 * output lines are awaited with a deadline, and a reader of the pcap files tcpdump writes. A missing tool fails
 * the test: ip, ethtool, tcpdump and python3 are part of the test bed.
 */
final class KernelNet {
    private static final AtomicInteger COUNTER = new AtomicInteger();
    private static final String RUN = Long.toString(ProcessHandle.current().pid() % 100000, 36);

    private KernelNet() {
    }

    /** A fresh interface or namespace name of at most 15 bytes: prefix + pid + counter. */
    static String uniqueName(String prefix) {
        String n = prefix + RUN + COUNTER.incrementAndGet();
        if (n.length() > 15) {
            throw new IllegalStateException("name too long: " + n);
        }
        return n;
    }

    record Result(int exit, String output) {
    }

    /** Runs a command, waits at most 20 s, returns stdout+stderr; a non-zero exit fails with the output. */
    static String run(String... argv) {
        Result r = tryRun(argv);
        if (r.exit != 0) {
            throw new AssertionError("command " + Arrays.toString(argv) + " exited " + r.exit + ": " + r.output);
        }
        return r.output;
    }

    static Result tryRun(String... argv) {
        Path out = null;
        try {
            out = Files.createTempFile("vnd-kn-", ".out");
            Process p = new ProcessBuilder(argv).redirectErrorStream(true).redirectOutput(out.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile())).start();
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("command " + Arrays.toString(argv) + " did not finish in 20 s");
            }
            return new Result(p.exitValue(), Files.readString(out));
        } catch (IOException e) {
            throw new AssertionError("cannot run " + Arrays.toString(argv) + " (missing tool?): " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted running " + Arrays.toString(argv), e);
        } finally {
            if (out != null) {
                try {
                    Files.deleteIfExists(out);
                } catch (IOException ignored) {
                    // a temp file left behind is harmless
                }
            }
        }
    }

    /** A network namespace, removed on close (with every link and process still in it). */
    static final class Netns implements AutoCloseable {
        final String name;

        Netns(boolean ipv6) {
            name = uniqueName("vkns");
            run("ip", "netns", "add", name);
            try {
                run("ip", "-n", name, "link", "set", "lo", "up");
                if (!ipv6) {
                    // No router solicitations or MLD reports: the captures should hold what the test sends.
                    exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
                    exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1");
                }
            } catch (RuntimeException | Error e) {
                close();
                throw e;
            }
        }

        String exec(String... argv) {
            return run(prefixed(argv));
        }

        Result tryExec(String... argv) {
            return tryRun(prefixed(argv));
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

        /** Moves {@code link} of the root namespace here and brings it up. */
        void moveIn(String link) {
            run("ip", "link", "set", link, "netns", name);
            run("ip", "-n", name, "link", "set", link, "up");
        }

        void ip(String... args) {
            String[] full = new String[args.length + 3];
            full[0] = "ip";
            full[1] = "-n";
            full[2] = name;
            System.arraycopy(args, 0, full, 3, args.length);
            run(full);
        }

        /** A counter of /proc/net/snmp (or /proc/net/snmp6 for names like Udp6InCsumErrors) in this namespace. */
        long counter(String proto, String field) {
            if (proto == null) {
                for (String l : exec("cat", "/proc/net/snmp6").split("\n")) {
                    String[] w = l.trim().split("\\s+");
                    if (w.length == 2 && w[0].equals(field)) {
                        return Long.parseLong(w[1]);
                    }
                }
                throw new AssertionError("no " + field + " in /proc/net/snmp6 of " + name);
            }
            List<String> lines = exec("cat", "/proc/net/snmp").lines().filter(l -> l.startsWith(proto + ":")).toList();
            String[] names = lines.get(0).trim().split("\\s+");
            String[] values = lines.get(1).trim().split("\\s+");
            for (int i = 1; i < names.length; i++) {
                if (names[i].equals(field)) {
                    return Long.parseLong(values[i]);
                }
            }
            throw new AssertionError("no " + proto + "." + field + " in /proc/net/snmp of " + name);
        }

        @Override
        public void close() {
            tryRun("ip", "netns", "del", name);
        }
    }

    /** A process whose output lines are collected by a reader thread; ended on close. */
    static final class Background implements AutoCloseable {
        private final Process process;
        private final List<String> lines = Collections.synchronizedList(new ArrayList<>());
        private final String what;

        Background(String... argv) {
            what = Arrays.toString(argv);
            try {
                process = new ProcessBuilder(argv).redirectErrorStream(true)
                        .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile())).start();
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
                    // the process is gone
                }
            }, "test-output " + what);
            t.setDaemon(true);
            t.start();
        }

        /** Waits (polling every 10 ms) for a line matching {@code p}; fails with everything seen. */
        String await(Predicate<String> p, Duration timeout, String description) {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (true) {
                synchronized (lines) {
                    for (String l : lines) {
                        if (p.test(l)) {
                            return l;
                        }
                    }
                }
                if (System.nanoTime() - deadline > 0 || !process.isAlive()) {
                    boolean alive = process.isAlive();
                    synchronized (lines) {
                        for (String l : lines) {
                            if (p.test(l)) {
                                return l;
                            }
                        }
                        throw new AssertionError("no " + description + " from " + what + " within " + timeout
                                + "; lines seen: " + lines + (alive ? "" : " (exited " + process.exitValue() + ")"));
                    }
                }
                sleepMillis(10);
            }
        }

        List<String> lines() {
            synchronized (lines) {
                return new ArrayList<>(lines);
            }
        }

        boolean isAlive() {
            return process.isAlive();
        }

        @Override
        public void close() {
            process.destroy();
            try {
                if (!process.waitFor(5, TimeUnit.SECONDS)) {
                    process.destroyForcibly();
                    process.waitFor(5, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
    }

    static void sleepMillis(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    /**
     * The frames of a pcap file (classic format, as tcpdump -w writes it; either byte order) that are complete so
     * far: tcpdump -U may be in the middle of a record, which is then left for the next read.
     */
    static List<byte[]> readPcap(Path file) throws IOException {
        byte[] all = Files.readAllBytes(file);
        List<byte[]> frames = new ArrayList<>();
        if (all.length < 24) {
            return frames;
        }
        ByteBuffer b = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        int magic = b.getInt(0);
        if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) {
            b.order(ByteOrder.BIG_ENDIAN);
        } else if (magic != 0xa1b2c3d4 && magic != 0xa1b23c4d) {
            throw new AssertionError(file + " is not a pcap file: magic 0x" + Integer.toHexString(magic));
        }
        int linkType = b.getInt(20);
        if (linkType != 1) {
            throw new AssertionError(file + " has link type " + linkType + ", not Ethernet (1)");
        }
        int at = 24;
        while (at + 16 <= all.length) {
            int incl = b.getInt(at + 8);
            int orig = b.getInt(at + 12);
            if (at + 16 + incl > all.length) {
                break;
            }
            if (incl != orig) {
                throw new AssertionError("pcap record truncated by the snap length: " + incl + " of " + orig);
            }
            frames.add(Arrays.copyOfRange(all, at + 16, at + 16 + incl));
            at += 16 + incl;
        }
        return frames;
    }

    static byte[] mac(String text) {
        String[] p = text.split(":");
        byte[] m = new byte[6];
        for (int i = 0; i < 6; i++) {
            m[i] = (byte) Integer.parseInt(p[i], 16);
        }
        return m;
    }

    static String hex(byte[] b, int from, int to) {
        StringBuilder s = new StringBuilder();
        for (int i = Math.max(0, from); i < Math.min(b.length, to); i++) {
            s.append(String.format("%02x", b[i] & 0xff));
        }
        return s.toString();
    }

    /** Where two frames first differ, with some context, for failure messages. */
    static String diff(byte[] want, byte[] got) {
        int n = Math.min(want.length, got.length);
        int i = 0;
        while (i < n && want[i] == got[i]) {
            i++;
        }
        if (i == n && want.length == got.length) {
            return "identical";
        }
        return "lengths " + want.length + " (software) vs " + got.length + " (kernel); first difference at byte " + i
                + ": software " + hex(want, i - 4, i + 12) + " kernel " + hex(got, i - 4, i + 12)
                + " (from byte " + Math.max(0, i - 4) + ")";
    }
}
