package org.virtionetd.glue.bhyve;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.memory.MemoryRegion;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * The RAM of a running bhyve VM as a {@link GuestMemory}: every system-memory mapping of the VM (below 4 GiB and
 * above it) mapped from {@code /dev/vmm/<name>} at offset = its guest-physical address, which is how the vmm
 * device serves mmap (vmmdev_mmap_single). {@link MemoryRegion#map} fits as it is: it maps an fd at an offset and
 * takes ownership of the fd, so each region gets its own descriptor. Guest "user" addresses are the guest-physical
 * ones (there is no front-end address space here).
 *
 * <p>Device memory (the boot ROM, a framebuffer) is skipped: the vmm device refuses to map it and a NIC has no
 * business in it. The VM's map is read once; bhyve does not change system memory while the VM runs.
 */
public final class BhyveGuestMemory {
    /** bhyve maps two system-memory ranges and a few device ranges; more than this means a confused driver. */
    static final int MAX_MAPPINGS = 64;
    private static final long PAGE = 4096;

    private BhyveGuestMemory() {
    }

    /** The system-memory mappings of the VM, checked: page aligned, read-write, increasing, no wrap. */
    public static List<Vmmapi.MemoryMapping> systemMemory(Vmmapi.VmContext vm) throws IOException {
        List<Vmmapi.MemoryMapping> out = new ArrayList<>();
        long gpa = 0;
        for (int i = 0; ; i++) {
            Vmmapi.MemoryMapping m = vm.nextMapping(gpa);
            if (m == null) {
                break;
            }
            if (i == MAX_MAPPINGS) {
                throw new IOException("VM " + vm.name() + " reports more than " + MAX_MAPPINGS + " memory mappings");
            }
            String what = "VM " + vm.name() + " mapping at gpa 0x" + Long.toHexString(m.gpa()) + " length 0x"
                    + Long.toHexString(m.length());
            if (m.length() <= 0 || Long.compareUnsigned(m.gpa() + m.length(), m.gpa()) <= 0) {
                throw new IOException(what + ": empty or wraps around");
            }
            if (Long.compareUnsigned(m.gpa(), gpa) < 0) {
                throw new IOException(what + ": goes backwards (asked from 0x" + Long.toHexString(gpa) + ")");
            }
            if ((m.gpa() | m.length()) % PAGE != 0) {
                throw new IOException(what + ": not page aligned");
            }
            gpa = m.gpa() + m.length();
            Vmmapi.MemorySegment seg = vm.segment(m.segid());
            if (!seg.isSystemMemory()) {
                continue; // device memory: boot ROM, framebuffer
            }
            int rw = Vmmapi.MemoryMapping.PROT_READ | Vmmapi.MemoryMapping.PROT_WRITE;
            if ((m.prot() & rw) != rw) {
                throw new IOException(what + ": system memory without read-write protection (prot " + m.prot() + ")");
            }
            out.add(m);
        }
        if (out.isEmpty()) {
            throw new IOException("VM " + vm.name() + " has no system memory mapped (is bhyve running it?)");
        }
        return out;
    }

    /** Maps every system-memory range of the VM; on failure nothing stays mapped or open. */
    public static GuestMemory map(Vmmapi.VmContext vm) throws IOException {
        List<MemoryRegion> regions = new ArrayList<>();
        try {
            for (Vmmapi.MemoryMapping m : systemMemory(vm)) {
                int fd = vm.openMemoryFd();
                try {
                    regions.add(MemoryRegion.map(m.gpa(), m.length(), m.gpa(), fd, m.gpa()));
                } catch (GuestMemoryException e) {
                    org.virtionetd.virtio.os.LinuxNative.close(fd); // map() owns the fd only once it succeeds
                    throw e;
                }
            }
            return GuestMemory.of(regions);
        } catch (GuestMemoryException | RuntimeException e) {
            regions.forEach(MemoryRegion::close);
            throw new IOException("cannot map the memory of VM " + vm.name() + ": " + e.getMessage(), e);
        } catch (IOException e) {
            regions.forEach(MemoryRegion::close);
            throw e;
        }
    }
}
