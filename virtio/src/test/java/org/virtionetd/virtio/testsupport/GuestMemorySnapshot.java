package org.virtionetd.virtio.testsupport;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.memory.MemoryRegion;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.LongPredicate;

/**
 * A copy of every byte of guest memory, region by region, to tell what changed between two moments: the dirty
 * log tests judge the device's marks against memory this way, not against its write calls (vhost-user.rst,
 * "Migration": what the front-end copies is decided by the log alone).
 */
public final class GuestMemorySnapshot {
    /** VHOST_LOG_PAGE: the granularity of the dirty log. */
    public static final long PAGE = 4096;

    /** A page that changed: its first changed byte, how many changed, and of those the ones not marked. */
    public record ChangedPage(long firstChanged, int changed, long firstUnmarked, int unmarked) {
        public long page() {
            return firstChanged / PAGE;
        }
    }

    private final long[] bases;
    private final byte[][] bytes;

    private GuestMemorySnapshot(long[] bases, byte[][] bytes) {
        this.bases = bases;
        this.bytes = bytes;
    }

    public static GuestMemorySnapshot of(GuestMemory memory) throws GuestMemoryException {
        List<MemoryRegion> regions = memory.regions();
        long[] bases = new long[regions.size()];
        byte[][] bytes = new byte[regions.size()][];
        for (int r = 0; r < bases.length; r++) {
            MemoryRegion region = regions.get(r);
            if (region.size() > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("region " + region + " is too large to copy");
            }
            bases[r] = region.guestAddress();
            bytes[r] = new byte[(int) region.size()];
            memory.read(bases[r], bytes[r], 0, bytes[r].length);
        }
        return new GuestMemorySnapshot(bases, bytes);
    }

    /**
     * The pages whose bytes differ in {@code later} (a snapshot of the same regions), in address order; a changed
     * byte for which {@code marked} is false counts as unmarked.
     */
    public List<ChangedPage> changedPages(GuestMemorySnapshot later, LongPredicate marked) {
        requireSameLayout(later);
        List<ChangedPage> out = new ArrayList<>();
        for (int r = 0; r < bytes.length; r++) {
            long base = bases[r];
            byte[] a = bytes[r];
            byte[] b = later.bytes[r];
            int i = 0;
            while (i < a.length) {
                int m = Arrays.mismatch(a, i, a.length, b, i, b.length);
                if (m < 0) {
                    break;
                }
                int at = i + m;
                int pageEnd = (int) Math.min(a.length, ((base + at) / PAGE + 1) * PAGE - base);
                int changed = 0;
                int unmarked = 0;
                long firstUnmarked = -1;
                for (int k = at; k < pageEnd; k++) {
                    if (a[k] != b[k]) {
                        changed++;
                        if (!marked.test(base + k) && unmarked++ == 0) {
                            firstUnmarked = base + k;
                        }
                    }
                }
                out.add(new ChangedPage(base + at, changed, firstUnmarked, unmarked));
                i = pageEnd;
            }
        }
        return out;
    }

    /** Whether any byte of {@code [gpa, gpa + length)} differs in {@code later}. */
    public boolean changedIn(GuestMemorySnapshot later, long gpa, long length) {
        requireSameLayout(later);
        for (int r = 0; r < bytes.length; r++) {
            long from = Math.max(gpa, bases[r]);
            long to = Math.min(gpa + length, bases[r] + bytes[r].length);
            for (long x = from; x < to; x++) {
                if (bytes[r][(int) (x - bases[r])] != later.bytes[r][(int) (x - bases[r])]) {
                    return true;
                }
            }
        }
        return false;
    }

    private void requireSameLayout(GuestMemorySnapshot later) {
        if (!Arrays.equals(bases, later.bases)) {
            throw new IllegalArgumentException("snapshots of different memory layouts: regions at "
                    + Arrays.toString(bases) + " and " + Arrays.toString(later.bases));
        }
    }
}
