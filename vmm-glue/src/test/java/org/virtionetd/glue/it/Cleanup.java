package org.virtionetd.glue.it;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Last-resort cleanup: whatever a test left open (a QEMU, a namespace) is closed when the JVM exits, for example
 * when Surefire ends a hung fork. Normal cleanup is try-with-resources; this only catches what that missed.
 */
final class Cleanup {
    private static final Set<AutoCloseable> OPEN = Collections.synchronizedSet(new LinkedHashSet<>());

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(Cleanup::closeAll, "vnd-it-cleanup"));
    }

    private Cleanup() {
    }

    static void register(AutoCloseable c) {
        OPEN.add(c);
    }

    static void unregister(AutoCloseable c) {
        OPEN.remove(c);
    }

    private static void closeAll() {
        List<AutoCloseable> open;
        synchronized (OPEN) {
            open = new ArrayList<>(OPEN);
        }
        // Newest first: a QEMU inside a namespace goes before the namespace.
        Collections.reverse(open);
        for (AutoCloseable c : open) {
            try {
                c.close();
            } catch (Exception e) {
                System.err.println("vnd-it-cleanup: closing " + c + " failed: " + e);
            }
        }
    }
}
