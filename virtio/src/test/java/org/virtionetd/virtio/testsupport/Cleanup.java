package org.virtionetd.virtio.testsupport;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/**
 * Last-resort cleanup: whatever a test left open (a QEMU, a namespace) is closed when the JVM exits, for example
 * when Surefire ends a hung fork. Normal cleanup is try-with-resources; this only catches what that missed.
 */
public final class Cleanup {
    private static final Set<AutoCloseable> OPEN = Collections.synchronizedSet(new LinkedHashSet<>());

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(Cleanup::closeAll, "vnd-test-cleanup"));
    }

    private Cleanup() {
    }

    public static void register(AutoCloseable c) {
        OPEN.add(c);
    }

    public static void unregister(AutoCloseable c) {
        OPEN.remove(c);
    }

    /** Removes a directory tree (a namespace's log directory, DPDK's runtime directory); best effort. */
    public static void deleteTree(Path root) {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(root)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort: a leftover file in /tmp is not worth failing a test for
                }
            });
        } catch (IOException ignored) {
            // same
        }
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
                System.err.println("vnd-test-cleanup: closing " + c + " failed: " + e);
            }
        }
    }
}
