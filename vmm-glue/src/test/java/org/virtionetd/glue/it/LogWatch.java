package org.virtionetd.glue.it;

import java.time.Duration;
import java.util.List;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.regex.MatchResult;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Bounded polling of a growing log for a line that matches, failing early when the writer has died. */
final class LogWatch {
    /** How often a log is re-read: short against a 3 s guest boot, long enough to cost nothing. */
    static final long POLL_MILLIS = 50;

    private LogWatch() {
    }

    /** A matching line: its index in the log (0-based), its text, and the match within it. */
    record Hit(int index, String line, MatchResult match) {
    }

    /**
     * Polls {@code text} until a complete line at or after {@code fromLine} contains a match of {@code wanted}.
     * Fails (AssertionError, with the log's tail) when a line matches {@code failFast}, when {@code alive}
     * turns false and a last read still has no match, or at the deadline.
     */
    static Hit await(Supplier<String> text, Pattern wanted, Pattern failFast, Duration timeout,
                             BooleanSupplier alive, Supplier<String> what, int fromLine) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean wasAlive = alive.getAsBoolean();
            String now = text.get();
            // Only complete lines count: a line still being written ("rc=" before its digits) must not match.
            // When the writer has died its last line is complete as it stands.
            String complete = wasAlive && !now.endsWith("\n") ? now.substring(0, now.lastIndexOf('\n') + 1) : now;
            List<String> lines = complete.lines().toList();
            for (int i = fromLine; i < lines.size(); i++) {
                Matcher m = wanted.matcher(lines.get(i));
                if (m.find()) {
                    return new Hit(i, lines.get(i), m.toMatchResult());
                }
            }
            if (failFast != null) {
                for (int i = fromLine; i < lines.size(); i++) {
                    if (failFast.matcher(lines.get(i)).find()) {
                        throw new AssertionError(what.get() + ": reported '" + lines.get(i).strip()
                                + "' while waiting for /" + wanted + "/; log tail:\n" + Cmd.indent(Cmd.tail(now, 40)));
                    }
                }
            }
            if (!wasAlive) {
                throw new AssertionError(what.get() + ": ended without printing /" + wanted + "/; log tail:\n"
                        + Cmd.indent(Cmd.tail(now, 40)));
            }
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError(what.get() + ": no line matching /" + wanted + "/ within "
                        + timeout.toMillis() + " ms; log tail:\n" + Cmd.indent(Cmd.tail(now, 40)));
            }
            try {
                Thread.sleep(POLL_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted while waiting for /" + wanted + "/", e);
            }
        }
    }
}
