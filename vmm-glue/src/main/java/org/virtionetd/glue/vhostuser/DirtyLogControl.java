package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.DirtyLog;
import org.virtionetd.virtio.os.EventFd;

import java.util.concurrent.atomic.LongAdder;

/**
 * The dirty log a front-end shared for migration (vhost-user.rst, "Migration"): the log of SET_LOG_BASE, the fd of
 * SET_LOG_FD, and whether memory writes are marked into the log now (VHOST_F_LOG_ALL).
 */
final class DirtyLogControl {
    /** What every log of this connection counts newly set bits into ({@link LifecycleCounters}). */
    private final LongAdder dirtyPages;
    private DirtyPageLog log;
    private EventFd logFd;

    DirtyLogControl(LongAdder dirtyPages) {
        this.dirtyPages = dirtyPages;
    }

    /** The log of the last SET_LOG_BASE, or null. */
    DirtyPageLog log() {
        return log;
    }

    /** What memory writes are marked into under {@code features}: the log while VHOST_F_LOG_ALL is on. */
    DirtyLog forFeatures(long features) {
        boolean on = VirtioFeature.has(features, VirtioFeature.VHOST_F_LOG_ALL) && log != null;
        return on ? log : DirtyLog.NONE;
    }

    /** Maps the log SET_LOG_BASE describes; it is not in use until {@link #replace}. */
    DirtyPageLog map(VhostUserMessage m) throws VhostUserException {
        return DirtyPageLog.map(m.takeFd(0), m.logSize(), m.logOffset(), dirtyPages);
    }

    /** Makes {@code next} the log and returns the old one (or null), to be closed once no ring writes to it. */
    DirtyPageLog replace(DirtyPageLog next) {
        DirtyPageLog old = log;
        log = next;
        return old;
    }

    /** SET_LOG_FD: kept (we never signal it) and closed with the session. */
    void setLogFd(EventFd fd) {
        if (logFd != null) {
            logFd.close();
        }
        logFd = fd;
    }

    /** At disconnect: the log unmapped and its fd closed. */
    void close() {
        if (log != null) {
            log.close();
        }
        if (logFd != null) {
            logFd.close();
        }
    }
}
