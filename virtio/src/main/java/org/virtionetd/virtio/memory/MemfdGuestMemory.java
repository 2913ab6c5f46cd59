package org.virtionetd.virtio.memory;

import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Guest memory backed by memfds created here: what the test driver and benchmarks use, and what QEMU's
 * {@code memory-backend-memfd} gives us in production.
 */
public final class MemfdGuestMemory {
    private MemfdGuestMemory() {
    }

    /** One region of {@code size} bytes at guest-physical {@code base}. */
    public static GuestMemory create(long base, long size) throws GuestMemoryException {
        return create(new long[] {base}, new long[] {size});
    }

    /** Several regions, each its own memfd, e.g. to test buffers that cross a region boundary. */
    public static GuestMemory create(long[] bases, long[] sizes) throws GuestMemoryException {
        List<MemoryRegion> regions = new ArrayList<>();
        try {
            for (int i = 0; i < bases.length; i++) {
                int fd = LinuxNative.memfdCreate("guest-ram-" + i, sizes[i]);
                // user address: a made-up front-end address space, distinct from guest-physical, so that
                // tests catch a confusion of the two.
                regions.add(MemoryRegion.map(bases[i], sizes[i], 0x7f00_0000_0000L + bases[i], fd, 0));
            }
            return GuestMemory.of(regions);
        } catch (IOException | GuestMemoryException e) {
            regions.forEach(MemoryRegion::close);
            throw e instanceof GuestMemoryException ? (GuestMemoryException) e
                    : new GuestMemoryException(e.getMessage(), e);
        }
    }
}
