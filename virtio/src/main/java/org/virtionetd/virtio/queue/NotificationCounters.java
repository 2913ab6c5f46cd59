package org.virtionetd.virtio.queue;

/**
 * Where {@link Virtqueue#publishUsedAndNotify} counts what it did: a used-buffer notification sent, or one the
 * driver's flags or used_event made unnecessary (2.7.10). Called by the queue's own thread, once per burst.
 */
public interface NotificationCounters {
    void notified();

    void suppressed();
}
