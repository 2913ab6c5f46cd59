package org.virtionetd.virtio.testdriver;

import java.time.Duration;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * Bounded polling for things another thread (the device's event loop) does: checks the condition, parks
 * briefly, and after the timeout fails with a message that says what was seen, never a bare sleep.
 */
public final class Await {
    /** The default a device test waits for one step: generous for a loaded 2-core CI machine. */
    public static final Duration DEFAULT = Duration.ofSeconds(10);

    private Await() {
    }

    /**
     * Returns once {@code condition} holds; throws an AssertionError with {@code what} waited for and
     * {@code seen} (evaluated at the failure) after {@code timeout}.
     */
    public static void until(Duration timeout, BooleanSupplier condition, String what, Supplier<String> seen) {
        long deadline = System.nanoTime() + timeout.toNanos();
        long park = 20_000;
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - deadline > 0) {
                if (condition.getAsBoolean()) {
                    return;
                }
                throw new AssertionError("timed out after " + timeout.toMillis() + " ms waiting for " + what
                        + "; seen: " + seen.get());
            }
            LockSupport.parkNanos(park);
            park = Math.min(park * 2, 2_000_000);
        }
    }

    /**
     * Checks that {@code condition} keeps holding for all of {@code period} (something must NOT happen); throws an
     * AssertionError naming {@code what} and {@code seen} as soon as it stops holding.
     */
    public static void during(Duration period, BooleanSupplier condition, String what, Supplier<String> seen) {
        long end = System.nanoTime() + period.toNanos();
        do {
            if (!condition.getAsBoolean()) {
                throw new AssertionError("expected " + what + " for " + period.toMillis() + " ms; seen: " + seen.get());
            }
            LockSupport.parkNanos(1_000_000);
        } while (System.nanoTime() - end < 0);
    }
}
