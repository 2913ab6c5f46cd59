package org.virtionetd.virtio.memory;

/** A guest-physical address or region that cannot be used; the message names the address and the reason. */
public final class GuestMemoryException extends Exception {
    private static final long serialVersionUID = 1L;

    public GuestMemoryException(String message) {
        super(message);
    }

    public GuestMemoryException(String message, Throwable cause) {
        super(message, cause);
    }
}
