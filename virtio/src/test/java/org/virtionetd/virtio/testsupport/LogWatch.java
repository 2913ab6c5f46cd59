package org.virtionetd.virtio.testsupport;

import java.time.Duration;
import java.util.List;
import java.util.function.BooleanSupplier;
import java.util.function.Predicate;
import java.util.function.Supplier;
import java.util.regex.MatchResult;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Bounded polling of a growing log for a line that matches, failing early when the writer has died. */
public final class LogWatch {
    /** How often a log is re-read: short against a 3 s guest boot, long enough to cost nothing. */
    public static final long POLL_MILLIS = 50;

    private LogWatch() {
    }

    /** A matching line: its index in the log (0-based), its text, and the match within it (null for a predicate). */
    public record Hit(int index, String line, MatchResult match) {
    }

    /**
     * Polls {@code text} until a complete line at or after {@code fromLine} contains a match of {@code wanted}.
     * Fails (AssertionError, with the log's tail) when a line matches {@code failFast}, when {@code alive}
     * turns false and a last read still has no match, or at the deadline.
     */
    public static Hit await(Supplier<String> text, Pattern wanted, Pattern failFast, Duration timeout,
                            BooleanSupplier alive, Supplier<String> what, int fromLine) {
        Hit hit = awaitLine(text, l -> wanted.matcher(l).find(), "/" + wanted + "/", "line matching /" + wanted + "/",
                failFast, timeout, alive, what, fromLine);
        Matcher m = wanted.matcher(hit.line());
        m.find();
        return new Hit(hit.index(), hit.line(), m.toMatchResult());
    }

    /**
     * Like {@link #await(Supplier, Pattern, Pattern, Duration, BooleanSupplier, Supplier, int)} for a line that
     * {@code wanted} accepts, described as {@code description} in the failure message.
     */
    public static Hit await(Supplier<String> text, Predicate<String> wanted, String description, Duration timeout,
                            BooleanSupplier alive, Supplier<String> what, int fromLine) {
        return awaitLine(text, wanted, description, "line with " + description, null, timeout, alive, what, fromLine);
    }

    private static Hit awaitLine(Supplier<String> text, Predicate<String> wanted, String wantedText,
                                 String lineText, Pattern failFast, Duration timeout, BooleanSupplier alive,
                                 Supplier<String> what, int fromLine) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean wasAlive = alive.getAsBoolean();
            String now = text.get();
            List<String> lines = completeLines(now, wasAlive);
            for (int i = fromLine; i < lines.size(); i++) {
                if (wanted.test(lines.get(i))) {
                    return new Hit(i, lines.get(i), null);
                }
            }
            if (failFast != null) {
                for (int i = fromLine; i < lines.size(); i++) {
                    if (failFast.matcher(lines.get(i)).find()) {
                        throw new AssertionError(what.get() + ": reported '" + lines.get(i).strip()
                                + "' while waiting for " + wantedText + "; log tail:\n"
                                + Cmd.indent(Cmd.tail(now, 40)));
                    }
                }
            }
            if (!wasAlive) {
                throw new AssertionError(what.get() + ": ended without printing " + wantedText + "; log tail:\n"
                        + Cmd.indent(Cmd.tail(now, 40)));
            }
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError(what.get() + ": no " + lineText + " within "
                        + timeout.toMillis() + " ms; log tail:\n" + Cmd.indent(Cmd.tail(now, 40)));
            }
            try {
                Thread.sleep(POLL_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted while waiting for " + wantedText, e);
            }
        }
    }

    /**
     * The complete lines of a log. While its writer lives, a last line without its newline is still being written
     * ("rc=" before its digits) and must not match; once the writer has died, its last line is complete as it is.
     */
    static List<String> completeLines(String now, boolean writerAlive) {
        String complete = writerAlive && !now.endsWith("\n") ? now.substring(0, now.lastIndexOf('\n') + 1) : now;
        return complete.lines().toList();
    }
}
