package org.virtionetd.glue.it;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

/**
 * A background process (a server, a device, QEMU) whose output goes to a log file; closing it ends the process
 * and its children. Processes still open when the JVM exits are ended by {@link Cleanup}.
 */
public final class Spawned implements AutoCloseable {
    private final List<String> command;
    private final Process process;
    private final Path log;

    private Spawned(List<String> command, Process process, Path log) {
        this.command = command;
        this.process = process;
        this.log = log;
    }

    /** Starts argv with stdin from /dev/null and stdout+stderr into {@code log}. */
    public static Spawned start(Path log, List<String> argv) {
        try {
            Process p = new ProcessBuilder(argv)
                    .redirectErrorStream(true)
                    .redirectOutput(log.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()))
                    .start();
            Spawned s = new Spawned(List.copyOf(argv), p, log);
            Cleanup.register(s);
            return s;
        } catch (IOException e) {
            throw new Cmd.Failure("cannot start " + argv + ": " + e.getMessage(), e);
        }
    }

    public List<String> command() {
        return command;
    }

    public Process process() {
        return process;
    }

    public long pid() {
        return process.pid();
    }

    public Path log() {
        return log;
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** Everything the process printed so far (carriage returns removed). */
    public String output() {
        return readLog(log);
    }

    /**
     * Waits (bounded) for an output line containing a match of {@code regex} (Matcher.find) and returns the whole
     * line. Fails at once if the process exits without printing it.
     */
    public String awaitLine(String regex, Duration timeout) {
        return await(regex, timeout).line();
    }

    /** Like {@link #awaitLine} but returns the match, for its groups. */
    public MatchResult awaitMatch(String regex, Duration timeout) {
        return await(regex, timeout).match();
    }

    private LogWatch.Hit await(String regex, Duration timeout) {
        return LogWatch.await(this::output, Pattern.compile(regex), null, timeout, process::isAlive,
                () -> "process " + command + (process.isAlive() ? " (running)" : " (exited " + exitCodeText() + ")"),
                0);
    }

    private String exitCodeText() {
        try {
            return "with " + process.exitValue();
        } catch (IllegalThreadStateException e) {
            return "?";
        }
    }

    /** Waits (bounded) for the process to exit by itself; returns its exit code. */
    public int awaitExit(Duration timeout) {
        try {
            if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new AssertionError("process " + command + " still running after " + timeout.toSeconds()
                        + " s; output tail:\n" + Cmd.indent(Cmd.tail(output(), 30)));
            }
            return process.exitValue();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted waiting for " + command, e);
        }
    }

    /** Ends the process: SIGTERM to it and its descendants, SIGKILL after 5 s. The log file stays. */
    @Override
    public void close() {
        Cleanup.unregister(this);
        List<ProcessHandle> children = process.descendants().toList();
        process.destroy();
        children.forEach(ProcessHandle::destroy);
        try {
            if (!process.waitFor(5, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        children.stream().filter(ProcessHandle::isAlive).forEach(ProcessHandle::destroyForcibly);
    }

    static String readLog(Path log) {
        try {
            return new String(Files.readAllBytes(log), StandardCharsets.UTF_8).replace("\r", "");
        } catch (NoSuchFileException e) {
            return "";
        } catch (IOException e) {
            return "(cannot read " + log + ": " + e.getMessage() + ")";
        }
    }
}
