package org.virtionetd.virtio.fuzz;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.IntFunction;
import java.util.function.IntPredicate;

import static org.virtionetd.virtio.fuzz.ChainWalkFuzzTest.check;

/**
 * What a packed ring's device positions and used descriptors must be after the chains {@link PackedRingFuzzTest}
 * saw taken, given back and used (virtio 1.2, 2.8): the avail position moves past each chain's ring descriptors
 * (2.8.6); a used descriptor is written at the used position with the buffer ID and length, AVAIL and USED equal to
 * the used wrap counter and WRITE when bytes were written, and the used position skips the chain's descriptors;
 * with IN_ORDER (2.8.9) chains used in a row with nothing written become one used descriptor at the batch's first
 * slot with the last chain's ID (a batch covers at most the ring). Both counters flip at the end of the ring.
 *
 * <p>Positions are in the device's 16-bit form: slot, wrap counter in bit 15.
 */
final class RingModel {
    static final int WRAP = 1 << 15;

    private final int size;
    private final boolean inOrder;
    /** {id, len, flags, addr} of a ring slot as it is in guest memory now. */
    private final IntFunction<long[]> slot;

    private int availSlot;
    private boolean availWrap;
    private int usedSlot;
    private boolean usedWrap;
    /** Ring descriptors of each chain taken and not yet used or given back, oldest first. */
    private final ArrayDeque<Integer> taken = new ArrayDeque<>();
    /** The slots the chains used so far cover, batched or not. */
    private int coverSlot;
    private boolean coverWrap;
    private boolean batchOpen;
    private int batchId;
    private int batchSlots;
    /** Used descriptors written since the last publish: {slot, id, len, wrap}. */
    private final List<int[]> entries = new ArrayList<>();
    private final int[] writes;
    private final boolean[] driverTouched;
    private final List<Integer> touchedList = new ArrayList<>();
    /** Slots the chains used cover, as they were before the device used them. */
    private final Map<Integer, long[]> before = new HashMap<>();
    /** The used positions since the last notification decision: from (slot, wrap), this many. */
    private int windowSlot;
    private boolean windowWrap;
    private long windowLength;

    RingModel(int size, boolean inOrder, IntFunction<long[]> slot) {
        this.size = size;
        this.inOrder = inOrder;
        this.slot = slot;
        this.writes = new int[size];
        this.driverTouched = new boolean[size];
    }

    int avail() {
        return availSlot | (availWrap ? WRAP : 0);
    }

    int availSlot() {
        return availSlot;
    }

    boolean availWrap() {
        return availWrap;
    }

    int used() {
        return usedSlot | (usedWrap ? WRAP : 0);
    }

    /** The device starts (or resumes) here with nothing in flight. */
    void setPosition(int avail, int used) {
        availSlot = avail & (WRAP - 1);
        availWrap = (avail & WRAP) != 0;
        usedSlot = coverSlot = windowSlot = used & (WRAP - 1);
        usedWrap = coverWrap = windowWrap = (used & WRAP) != 0;
        windowLength = 0;
        taken.clear();
        batchOpen = false;
        clearBurst();
    }

    void took(int slots) {
        taken.addLast(slots);
        availSlot += slots;
        if (availSlot >= size) {
            availSlot -= size;
            availWrap = !availWrap;
        }
    }

    void gaveBack(int chains) {
        for (int i = 0; i < chains; i++) {
            availSlot -= taken.removeLast();
            if (availSlot < 0) {
                availSlot += size;
                availWrap = !availWrap;
            }
        }
    }

    /** The driver rewrote a ring slot: what the device wrote there in this burst can no longer be seen. */
    void driverWrote(int s) {
        if (!driverTouched[s]) {
            driverTouched[s] = true;
            touchedList.add(s);
        }
    }

    /** The oldest chain taken is used with {@code len} bytes written; call before the device's addUsed. */
    void used(int id, int len) {
        check(!taken.isEmpty(), "the fuzz target used more chains than it took");
        int slots = taken.removeFirst();
        for (int i = 0; i < slots; i++) {
            before.putIfAbsent(coverSlot, slot.apply(coverSlot));
            if (++coverSlot == size) {
                coverSlot = 0;
                coverWrap = !coverWrap;
            }
        }
        if (inOrder) {
            if (len == 0) {
                if (batchOpen && batchSlots + slots > size) {
                    closeBatch();
                }
                batchSlots = batchOpen ? batchSlots + slots : slots;
                batchId = id;
                batchOpen = true;
                return;
            }
            closeBatch();
        }
        write(id, len, slots);
    }

    private void closeBatch() {
        if (batchOpen) {
            batchOpen = false;
            write(batchId, 0, batchSlots);
        }
    }

    private void write(int id, int len, int slots) {
        entries.add(new int[] {usedSlot, id & 0xffff, len, usedWrap ? 1 : 0});
        writes[usedSlot]++;
        usedSlot += slots;
        if (usedSlot >= size) {
            usedSlot -= size;
            usedWrap = !usedWrap;
        }
        windowLength += slots;
    }

    /**
     * The device published: checks every used descriptor of the burst and that the slots its chains cover but no
     * used descriptor holds are as the driver left them. Slots written twice in a burst (a driver that refilled
     * slots it had not got back, so the device went round the ring) or rewritten by the driver are not judged.
     */
    void published() {
        closeBatch();
        check(taken.isEmpty(), "the fuzz target published with chains neither used nor given back");
        check(coverSlot == usedSlot && coverWrap == usedWrap, "used position 0x" + Integer.toHexString(used())
                + " is not past the chains used");
        for (int[] e : entries) {
            if (writes[e[0]] != 1 || driverTouched[e[0]]) {
                continue;
            }
            long[] d = slot.apply(e[0]);
            int flags = (e[3] != 0 ? 0x8080 : 0) | (e[2] != 0 ? 2 : 0);
            check(d[0] == e[1] && (int) d[1] == e[2] && d[2] == flags, "used descriptor at slot " + e[0] + " holds id "
                    + d[0] + " len " + d[1] + " flags 0x" + Long.toHexString(d[2]) + ", expected id " + e[1] + " len "
                    + e[2] + " flags 0x" + Integer.toHexString(flags));
        }
        for (Map.Entry<Integer, long[]> b : before.entrySet()) {
            int s = b.getKey();
            if (writes[s] == 0 && !driverTouched[s]) {
                long[] now = slot.apply(s);
                check(java.util.Arrays.equals(now, b.getValue()), "slot " + s + " skipped by the used position was"
                        + " rewritten: flags 0x" + Long.toHexString(b.getValue()[2]) + " -> 0x"
                        + Long.toHexString(now[2]));
            }
        }
        clearBurst();
    }

    private void clearBurst() {
        for (int[] e : entries) {
            writes[e[0]] = 0;
        }
        entries.clear();
        for (int s : touchedList) {
            driverTouched[s] = false;
        }
        touchedList.clear();
        before.clear();
    }

    /**
     * A notification decision now (2.8.10), with the driver event suppression area holding {@code offWrap} and
     * {@code flags}: none if the used position did not move; DISABLE: none; DESC with EVENT_IDX: iff the used
     * position passed the descriptor at offWrap since the last decision; otherwise (ENABLE, reserved, DESC without
     * EVENT_IDX): one. Null where 2.8.10 leaves it open: an offset past the ring, a window longer than the ring.
     */
    Boolean decision(int offWrap, int flags, boolean eventIdx) {
        long length = windowLength;
        int from = windowSlot;
        boolean fromWrap = windowWrap;
        windowSlot = usedSlot;
        windowWrap = usedWrap;
        windowLength = 0;
        if (length == 0) {
            return false;
        }
        if (length > size) {
            return null;
        }
        if ((flags & 3) == 1) {
            return false;
        }
        if ((flags & 3) != 2 || !eventIdx) {
            return true;
        }
        int off = offWrap & (WRAP - 1);
        if (off >= size) {
            return null;
        }
        int ahead = (off - from + size) % size;
        boolean wrapThere = fromWrap ^ (from + ahead >= size);
        return ahead < length && wrapThere == ((offWrap & WRAP) != 0);
    }

    /**
     * Where a front-end's base puts the device (-1: refused, the avail index is not below the size): the base's avail
     * half, unless the ring shows another position. The ring shows a position when its USED flags step at most once:
     * at slot U, slots before U holding W (position U, wrap W); all equal: slot 0 with the opposite wrap. The base
     * still wins when it is 1..18 descriptors ahead of that position in the descriptor sequence and those
     * descriptors are the rest of the chain whose used descriptor sits just before the position: each available for
     * its lap, the last one with that used descriptor's ID, which must have AVAIL equal to USED.
     */
    int resumePosition(int base, IntPredicate usedBit) {
        int index = base & (WRAP - 1);
        if (index >= size) {
            return -1;
        }
        int avail = base & 0xffff;
        int steps = 0;
        int step = 0;
        boolean first = usedBit.test(0);
        boolean previous = first;
        for (int s = 1; s < size; s++) {
            boolean u = usedBit.test(s);
            if (u != previous) {
                steps++;
                step = s;
            }
            previous = u;
        }
        int shown = steps > 1 ? -1 : steps == 0 ? (first ? 0 : WRAP) : step | (first ? WRAP : 0);
        if (shown < 0 || shown == avail) {
            return avail;
        }
        // Sequence numbers over two laps: wrap 1 is the first lap, wrap 0 the second.
        long shownSeq = (shown & (WRAP - 1)) + ((shown & WRAP) != 0 ? 0 : size);
        long baseSeq = index + ((avail & WRAP) != 0 ? 0 : size);
        long ahead = ((baseSeq - shownSeq) % (2L * size) + 2L * size) % (2L * size);
        if (ahead == 0 || ahead > 18 || ahead >= size) {
            return shown;
        }
        long[] head = slot.apply((int) ((shownSeq - 1 + 2L * size) % size));
        int headFlags = (int) head[2];
        if (((headFlags >> 7) & 1) != ((headFlags >> 15) & 1)) {
            return shown;
        }
        for (long k = 0; k < ahead; k++) {
            long seq = (shownSeq + k) % (2L * size);
            int wrapBit = seq < size ? 1 : 0;
            long[] d = slot.apply((int) (seq % size));
            int f = (int) d[2];
            if (((f >> 7) & 1) != wrapBit || ((f >> 15) & 1) == wrapBit) {
                return shown;
            }
            if (k == ahead - 1 && d[0] != head[0]) {
                return shown;
            }
        }
        return avail;
    }

    @Override
    public String toString() {
        return "avail " + availSlot + "/" + (availWrap ? 1 : 0) + " used " + usedSlot + "/" + (usedWrap ? 1 : 0)
                + " window " + windowLength + " from " + windowSlot + "/" + (windowWrap ? 1 : 0);
    }
}
