package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemoryRegion;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Hands out guest-physical ranges the way a guest kernel's allocator might: scattered, with random gaps between
 * them, at odd addresses unless an alignment is asked for, so that a device that assumes contiguous or aligned
 * buffers fails its tests (the Firecracker test helpers' idea).
 *
 * <p>Allocation is next-fit from a roving pointer over a free map, so live ranges never overlap. Regions whose
 * guest-physical ranges touch are one free span: a buffer may then straddle the boundary (allowed by the spec,
 * a buffer is only "physically contiguous" to the guest), unless the caller asks for a range inside one region
 * (ring parts, which the device maps as one piece). Not thread-safe: one driver, one thread.
 */
public final class GuestAllocator {
    /** One live allocation. */
    public record Range(long address, long length) {
        public long end() {
            return address + length;
        }

        @Override
        public String toString() {
            return "[0x" + Long.toHexString(address) + ", 0x" + Long.toHexString(address + length) + ")";
        }
    }

    private final GuestMemory memory;
    private final Random random;
    private final int maxGap;
    /** Free spans: start -> end (exclusive); adjacent regions are merged into one span. */
    private final TreeMap<Long, Long> free = new TreeMap<>();
    /** Live allocations: start -> length. */
    private final TreeMap<Long, Long> live = new TreeMap<>();
    /** Guest addresses where one region ends and the next begins in the same span. */
    private final TreeSet<Long> boundaries = new TreeSet<>();
    private long rover;

    /**
     * @param seed   the random gaps and the descriptor order derive from it: a failing test is replayed with it
     * @param maxGap the largest gap (bytes) left before an allocation; 0 packs buffers tightly
     */
    public GuestAllocator(GuestMemory memory, long seed, int maxGap) {
        if (maxGap < 0) {
            throw new IllegalArgumentException("maxGap " + maxGap + " is negative");
        }
        this.memory = memory;
        this.random = new Random(seed);
        this.maxGap = maxGap;
        long spanStart = -1;
        long spanEnd = -1;
        for (MemoryRegion r : memory.regions()) {
            if (spanEnd == r.guestAddress()) {
                boundaries.add(r.guestAddress());
                spanEnd = r.guestEnd();
            } else {
                if (spanStart >= 0) {
                    free.put(spanStart, spanEnd);
                }
                spanStart = r.guestAddress();
                spanEnd = r.guestEnd();
            }
        }
        if (spanStart >= 0) {
            free.put(spanStart, spanEnd);
        }
        rover = free.isEmpty() ? 0 : free.firstKey();
    }

    /** A tightly scattered allocator with gaps up to 512 bytes. */
    public GuestAllocator(GuestMemory memory, long seed) {
        this(memory, seed, 512);
    }

    public GuestMemory memory() {
        return memory;
    }

    /** The shared random source (seeded), for callers that want reproducible choices. */
    public Random random() {
        return random;
    }

    /** Internal region boundaries: where a buffer may straddle two regions. */
    public List<Long> regionBoundaries() {
        return List.copyOf(boundaries);
    }

    /** A data buffer: any alignment, random gap before it, may straddle a region boundary. */
    public long allocate(long length) {
        return allocate(length, 1, true);
    }

    /**
     * Allocates {@code length} bytes aligned to {@code align} (a power of two), after a random gap.
     * With {@code mayCrossRegions} false the range lies inside one region (ring parts, indirect tables).
     */
    public long allocate(long length, long align, boolean mayCrossRegions) {
        if (length <= 0) {
            throw new IllegalArgumentException("allocation length " + length + " must be positive");
        }
        if (align <= 0 || Long.bitCount(align) != 1) {
            throw new IllegalArgumentException("alignment " + align + " is not a power of two");
        }
        long gap = maxGap == 0 ? 0 : random.nextInt(maxGap + 1);
        long at = find(length, align, gap, mayCrossRegions);
        if (at < 0 && gap > 0) {
            at = find(length, align, 0, mayCrossRegions);
        }
        if (at < 0) {
            throw new IllegalStateException("guest memory exhausted: no free range of " + length
                    + " bytes aligned to " + align + (mayCrossRegions ? "" : " inside one region")
                    + " (" + live.size() + " live allocations, free spans " + describeFree() + ")");
        }
        take(at, length);
        rover = at + length;
        return at;
    }

    /**
     * Allocates {@code length} bytes straddling a boundary between two adjacent regions (half on each side),
     * to prove that the device splits a buffer across regions. Fails if the memory has no such boundary free.
     */
    public long allocateAcrossBoundary(long length) {
        if (length < 2) {
            throw new IllegalArgumentException("a buffer across a region boundary needs at least 2 bytes, got "
                    + length);
        }
        for (long b : boundaries) {
            long at = b - length / 2;
            Map.Entry<Long, Long> span = free.floorEntry(at);
            if (span != null && span.getValue() >= at + length) {
                take(at, length);
                return at;
            }
        }
        throw new IllegalStateException("no free range of " + length + " bytes across a region boundary; "
                + "boundaries " + boundaries + ", free spans " + describeFree());
    }

    /** Returns an allocation to the free map. Freeing an address that is not live is a driver bug. */
    public void free(long address) {
        Long length = live.remove(address);
        if (length == null) {
            throw new IllegalStateException("free of 0x" + Long.toHexString(address) + " which is not allocated");
        }
        long start = address;
        long end = address + length;
        Map.Entry<Long, Long> before = free.floorEntry(start);
        if (before != null && before.getValue() == start) {
            start = before.getKey();
            free.remove(before.getKey());
        }
        Long afterEnd = free.get(end);
        if (afterEnd != null) {
            free.remove(end);
            end = afterEnd;
        }
        free.put(start, end);
    }

    /** The live allocations, sorted by address. */
    public List<Range> live() {
        List<Range> out = new ArrayList<>(live.size());
        live.forEach((a, l) -> out.add(new Range(a, l)));
        return Collections.unmodifiableList(out);
    }

    public long freeBytes() {
        long n = 0;
        for (Map.Entry<Long, Long> e : free.entrySet()) {
            n += e.getValue() - e.getKey();
        }
        return n;
    }

    private long find(long length, long align, long gap, boolean mayCross) {
        // Next-fit: the span holding the rover first (from the rover), then every span once, wrapping.
        List<Map.Entry<Long, Long>> order = new ArrayList<>();
        Map.Entry<Long, Long> first = free.floorEntry(rover);
        if (first != null && first.getValue() > rover) {
            order.add(first);
        }
        order.addAll(free.tailMap(rover, false).entrySet());
        order.addAll(free.headMap(rover, true).entrySet());
        for (Map.Entry<Long, Long> span : order) {
            long from = Math.max(span.getKey(), span == first ? rover : span.getKey());
            long at = alignUp(from + gap, align);
            while (at + length <= span.getValue()) {
                if (mayCross) {
                    return at;
                }
                Long inside = boundaries.higher(at);
                if (inside == null || inside >= at + length) {
                    return at;
                }
                at = alignUp(inside, align);
            }
        }
        return -1;
    }

    private void take(long at, long length) {
        Map.Entry<Long, Long> span = free.floorEntry(at);
        if (span == null || span.getValue() < at + length) {
            throw new IllegalStateException("range 0x" + Long.toHexString(at) + "+" + length + " is not free");
        }
        long start = span.getKey();
        long end = span.getValue();
        free.remove(start);
        if (start < at) {
            free.put(start, at);
        }
        if (at + length < end) {
            free.put(at + length, end);
        }
        live.put(at, length);
    }

    static long alignUp(long v, long align) {
        return (v + align - 1) & -align;
    }

    private String describeFree() {
        StringBuilder sb = new StringBuilder();
        int n = 0;
        for (Map.Entry<Long, Long> e : free.entrySet()) {
            if (n++ == 8) {
                sb.append(" ...");
                break;
            }
            sb.append(new Range(e.getKey(), e.getValue() - e.getKey()));
        }
        return sb.length() == 0 ? "none" : sb.toString();
    }
}
