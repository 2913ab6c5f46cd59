package org.virtionetd.virtio.testsupport;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

/**
 * A background process (a server, a device, QEMU, a listener, tcpdump) whose output goes to a log file rather
 * than a pipe (a chatty process never blocks on a full pipe, and the log is there to read after a failure); its
 * output lines are awaited with a deadline, failing early when it exits. Closing it ends the process and its
 * children. Processes still open when the JVM exits are ended by {@link Cleanup}.
 */
public final class Spawned implements AutoCloseable {
    private final List<String> command;
    private final Process process;
    private final Path log;
    /** Lines before this index were passed by {@link #next}. */
    private int nextLine;

    private Spawned(List<String> command, Process process, Path log) {
        this.command = command;
        this.process = process;
        this.log = log;
    }

    /** Starts argv with stdin from /dev/null and stdout+stderr into {@code log}. */
    public static Spawned start(Path log, List<String> argv) {
        return start(log, argv, ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()));
    }

    /** Starts argv with stdin a pipe that {@link #send} writes to (an interactive program), output into {@code log}. */
    public static Spawned startWithInput(Path log, List<String> argv) {
        return start(log, argv, ProcessBuilder.Redirect.PIPE);
    }

    private static Spawned start(Path log, List<String> argv, ProcessBuilder.Redirect input) {
        try {
            Process p = new ProcessBuilder(argv)
                    .redirectErrorStream(true)
                    .redirectOutput(log.toFile())
                    .redirectInput(input)
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

    /** The complete lines the process printed so far. */
    public List<String> lines() {
        return LogWatch.completeLines(output(), process.isAlive());
    }

    /**
     * Writes {@code line} and a newline to the standard input of a process started by {@link #startWithInput};
     * fails with the output's tail if the process does not take it.
     */
    public void send(String line) {
        try {
            OutputStream in = process.getOutputStream();
            in.write((line + "\n").getBytes(StandardCharsets.US_ASCII));
            in.flush();
        } catch (IOException e) {
            throw new AssertionError(command + " did not take '" + line + "' (" + (process.isAlive() ? "running"
                    : "exited") + "): " + e.getMessage() + "\n" + Cmd.indent(Cmd.tail(output(), 30)), e);
        }
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

    /**
     * Waits (bounded) for an output line that {@code wanted} accepts (described as {@code description} in the
     * failure message) and returns it. Fails at once if the process exits without printing it.
     */
    public String awaitLine(Predicate<String> wanted, String description, Duration timeout) {
        return LogWatch.await(this::output, wanted, description, timeout, process::isAlive, this::describe, 0).line();
    }

    /**
     * Like {@link #awaitLine(Predicate, String, Duration)}, but only among the lines after the one the previous
     * call of this method returned: for output read in order, such as tcpdump's one line per packet.
     */
    public String next(Predicate<String> wanted, String description, Duration timeout) {
        LogWatch.Hit hit = LogWatch.await(this::output, wanted, description, timeout, process::isAlive,
                this::describe, nextLine);
        nextLine = hit.index() + 1;
        return hit.line();
    }

    private LogWatch.Hit await(String regex, Duration timeout) {
        return LogWatch.await(this::output, Pattern.compile(regex), null, timeout, process::isAlive, this::describe,
                0);
    }

    private String describe() {
        return "process " + command + (process.isAlive() ? " (running)" : " (exited " + exitCodeText() + ")");
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

    @Override
    public String toString() {
        return describe();
    }

    /** Ends the process: SIGTERM to it and its descendants, SIGKILL after 5 s. The log file stays. */
    @Override
    public void close() {
        Cleanup.unregister(this);
        try {
            process.getOutputStream().close();
        } catch (IOException ignored) {
            // the pipe (if any) is gone with the process
        }
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

    /** The text of a log file (carriage returns removed), empty while it does not exist. */
    public static String readLog(Path log) {
        try {
            return new String(Files.readAllBytes(log), StandardCharsets.UTF_8).replace("\r", "");
        } catch (NoSuchFileException e) {
            return "";
        } catch (IOException e) {
            return "(cannot read " + log + ": " + e.getMessage() + ")";
        }
    }
}
