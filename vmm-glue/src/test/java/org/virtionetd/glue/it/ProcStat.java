package org.virtionetd.glue.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.stream.Stream;

/**
 * What the kernel says about a process (the device under test): CPU time from /proc/PID/stat, resident memory
 * and credentials from /proc/PID/status, open descriptors in /proc/PID/fd.
 */
public final class ProcStat {
    /** USER_HZ: the unit of utime/stime in /proc/PID/stat (100 on every Linux this runs on). */
    static final long TICKS_PER_SECOND = 100;

    private ProcStat() {
    }

    /** utime + stime of the whole process (all threads), in milliseconds. */
    public static long cpuMillis(long pid) {
        String stat = read(Path.of("/proc", Long.toString(pid), "stat"));
        // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).trim().split("\\s+");
        long ticks = Long.parseLong(f[11]) + Long.parseLong(f[12]); // fields 14 and 15 of the full line
        return ticks * 1000 / TICKS_PER_SECOND;
    }

    /** A line's value of /proc/PID/status, e.g. {@code status(pid, "VmRSS")} = "123456 kB". */
    public static String status(long pid, String key) {
        for (String line : read(Path.of("/proc", Long.toString(pid), "status")).split("\n")) {
            if (line.startsWith(key + ":")) {
                return line.substring(key.length() + 1).strip();
            }
        }
        throw new AssertionError("no " + key + " in /proc/" + pid + "/status");
    }

    /** VmRSS in KiB. */
    public static long rssKiB(long pid) {
        return Long.parseLong(status(pid, "VmRSS").split("\\s+")[0]);
    }

    /** Number of open file descriptors. */
    public static int fdCount(long pid) {
        try (Stream<Path> s = Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            return (int) s.count();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list /proc/" + pid + "/fd", e);
        }
    }

    /** The CPU share (0..cores) the process used over {@code window}, measured across a bounded wait. */
    public static double cpuShare(long pid, Duration window) {
        long cpu0 = cpuMillis(pid);
        long t0 = System.nanoTime();
        try {
            Thread.sleep(window.toMillis()); // the measurement window itself, not a wait for a condition
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted measuring CPU of " + pid, e);
        }
        long cpu = cpuMillis(pid) - cpu0;
        double wallMillis = (System.nanoTime() - t0) / 1e6;
        return cpu / wallMillis;
    }

    private static String read(Path p) {
        try {
            return Files.readString(p);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + p, e);
        }
    }
}
