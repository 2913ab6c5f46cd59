package org.virtionetd.virtio.queue;

/** {@link NotificationCounters} that count, for tests that check which of the two a publish did. */
final class CountingNotifications implements NotificationCounters {
    long notified;
    long suppressed;

    @Override
    public void notified() {
        notified++;
    }

    @Override
    public void suppressed() {
        suppressed++;
    }
}
