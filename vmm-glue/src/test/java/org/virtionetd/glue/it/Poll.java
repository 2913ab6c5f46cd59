package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.LogWatch;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/** Bounded waiting for a condition (a socket appearing, a counter moving): never a bare sleep. */
public final class Poll {
    private Poll() {
    }

    /**
     * Checks {@code condition} every 50 ms until it holds; after {@code timeout} fails with an AssertionError
     * saying what was awaited and what {@code seen} reports at that moment.
     */
    public static void until(String what, Duration timeout, BooleanSupplier condition, Supplier<String> seen) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError("no " + what + " within " + timeout.toMillis() + " ms; seen: " + seen.get());
            }
            try {
                Thread.sleep(LogWatch.POLL_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted while waiting for " + what, e);
            }
        }
    }

    public static void until(String what, Duration timeout, BooleanSupplier condition) {
        until(what, timeout, condition, () -> "(nothing to show)");
    }
}
