package org.virtionetd.glue.it;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

/**
 * Live migration between two QEMUs on this host through their QMP sockets: the destination started with
 * {@link GuestVm.Builder#incoming}, the source told to {@code migrate} to the same URI, then polled with
 * {@code query-migrate} (QEMU's docs/devel/migration.rst; the states are those of MigrationStatus in
 * qapi/migration.json).
 */
public final class Migration {
    /** Under TCG on two shared cores a 512 MiB guest moves in 1-3 s; the rest is margin for a busy machine. */
    public static final Duration TIMEOUT = Duration.ofSeconds(150);

    private Migration() {
    }

    /** Waits (bounded) until QEMU answers on {@code qmp}; returns its {@code query-status} answer. */
    public static Map<String, Object> awaitQmp(Path qmp, GuestVm vm, Duration timeout) {
        Object[] answer = new Object[1];
        Poll.until("QMP of " + vm + " at " + qmp, timeout, () -> {
            if (!vm.isAlive()) {
                return true;
            }
            try {
                answer[0] = answer(GuestVm.qmp(qmp, "query-status"));
                return true;
            } catch (RuntimeException e) {
                return false;
            }
        }, () -> "QEMU " + (vm.isAlive() ? "running" : "exited"));
        if (answer[0] == null) {
            throw new AssertionError("QEMU exited before answering QMP: " + vm);
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) answer[0];
        return m;
    }

    /** The {@code return} object of the last answer printed by {@link GuestVm#qmp}. */
    static Object answer(String qmpOutput) {
        String last = VirtioNetd.lastLine(qmpOutput);
        int json = last.indexOf(" {\"");
        if (json < 0) {
            throw new AssertionError("no QMP answer in: " + qmpOutput);
        }
        Map<String, Object> m = JsonText.object(last.substring(json + 1));
        if (!m.containsKey("return")) {
            throw new AssertionError("QMP answered an error: " + last);
        }
        return m.get("return");
    }

    /**
     * Starts the migration of the VM behind {@code sourceQmp} to {@code uri} at up to {@code bytesPerSecond}
     * (QEMU 7.2's default of 32 MiB/s would make each hop last many seconds) with a downtime limit of 500 ms.
     */
    public static void start(Path sourceQmp, String uri, long bytesPerSecond) {
        GuestVm.qmp(sourceQmp,
                GuestVm.qmpCommand("migrate-set-parameters", "{\"max-bandwidth\": " + bytesPerSecond
                        + ", \"downtime-limit\": 500}"),
                GuestVm.qmpCommand("migrate", "{\"uri\": \"" + uri + "\"}"));
    }

    /** {@code query-migrate} of the source. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> query(Path sourceQmp) {
        return (Map<String, Object>) answer(GuestVm.qmp(sourceQmp, "query-migrate"));
    }

    /** Waits (bounded) until the migration is {@code completed}, {@code failed} or {@code cancelled}. */
    public static Map<String, Object> awaitEnd(Path sourceQmp, Duration timeout) {
        Object[] last = new Object[1];
        Poll.until("the end of the migration from " + sourceQmp, timeout, () -> {
            Map<String, Object> q = query(sourceQmp);
            last[0] = q;
            Object status = q.get("status");
            return "completed".equals(status) || "failed".equals(status) || "cancelled".equals(status);
        }, () -> "query-migrate: " + last[0]);
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) last[0];
        return m;
    }

    /** The {@code status} of {@code query-status} ("running", "inmigrate", "postmigrate", "paused"...). */
    public static String runState(Path qmp) {
        Object r = answer(GuestVm.qmp(qmp, "query-status"));
        return String.valueOf(((Map<?, ?>) r).get("status"));
    }
}
