package org.virtionetd.virtio.memory;

/**
 * Records which guest pages the device wrote (vhost-user.rst, "Migration": one bit per 4 KiB page of
 * guest-physical memory, set atomically). Implemented by the transport that owns the log area.
 */
public interface DirtyLog {
    DirtyLog NONE = (gpa, length) -> { };

    void mark(long gpa, long length);
}
