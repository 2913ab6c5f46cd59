package org.virtionetd.virtio.queue;

/**
 * How the device tells the driver that used buffers are ready (virtio 1.2, 2.7.10 "used buffer notification"):
 * a call eventfd under vhost-user, an MSI under bhyve, a counter in tests. Called at most once per burst.
 */
@FunctionalInterface
public interface Notifier {
    Notifier NONE = () -> { };

    void notifyUsed();
}
