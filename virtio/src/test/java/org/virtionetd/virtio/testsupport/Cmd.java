package org.virtionetd.virtio.testsupport;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs a command to completion with a timeout and returns its exit code and output (stdout and stderr merged).
 * Standard input is /dev/null: the harness runs without a terminal (CI has no stdin).
 * Output goes through a temporary file rather than a pipe, so a chatty command can never block on a full pipe,
 * and a command that outlives its timeout is killed (with its children) and reported with what it printed.
 * A missing tool fails the test: ip, ethtool, tcpdump, python3 and the like are part of the test bed.
 * For a process that runs in the background, see {@link Spawned}.
 */
public final class Cmd {
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(60);

    private Cmd() {
    }

    /** What a finished command did. */
    public record Result(List<String> command, int exitCode, String output, Duration took) {
        public boolean ok() {
            return exitCode == 0;
        }

        /** This result if the command exited 0; otherwise a {@link Failure} that shows the output. */
        public Result orFail() {
            if (!ok()) {
                throw new Failure(command + " exited " + exitCode + " after " + took.toMillis() + " ms; output:\n"
                        + indent(output));
            }
            return this;
        }
    }

    /** A command that failed, timed out or could not start. The message carries what it printed. */
    public static final class Failure extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public Failure(String message) {
            super(message);
        }

        public Failure(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** Runs argv; any exit code is returned. Throws {@link Failure} if it cannot start or outlives the timeout. */
    public static Result run(Duration timeout, List<String> argv) {
        Path out = null;
        long start = System.nanoTime();
        try {
            out = Files.createTempFile("vnd-cmd-", ".out");
            Process p = new ProcessBuilder(argv)
                    .redirectErrorStream(true)
                    .redirectOutput(out.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()))
                    .start();
            boolean finished = p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (!finished) {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
                p.waitFor(5, TimeUnit.SECONDS);
                throw new Failure(argv + " did not finish within " + timeout.toSeconds() + " s; output so far:\n"
                        + indent(read(out)));
            }
            return new Result(List.copyOf(argv), p.exitValue(), read(out), Duration.ofNanos(System.nanoTime() - start));
        } catch (IOException e) {
            throw new Failure("cannot run " + argv + " (missing tool?): " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure("interrupted while running " + argv, e);
        } finally {
            if (out != null) {
                try {
                    Files.deleteIfExists(out);
                } catch (IOException ignored) {
                    // a leftover temp file is harmless
                }
            }
        }
    }

    public static Result run(List<String> argv) {
        return run(DEFAULT_TIMEOUT, argv);
    }

    public static Result run(String... argv) {
        return run(DEFAULT_TIMEOUT, List.of(argv));
    }

    /** Runs argv, requires exit code 0 and returns the output. */
    public static String check(Duration timeout, String... argv) {
        return run(timeout, List.of(argv)).orFail().output();
    }

    public static String check(String... argv) {
        return check(DEFAULT_TIMEOUT, argv);
    }

    private static String read(Path file) {
        try {
            return new String(Files.readAllBytes(file), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file, e);
        }
    }

    /** Text indented with a bar, for output quoted inside a failure message. */
    public static String indent(String text) {
        if (text.isEmpty()) {
            return "    (no output)";
        }
        return text.stripTrailing().lines().map(l -> "    | " + l).reduce((a, b) -> a + "\n" + b).orElse("");
    }

    /** The last {@code n} lines of a text. */
    public static String tail(String text, int n) {
        List<String> lines = text.lines().toList();
        return String.join("\n", lines.subList(Math.max(0, lines.size() - n), lines.size()));
    }
}
