package org.virtionetd.glue.bhyve;

import org.virtionetd.virtio.queue.Notifier;

import java.io.IOException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A used-buffer notification (virtio 1.2, 2.7.10) delivered as the MSI-X message the guest programmed for the
 * queue's vector, injected with vm_lapic_msi. bhyve has no irqfd: the bhyve-side front-end owns the MSI-X table
 * and tells virtio-netd the vector's (address, data) whenever the guest changes the table, the queue's vector
 * (queue_msix_vector, 4.1.4.3) or the mask (docs/freebsd.md). Until then, and while the vector is masked or
 * VIRTIO_MSI_NO_VECTOR, notifications are suppressed and counted.
 *
 * <p>One native call per notification, and the device notifies at most once per burst; nothing is allocated.
 * A failed injection is counted and logged once, never thrown into the data path.
 */
public final class MsiNotifier implements Notifier {
    private static final System.Logger LOG = System.getLogger(MsiNotifier.class.getName());
    /** x86 MSI address: bits 31..20 are 0xFEE (Intel SDM vol. 3, 11.11.1 "Message Address Register Format"). */
    private static final long MSI_ADDRESS_MASK = 0xFFF0_0000L;
    private static final long MSI_ADDRESS_BASE = 0xFEE0_0000L;

    /** The programmed message of one vector. */
    public record MsiMessage(long address, long data) {
        public MsiMessage {
            if ((address & ~0xFFFF_FFFFL) != 0 || (address & MSI_ADDRESS_MASK) != MSI_ADDRESS_BASE) {
                throw new IllegalArgumentException("MSI address 0x" + Long.toHexString(address)
                        + " is not in the local APIC range 0xfee00000..0xfeefffff");
            }
            if ((data & ~0xFFFF_FFFFL) != 0) {
                throw new IllegalArgumentException("MSI data 0x" + Long.toHexString(data) + " is wider than 32 bits");
            }
        }
    }

    private final Vmmapi.VmContext vm;
    private final String what;
    private volatile MsiMessage route;
    private final AtomicLong delivered = new AtomicLong();
    private final AtomicLong suppressed = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private final AtomicBoolean failureLogged = new AtomicBoolean();

    /** {@code what} names the queue in messages, e.g. "testvm rx0". */
    public MsiNotifier(Vmmapi.VmContext vm, String what) {
        this.vm = vm;
        this.what = what;
    }

    /** The vector's message as the guest programmed it, unmasked. */
    public void route(MsiMessage message) {
        this.route = message;
    }

    /** Masked, VIRTIO_MSI_NO_VECTOR, or reset: no interrupt until routed again. */
    public void unroute() {
        this.route = null;
    }

    public MsiMessage current() {
        return route;
    }

    @Override
    public void notifyUsed() {
        MsiMessage m = route;
        if (m == null) {
            suppressed.incrementAndGet();
            return;
        }
        try {
            vm.lapicMsi(m.address(), m.data());
            delivered.incrementAndGet();
        } catch (IOException | RuntimeException e) {
            failed.incrementAndGet();
            if (failureLogged.compareAndSet(false, true)) {
                LOG.log(System.Logger.Level.WARNING, what + ": vm_lapic_msi(0x" + Long.toHexString(m.address())
                        + ", 0x" + Long.toHexString(m.data()) + ") failed: " + e.getMessage()
                        + " (counted; logged once)");
            }
        }
    }

    public long delivered() {
        return delivered.get();
    }

    public long suppressed() {
        return suppressed.get();
    }

    public long failed() {
        return failed.get();
    }
}
