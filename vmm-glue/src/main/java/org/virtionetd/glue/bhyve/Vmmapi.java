package org.virtionetd.glue.bhyve;

import java.io.IOException;

/**
 * The seam over FreeBSD's libvmmapi (vmmapi.h): what virtio-netd needs from a running bhyve VM. The real one is
 * {@link FreeBsdVmmapi} (JNA, FreeBSD only); tests use a fake. Everything above it ({@link BhyveGuestMemory},
 * {@link MsiNotifier}) is tested on Linux with that fake.
 */
public interface Vmmapi {
    /** vm_open(3): the VM that bhyve created under {@code /dev/vmm/<name>}. */
    VmContext open(String vmName) throws IOException;

    /** A VM opened by name. Closing it does not affect the VM. */
    interface VmContext extends AutoCloseable {
        String name();

        /**
         * vm_mmap_getnext: the mapping with the lowest start at or above {@code gpa}, or null when there is none
         * (ENOENT). Iterating from 0, each time from the end of the last one, visits every mapping (system memory
         * and device memory such as the boot ROM).
         */
        MemoryMapping nextMapping(long gpa) throws IOException;

        /** vm_get_memseg: the segment's length and name; system memory has an empty name. */
        MemorySegment segment(int segid) throws IOException;

        /**
         * A new file descriptor of {@code /dev/vmm/<name>}, owned by the caller. mmap(2) of it at offset = a
         * guest-physical address maps that guest memory (vmmdev_mmap_single: system memory only).
         */
        int openMemoryFd() throws IOException;

        /** vm_lapic_msi: delivers the MSI message {@code data} to {@code address} (a local APIC's). */
        void lapicMsi(long address, long data) throws IOException;

        @Override
        void close();
    }

    /** One entry of the VM's guest-physical map (struct vm_memmap). */
    record MemoryMapping(long gpa, int segid, long segoff, long length, int prot, int flags) {
        /** PROT_READ | PROT_WRITE as sys/mman.h (FreeBSD and Linux agree). */
        public static final int PROT_READ = 1;
        public static final int PROT_WRITE = 2;
    }

    /** A memory segment (struct vm_memseg); {@code name} is empty for system memory, e.g. "bootrom" otherwise. */
    record MemorySegment(int segid, long length, String name) {
        public boolean isSystemMemory() {
            return name.isEmpty();
        }
    }
}
