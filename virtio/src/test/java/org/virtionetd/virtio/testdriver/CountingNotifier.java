package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.queue.Notifier;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;

/** A used-buffer notifier (2.7.10) that counts, so that tests can assert when the device notified. */
public final class CountingNotifier implements Notifier {
    private final String name;
    private final AtomicLong count = new AtomicLong();

    public CountingNotifier(String name) {
        this.name = name;
    }

    @Override
    public void notifyUsed() {
        count.incrementAndGet();
    }

    public long count() {
        return count.get();
    }

    /** Waits until at least {@code atLeast} notifications arrived. */
    public void await(long atLeast, Duration timeout) {
        Await.until(timeout, () -> count.get() >= atLeast, atLeast + " used buffer notifications on " + name,
                () -> count.get() + " notifications");
    }

    @Override
    public String toString() {
        return "CountingNotifier[" + name + ": " + count.get() + "]";
    }
}
