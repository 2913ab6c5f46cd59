package org.virtionetd.virtio.device;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Logs a given kind of guest misbehaviour once per device, so that a hostile guest cannot flood the log; the
 * counters keep the totals (docs/security.md, "Guest data and the logs").
 */
public final class LogOnce {
    private final System.Logger logger;
    private final String prefix;
    private final Set<String> seen = ConcurrentHashMap.newKeySet();

    public LogOnce(System.Logger logger, String prefix) {
        this.logger = logger;
        this.prefix = prefix;
    }

    /** Logs {@code message} at WARNING if nothing was logged under {@code key} yet. */
    public void warn(String key, String message) {
        if (seen.add(key)) {
            logger.log(System.Logger.Level.WARNING, prefix + message + " (logged once; see counters for totals)");
        }
    }

    /** Forget what was logged (after a device reset a new driver deserves its own warnings). */
    public void clear() {
        seen.clear();
    }
}
