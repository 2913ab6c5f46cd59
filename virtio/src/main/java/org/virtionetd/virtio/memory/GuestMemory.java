package org.virtionetd.virtio.memory;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * The guest's RAM as this process sees it: a sorted set of non-overlapping {@link MemoryRegion}s.
 *
 * <p>Every guest-physical address the guest hands us is checked here. A location is encoded as a long,
 * {@code chunkId << 32 | offsetInChunk}, so that the data path can carry it without allocating; {@link #chunk(int)}
 * gives the little-endian ByteBuffer of that chunk for absolute gets and puts, and {@link GuestViews} makes
 * reusable position/limit views for scatter/gather I/O.
 *
 * <p>Instances are immutable: adding or removing a region (vhost-user ADD_MEM_REG / REM_MEM_REG) makes a new one.
 */
public final class GuestMemory implements AutoCloseable {
    /** Returned by {@link #locate} when the range is not inside one chunk of guest memory. */
    public static final long NOWHERE = -1L;

    private final MemoryRegion[] regions;
    /** Flattened chunk table: chunk id -> buffer, its guest address and its length. */
    private final ByteBuffer[] chunks;
    private final long[] chunkGuest;
    private final long[] chunkLength;
    /** Chunk id -> index in {@link #regions()} of the region it belongs to. */
    private final int[] chunkRegion;
    private volatile DirtyLog dirtyLog = DirtyLog.NONE;
    /** The chunk of the last successful lookup (a hint, see chunkOf). */
    private int lastChunk = -1;

    private GuestMemory(MemoryRegion[] regions) {
        this.regions = regions;
        List<ByteBuffer> bufs = new ArrayList<>();
        List<long[]> bounds = new ArrayList<>();
        for (int ri = 0; ri < regions.length; ri++) {
            MemoryRegion r = regions[ri];
            for (int i = 0; i < r.chunkCount(); i++) {
                ByteBuffer c = r.chunk(i);
                bufs.add(c);
                bounds.add(new long[] {r.guestAddress() + i * MemoryRegion.CHUNK_SIZE, c.capacity(), ri});
            }
        }
        this.chunks = bufs.toArray(new ByteBuffer[0]);
        this.chunkGuest = new long[chunks.length];
        this.chunkLength = new long[chunks.length];
        this.chunkRegion = new int[chunks.length];
        for (int i = 0; i < chunks.length; i++) {
            chunkGuest[i] = bounds.get(i)[0];
            chunkLength[i] = bounds.get(i)[1];
            chunkRegion[i] = (int) bounds.get(i)[2];
        }
    }

    /** Builds a memory from regions; overlapping regions are refused with both named. */
    public static GuestMemory of(List<MemoryRegion> regions) throws GuestMemoryException {
        MemoryRegion[] sorted = regions.toArray(new MemoryRegion[0]);
        java.util.Arrays.sort(sorted, Comparator.comparingLong(MemoryRegion::guestAddress));
        for (int i = 1; i < sorted.length; i++) {
            if (sorted[i].guestAddress() < sorted[i - 1].guestEnd()) {
                throw new GuestMemoryException("memory regions overlap: " + sorted[i - 1] + " and " + sorted[i]);
            }
        }
        return new GuestMemory(sorted);
    }

    public static GuestMemory empty() {
        return new GuestMemory(new MemoryRegion[0]);
    }

    public List<MemoryRegion> regions() {
        return List.of(regions);
    }

    public int chunkCount() {
        return chunks.length;
    }

    /** The whole chunk, little-endian; use absolute gets/puts only (the buffer is shared). */
    public ByteBuffer chunk(int chunkId) {
        return chunks[chunkId];
    }

    /** The index in {@link #regions()} (sorted by guest address) of the region chunk {@code chunkId} is part of. */
    public int regionOfChunk(int chunkId) {
        return chunkRegion[chunkId];
    }

    public static int chunkId(long location) {
        return (int) (location >>> 32);
    }

    public static int offset(long location) {
        return (int) location;
    }

    /** Index of the chunk holding gpa, or -1. Binary search: regions are few but lookups are per descriptor. */
    private int chunkOf(long gpa) {
        // Most lookups land in the chunk of the previous one. The hint is racy on purpose: any value a thread
        // reads is a valid index (or -1 fails the bounds check), and it is checked before it is trusted.
        int hint = lastChunk;
        if (hint >= 0 && hint < chunkGuest.length && Long.compareUnsigned(gpa - chunkGuest[hint], chunkLength[hint]) < 0
                && Long.compareUnsigned(gpa, chunkGuest[hint]) >= 0) {
            return hint;
        }
        int found = search(gpa);
        if (found >= 0) {
            lastChunk = found;
        }
        return found;
    }

    private int search(long gpa) {
        int lo = 0;
        int hi = chunks.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            long start = chunkGuest[mid];
            if (Long.compareUnsigned(gpa, start) < 0) {
                hi = mid - 1;
            } else if (Long.compareUnsigned(gpa - start, chunkLength[mid]) >= 0) {
                lo = mid + 1;
            } else {
                return mid;
            }
        }
        return -1;
    }

    /**
     * The location of {@code [gpa, gpa + length)} if it lies inside one chunk, else {@link #NOWHERE}.
     * Rings, descriptor tables and headers are looked up this way.
     */
    public long locate(long gpa, long length) {
        if (length < 0) {
            return NOWHERE;
        }
        int c = chunkOf(gpa);
        if (c < 0) {
            return NOWHERE;
        }
        long off = gpa - chunkGuest[c];
        if (length > chunkLength[c] - off) {
            return NOWHERE;
        }
        return ((long) c << 32) | off;
    }

    /**
     * Splits {@code [gpa, gpa + length)} into pieces that each lie in one chunk, writing their locations and
     * lengths from index {@code at}. Returns the number of pieces written, -1 if any byte is outside guest memory
     * (or the range wraps), -2 if more than {@code max} pieces would be needed.
     */
    public int resolve(long gpa, long length, long[] locations, int[] lengths, int at, int max) {
        if (length == 0) {
            return 0;
        }
        if (length < 0 || gpa + length - 1 < gpa && gpa + length != 0) {
            return -1;
        }
        int n = 0;
        long cursor = gpa;
        long left = length;
        while (left > 0) {
            int c = chunkOf(cursor);
            if (c < 0) {
                return -1;
            }
            if (n == max) {
                return -2;
            }
            long off = cursor - chunkGuest[c];
            long piece = Math.min(left, chunkLength[c] - off);
            locations[at + n] = ((long) c << 32) | off;
            lengths[at + n] = (int) piece;
            n++;
            cursor += piece;
            left -= piece;
        }
        return n;
    }

    /** True if every byte of the range is guest memory. */
    public boolean contains(long gpa, long length) {
        long cursor = gpa;
        long left = length;
        while (left > 0) {
            int c = chunkOf(cursor);
            if (c < 0) {
                return false;
            }
            long piece = Math.min(left, chunkLength[c] - (cursor - chunkGuest[c]));
            cursor += piece;
            left -= piece;
        }
        return true;
    }

    /**
     * Translates a front-end virtual address (vhost-user ring addresses) to a guest-physical one,
     * or returns {@link #NOWHERE} if no region holds it.
     */
    public long guestAddressOfUser(long userAddress) {
        for (MemoryRegion r : regions) {
            long delta = userAddress - r.userAddress();
            if (Long.compareUnsigned(delta, r.size()) < 0) {
                return r.guestAddress() + delta;
            }
        }
        return NOWHERE;
    }

    /** A fresh buffer over one contiguous range (control path and tests; allocates). */
    public ByteBuffer slice(long gpa, int length) throws GuestMemoryException {
        long loc = locate(gpa, length);
        if (loc == NOWHERE) {
            throw new GuestMemoryException("guest range 0x" + Long.toHexString(gpa) + "+" + length
                    + " is not inside one region of guest memory");
        }
        return chunks[chunkId(loc)].slice(offset(loc), length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
    }

    /** Copies guest bytes out; fails if any byte is outside guest memory. */
    public void read(long gpa, byte[] dst, int dstOffset, int length) throws GuestMemoryException {
        long[] locs = new long[16];
        int[] lens = new int[16];
        int n = resolve(gpa, length, locs, lens, 0, 16);
        if (n < 0) {
            throw new GuestMemoryException("guest range 0x" + Long.toHexString(gpa) + "+" + length
                    + " is outside guest memory");
        }
        for (int i = 0; i < n; i++) {
            chunks[chunkId(locs[i])].get(offset(locs[i]), dst, dstOffset, lens[i]);
            dstOffset += lens[i];
        }
    }

    /** Copies bytes into guest memory; fails if any byte is outside guest memory. */
    public void write(long gpa, byte[] src, int srcOffset, int length) throws GuestMemoryException {
        long[] locs = new long[16];
        int[] lens = new int[16];
        int n = resolve(gpa, length, locs, lens, 0, 16);
        if (n < 0) {
            throw new GuestMemoryException("guest range 0x" + Long.toHexString(gpa) + "+" + length
                    + " is outside guest memory");
        }
        for (int i = 0; i < n; i++) {
            chunks[chunkId(locs[i])].put(offset(locs[i]), src, srcOffset, lens[i]);
            srcOffset += lens[i];
        }
        markDirty(gpa, length);
    }

    /** Where the device's writes are recorded for live migration (vhost-user LOG_SHMFD); none by default. */
    public void setDirtyLog(DirtyLog log) {
        this.dirtyLog = log == null ? DirtyLog.NONE : log;
    }

    public DirtyLog dirtyLog() {
        return dirtyLog;
    }

    /** Records a device write to guest memory; a no-op unless dirty logging is on. */
    public void markDirty(long gpa, long length) {
        DirtyLog log = dirtyLog;
        if (log != DirtyLog.NONE) {
            log.mark(gpa, length);
        }
    }

    /** Unmaps every region (and closes their fds). */
    @Override
    public void close() {
        for (MemoryRegion r : regions) {
            r.close();
        }
    }
}
