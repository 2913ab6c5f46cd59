package org.virtionetd.glue.bhyve;

import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A bhyve VM as libvmmapi would show it, backed by one sparse memfd standing for /dev/vmm/NAME: mmap of the memfd
 * at offset = guest-physical address sees the same bytes as mmap of the vmm device would. Mappings and segments are
 * what a test declares; vm_mmap_getnext is answered as the kernel does (lowest start at or above gpa). MSIs are
 * recorded.
 */
final class FakeVmmapi implements Vmmapi {
    final List<MemoryMapping> mappings = new ArrayList<>();
    final Map<Integer, MemorySegment> segments = new HashMap<>();
    final List<long[]> msis = new ArrayList<>();
    final int memfd;
    final String name;
    int openFds;
    int failMsiWithErrno;
    boolean opened;
    boolean closed;

    FakeVmmapi(String name, long deviceSize) throws IOException {
        this.name = name;
        this.memfd = LinuxNative.memfdCreate("fake-vmm-" + name, deviceSize);
    }

    FakeVmmapi map(long gpa, int segid, long length, int prot) {
        mappings.add(new MemoryMapping(gpa, segid, gpa, length, prot, 0));
        mappings.sort(Comparator.comparingLong(MemoryMapping::gpa));
        return this;
    }

    FakeVmmapi segment(int segid, long length, String segName) {
        segments.put(segid, new MemorySegment(segid, length, segName));
        return this;
    }

    @Override
    public VmContext open(String vmName) throws IOException {
        if (!vmName.equals(name)) {
            throw new IOException("vm_open(" + vmName + ") failed: errno 2");
        }
        opened = true;
        return new VmContext() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public MemoryMapping nextMapping(long gpa) {
                for (MemoryMapping m : mappings) {
                    if (Long.compareUnsigned(m.gpa(), gpa) >= 0) {
                        return m;
                    }
                }
                return null;
            }

            @Override
            public MemorySegment segment(int segid) throws IOException {
                MemorySegment s = segments.get(segid);
                if (s == null) {
                    throw new IOException("vm_get_memseg(" + segid + ") failed: errno 22");
                }
                return s;
            }

            @Override
            public int openMemoryFd() throws IOException {
                openFds++;
                return LinuxNative.dup(memfd);
            }

            @Override
            public void lapicMsi(long address, long data) throws IOException {
                if (failMsiWithErrno != 0) {
                    throw new IOException("vm_lapic_msi failed: errno " + failMsiWithErrno);
                }
                msis.add(new long[] {address, data});
            }

            @Override
            public void close() {
                closed = true;
            }
        };
    }
}
