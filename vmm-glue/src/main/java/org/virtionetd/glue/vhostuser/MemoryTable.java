package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.memory.DirtyLog;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.memory.MemoryRegion;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * The front-end's memory table (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG in vhost-user.rst): the mapped regions,
 * translation of front-end user addresses to guest-physical ones, and the reference counts of regions added again.
 * A request yields a {@link Change}; the session installs it, because the rings have to move with it.
 */
final class MemoryTable {
    /** The current memory; null until the first table. */
    private GuestMemory memory;
    /**
     * Extra references to a region added again identically by ADD_MEM_REG: QEMU keeps one vhost device per queue
     * pair on one connection, each with its own shadow of the memory table, so with queues=N every region
     * arrives N times (and is removed N times). Reset by SET_MEM_TABLE.
     */
    private final Map<MemoryRegion, Integer> extraRefs = new IdentityHashMap<>();

    /** The memory to install and the regions to unmap once the rings have moved to it. */
    record Change(GuestMemory next, List<MemoryRegion> retired) {
        void retire() {
            retired.forEach(MemoryRegion::close);
        }
    }

    /** True once a memory table arrived. */
    boolean mapped() {
        return memory != null;
    }

    /** The current memory, null before the first table. */
    GuestMemory current() {
        return memory;
    }

    /** The guest-physical address of a front-end user address, or {@link GuestMemory#NOWHERE}. */
    long guestAddressOfUser(long user) {
        return memory.guestAddressOfUser(user);
    }

    void install(Change change) {
        memory = change.next();
    }

    /** What the current memory marks dirty pages into (nothing before the first table). */
    void setDirtyLog(DirtyLog log) {
        if (memory != null) {
            memory.setDirtyLog(log);
        }
    }

    private List<MemoryRegion> regions() {
        return memory == null ? List.of() : memory.regions();
    }

    /** SET_MEM_TABLE: every region of the message mapped; the whole current table retires. */
    Change replaceTable(VhostUserMessage m) throws VhostUserException {
        int n = m.regionCount();
        List<MemoryRegion> mapped = new ArrayList<>();
        GuestMemory next;
        try {
            for (int i = 0; i < n; i++) {
                mapped.add(mapRegion(m, i, m.takeFd(i)));
            }
            next = memoryOf(mapped);
        } catch (VhostUserException e) {
            mapped.forEach(MemoryRegion::close);
            throw e;
        }
        List<MemoryRegion> retired = regions();
        extraRefs.clear();
        return new Change(next, retired);
    }

    /** ADD_MEM_REG: the region mapped and added; null if it was there already (one more reference). */
    Change addRegion(VhostUserMessage m) throws VhostUserException {
        List<MemoryRegion> current = regions();
        if (current.size() >= VhostUserServer.MAX_MEM_SLOTS) {
            throw VhostUserException.refused("ADD_MEM_REG: all " + VhostUserServer.MAX_MEM_SLOTS
                    + " memory slots are in use");
        }
        long gpa = m.regionGuestAddress(0);
        long size = m.regionSize(0);
        long user = m.regionUserAddress(0);
        for (MemoryRegion r : current) {
            if (r.guestAddress() == gpa && r.size() == size && r.userAddress() == user) {
                // The same region again (another queue pair's vhost device): one more reference, nothing to map.
                LinuxNative.close(m.takeFd(0));
                extraRefs.merge(r, 1, Integer::sum);
                return null;
            }
        }
        MemoryRegion region = mapRegion(m, 0, m.takeFd(0));
        List<MemoryRegion> all = new ArrayList<>(current);
        all.add(region);
        GuestMemory next;
        try {
            next = memoryOf(all);
        } catch (VhostUserException e) {
            region.close();
            throw e;
        }
        return new Change(next, List.of());
    }

    /** REM_MEM_REG: the region dropped from the table; null if another reference keeps it. */
    Change removeRegion(VhostUserMessage m) throws VhostUserException {
        // "identified by its guest address, user address and size. The mmap offset is ignored."
        long gpa = m.regionGuestAddress(0);
        long size = m.regionSize(0);
        long user = m.regionUserAddress(0);
        List<MemoryRegion> rest = new ArrayList<>();
        MemoryRegion removed = null;
        for (MemoryRegion r : regions()) {
            if (removed == null && r.guestAddress() == gpa && r.size() == size && r.userAddress() == user) {
                removed = r;
            } else {
                rest.add(r);
            }
        }
        if (removed == null) {
            throw VhostUserException.refused("REM_MEM_REG: no memory region at guest 0x" + Long.toHexString(gpa)
                    + " size 0x" + Long.toHexString(size) + " user 0x" + Long.toHexString(user));
        }
        Integer extra = extraRefs.get(removed);
        if (extra != null) {
            // Another queue pair's vhost device still has it.
            if (extra == 1) {
                extraRefs.remove(removed);
            } else {
                extraRefs.put(removed, extra - 1);
            }
            return null;
        }
        return new Change(memoryOf(rest), List.of(removed));
    }

    /** Maps one region described at index {@code i} of the message with {@code fd}; takes ownership of fd. */
    private static MemoryRegion mapRegion(VhostUserMessage m, int i, int fd) throws VhostUserException {
        long gpa = m.regionGuestAddress(i);
        long size = m.regionSize(i);
        long user = m.regionUserAddress(i);
        long offset = m.regionMmapOffset(i);
        String what = "memory region guest 0x" + Long.toHexString(gpa) + " size 0x" + Long.toHexString(size)
                + " user 0x" + Long.toHexString(user) + " mmap offset 0x" + Long.toHexString(offset);
        try {
            if (size <= 0 || offset < 0 || offset + size < offset) {
                throw VhostUserException.refused(what + ": size and offset must be positive and not wrap");
            }
            // Unsigned: the region must end at or below 2^64 - 1 in both address spaces.
            if (Long.compareUnsigned(gpa, -size) >= 0 || Long.compareUnsigned(user, -size) >= 0) {
                throw VhostUserException.refused(what + " wraps around the address space");
            }
            long fileSize = LinuxNative.fileSize(fd);
            // Mapping past the end of the file would succeed and then SIGBUS on first access.
            if (offset + size > fileSize) {
                throw VhostUserException.refused(what + " goes beyond the end of its fd (" + fileSize
                        + " bytes)");
            }
            return MemoryRegion.map(gpa, size, user, fd, offset);
        } catch (GuestMemoryException | IOException e) {
            LinuxNative.close(fd);
            throw VhostUserException.refused(what + ": " + e.getMessage(), e);
        } catch (VhostUserException e) {
            LinuxNative.close(fd);
            throw e;
        }
    }

    /** A memory from regions, refusing overlaps in guest-physical or front-end user addresses. */
    private static GuestMemory memoryOf(List<MemoryRegion> regions) throws VhostUserException {
        for (int i = 0; i < regions.size(); i++) {
            for (int j = i + 1; j < regions.size(); j++) {
                MemoryRegion a = regions.get(i);
                MemoryRegion b = regions.get(j);
                if (Long.compareUnsigned(a.userAddress() - b.userAddress(), b.size()) < 0
                        || Long.compareUnsigned(b.userAddress() - a.userAddress(), a.size()) < 0) {
                    throw VhostUserException.refused("memory regions overlap in user addresses: " + a + " and " + b);
                }
            }
        }
        try {
            return GuestMemory.of(regions);
        } catch (GuestMemoryException e) {
            throw VhostUserException.refused(e.getMessage(), e);
        }
    }

    /** At disconnect: no more dirty marking, every region unmapped. */
    void close() {
        if (memory != null) {
            memory.setDirtyLog(DirtyLog.NONE);
            memory.close();
        }
    }
}
