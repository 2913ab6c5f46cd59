package org.virtionetd.glue.it;

import java.util.function.Supplier;

/**
 * Makes a failure say what was seen: runs a test body and, when it fails, rethrows with {@code seen} appended
 * (serial log tail, device log tail, {@code virtio-netd stats}), gathered while the guest and device still run.
 */
public final class Failures {
    private Failures() {
    }

    /** A test body that may throw anything. */
    @FunctionalInterface
    public interface Body {
        void run() throws Exception;
    }

    public static void withContext(Supplier<String> seen, Body body) {
        try {
            body.run();
        } catch (AssertionError | Exception e) {
            String context;
            try {
                context = seen.get();
            } catch (RuntimeException | AssertionError inner) {
                context = "(gathering the context failed: " + inner + ")";
            }
            AssertionError wrapped = new AssertionError(e.getMessage() + "\n---- seen at the failure:\n" + context, e);
            throw wrapped;
        }
    }
}
