package org.virtionetd.backends.tap.freebsd;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The seam between {@link FreeBsdTapBackend} and the FreeBSD kernel: one opened /dev/tapN (or /dev/vmnetN).
 * {@link FreeBsdNative} is the real one; tests use a fake. Semantics follow sys/net/if_tuntap.c.
 */
public interface FreeBsdTapOps extends AutoCloseable {

    /** Opens a device node such as /dev/tap0; opening it is what attaches us to the interface. */
    @FunctionalInterface
    interface Opener {
        FreeBsdTapOps open(String devicePath) throws IOException;
    }

    /** The interface name (TAPGIFNAME), e.g. "tap0", for SIOCGIFCAP / SIOCSIFCAP. */
    String interfaceName();

    /** The fd to poll for readability. */
    int fd();

    /** TAPSVNETHDR: 0, 10 or 12 (anything else is EINVAL). Throws if the kernel lacks the ioctl (before 14.0). */
    void setVnetHeaderLength(int length) throws IOException;

    /** TAPGVNETHDR. */
    int vnetHeaderLength() throws IOException;

    /** SIOCGIFCAP ifr_reqcap: the IFCAP_* bits the interface supports (a vnet header adds TAP_VNET_HDR_CAPS). */
    int supportedCapabilities() throws IOException;

    /** SIOCGIFCAP ifr_curcap: the IFCAP_* bits enabled. */
    int enabledCapabilities() throws IOException;

    /** SIOCSIFCAP: enables exactly {@code caps} (must be a subset of the supported ones). */
    void setEnabledCapabilities(int caps) throws IOException;

    /**
     * Writes one frame gathered from {@code slices[offset .. offset+count)}; returns bytes written, 0 if it would
     * block, -1 if the kernel refused this frame (it is dropped).
     */
    long write(ByteBuffer[] slices, int offset, int count) throws IOException;

    /** Reads one frame into {@code dst} from its position; returns its length, 0 if none is waiting. */
    int read(ByteBuffer dst) throws IOException;

    /**
     * Reads one frame with one readv(2) into the {@code count} iovec entries at native address {@code iov}; returns
     * its length, 0 if none is waiting. tunread (sys/net/if_tuntap.c) copies what fits and drops the rest, so the
     * caller gives room for the largest frame (TUNMRU plus header).
     */
    long readv(long iov, int count) throws IOException;

    @Override
    void close();
}
