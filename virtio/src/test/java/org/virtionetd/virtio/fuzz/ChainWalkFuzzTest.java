package org.virtionetd.virtio.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.memory.MemfdGuestMemory;
import org.virtionetd.virtio.net.TxPathBench;
import org.virtionetd.virtio.net.VirtioNetHeader;
import org.virtionetd.virtio.queue.DescriptorChain;
import org.virtionetd.virtio.queue.QueueException;
import org.virtionetd.virtio.queue.SplitQueue;
import org.virtionetd.virtio.testdriver.InMemoryBackend;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/**
 * Coverage-guided fuzzing of the split virtqueue as a hostile driver writes it (virtio 1.2, 2.7): random descriptor
 * tables, indirect tables, available-ring contents and indices over a real memfd guest memory with a hole and a
 * second region.
 *
 * <p>{@link #splitQueue} drives {@link SplitQueue} directly. Invariants: only {@link QueueException} escapes, fatal
 * kinds only from available()/pop() and non-fatal ones only from walk(); every walked buffer lies inside guest
 * memory and readable buffers come first; a walk is accepted exactly when an independent reference walker (written
 * from 2.7.5 over {@link GuestMemory#read}) accepts it, with the same buffers; available() never reports more than
 * the queue size; the used ring in memory says what the device added.
 *
 * <p>{@link #txRxPaths} runs the production TX and RX paths ({@code TxPath}/{@code RxPath} through
 * {@link TxPathBench}) on rings whose descriptors, frames and vnet headers come from the input, with an
 * {@link InMemoryBackend}. Invariants: neither path throws, every chain offered is returned exactly once, used
 * lengths fit the chain, and the backend sees no contract breach.
 *
 * <p>Without JAZZER_FUZZ the committed inputs under {@code src/test/resources/.../ChainWalkFuzzTestInputs/} are
 * replayed as regression tests; {@code scripts/fuzz} runs the fuzzer.
 */
class ChainWalkFuzzTest {
    static final long A_SIZE = 32L << 20;
    static final long B_BASE = 0x1_0000_0000L;
    static final long B_SIZE = 64 << 10;
    /** One guest memory per JVM: mapping memfds per input would dominate the run time. */
    static final GuestMemory MEMORY = createMemory();

    // Split-queue target layout inside region A (TxPathBench uses 0x1000..0x14000 and 0x100000..0x1100000).
    static final long RINGS = 0x1200000;
    static final long RINGS_SIZE = 0x20000;
    static final long DESC = RINGS;
    static final long AVAIL = RINGS + 0x8000;
    static final long USED = RINGS + 0x10000;
    static final long INDIRECT = 0x1300000;
    static final int INDIRECT_ENTRIES = 64;
    static final long DATA = 0x1400000;
    static final byte[] ZEROS = new byte[(int) RINGS_SIZE];

    static final Set<QueueException.Kind> FATAL = EnumSet.of(QueueException.Kind.AVAIL_INDEX_TOO_FAR,
            QueueException.Kind.HEAD_OUT_OF_RANGE);

    private static GuestMemory createMemory() {
        try {
            return MemfdGuestMemory.create(new long[] {0, B_BASE}, new long[] {A_SIZE, B_SIZE});
        } catch (GuestMemoryException e) {
            throw new IllegalStateException("cannot create the fuzzing guest memory: " + e.getMessage(), e);
        }
    }

    static ByteBuffer a() {
        return MEMORY.chunk(0);
    }

    static void zero(long gpa, int length) {
        a().put((int) gpa, ZEROS, 0, length);
    }

    /** A descriptor address chosen among interesting places: data, indirect area, region ends, the hole, wraps. */
    static long address(FuzzInput in) {
        int sel = in.u8() & 7;
        switch (sel) {
            case 0: return DATA + in.u16() * 16L;
            case 1: return INDIRECT + 16L * (in.u8() % INDIRECT_ENTRIES);
            case 2: return A_SIZE - in.u16();
            case 3: return B_BASE + in.u16();
            case 4: return A_SIZE + (in.u32() & 0xffffffffL);
            case 5: return -1L - in.u16();
            case 6: return B_BASE + B_SIZE - in.u8();
            default: return in.u64();
        }
    }

    static int length(FuzzInput in) {
        int sel = in.u8() & 3;
        switch (sel) {
            case 0: return in.u8();
            case 1: return in.u16();
            case 2: return 16 * (1 + in.u8() % 8);
            default: return in.u32();
        }
    }

    static void putDescriptor(ByteBuffer b, int at, FuzzInput in, int size) {
        long addr = address(in);
        int len = length(in);
        int f = in.u8();
        int flags = (f & 0x80) != 0 ? in.u16() : f & 7;
        int n = in.u8();
        int next = (n & 0x80) != 0 ? in.u16() : (n & 0x7f) % Math.max(1, size);
        b.putLong(at, addr).putInt(at + 8, len).putShort(at + 12, (short) flags).putShort(at + 14, (short) next);
    }

    @FuzzTest(maxDuration = "5m")
    void splitQueue(byte[] data) throws Exception {
        FuzzInput in = new FuzzInput(data);
        ByteBuffer a = a();
        zero(RINGS, (int) RINGS_SIZE);
        zero(INDIRECT, INDIRECT_ENTRIES * 16);
        int sizeSel = in.u8();
        int size = (sizeSel & 0x80) != 0 ? in.u16() : 1 << (sizeSel % 10);
        boolean eventIdx = in.bool();
        boolean indirect = in.bool();
        long desc = DESC;
        long avail = AVAIL;
        long used = USED;
        int layout = in.u8() & 7;
        if (layout == 1) {
            long[] l = SplitQueue.legacyLayout(DESC, Math.max(1, Math.min(size, 512)), 4096);
            desc = l[0];
            avail = l[1];
            used = l[2];
        } else if (layout == 2) {
            desc = address(in);
            avail = address(in);
            used = address(in);
        } else if (layout == 3) {
            desc = A_SIZE - 16L * (in.u8() + 1); // runs off the end of region A
        }
        SplitQueue q = new SplitQueue(size, desc, avail, used, eventIdx, indirect);
        String refused = q.activate(MEMORY);
        boolean fits = SplitQueue.validSize(size) && (desc & 15) == 0 && (avail & 1) == 0 && (used & 3) == 0
                && MEMORY.locate(desc, SplitQueue.descTableBytes(size)) != GuestMemory.NOWHERE
                && MEMORY.locate(avail, SplitQueue.availRingBytes(size)) != GuestMemory.NOWHERE
                && MEMORY.locate(used, SplitQueue.usedRingBytes(size)) != GuestMemory.NOWHERE;
        check((refused == null) == fits, "activate said " + refused + " for size " + size + " desc 0x"
                + Long.toHexString(desc) + " avail 0x" + Long.toHexString(avail) + " used 0x" + Long.toHexString(used));
        if (refused != null) {
            return;
        }
        // Descriptor table, then one indirect table area, both from the input.
        int descriptors = Math.min(size, in.u8() + 1);
        long descLoc = MEMORY.locate(desc, SplitQueue.descTableBytes(size));
        ByteBuffer dt = MEMORY.chunk(GuestMemory.chunkId(descLoc));
        int dBase = GuestMemory.offset(descLoc);
        for (int i = 0; i < descriptors; i++) {
            putDescriptor(dt, dBase + 16 * i, in, size);
        }
        int indirectEntries = in.u8() % (INDIRECT_ENTRIES + 1);
        for (int i = 0; i < indirectEntries; i++) {
            putDescriptor(a, (int) INDIRECT + 16 * i, in, indirectEntries);
        }
        // Device and driver indices: anywhere in the 16-bit space, so that wrap-around is covered.
        int start = in.u16();
        q.setNextAvail(start);
        int usedStart = in.u16();
        q.setNextUsed(usedStart);
        ByteBuffer av = MEMORY.chunk(GuestMemory.chunkId(MEMORY.locate(avail, 4)));
        int avBase = GuestMemory.offset(MEMORY.locate(avail, 4));
        ByteBuffer us = MEMORY.chunk(GuestMemory.chunkId(MEMORY.locate(used, 4)));
        int usBase = GuestMemory.offset(MEMORY.locate(used, 4));
        us.putShort(usBase + 2, (short) usedStart);
        av.putShort(avBase, (short) in.u16()); // flags
        for (int slot = 0; slot < Math.min(size, 64); slot++) {
            int h = in.u8();
            av.putShort(avBase + 4 + 2 * slot, (short) ((h & 0x80) != 0 ? in.u16() : (h & 0x7f) % size));
        }
        av.putShort(avBase + 4 + 2 * size, (short) in.u16()); // used_event

        DescriptorChain chain = new DescriptorChain(size);
        int added = 0;
        for (int round = 0; round < 4 && !in.exhausted(); round++) {
            int move = in.u8();
            int idx = (move & 0x80) != 0 ? in.u16() : (q.nextAvail() + (move & 0x7f) % (size + 2)) & 0xffff;
            av.putShort(avBase + 2, (short) idx);
            int n;
            try {
                n = q.available();
            } catch (QueueException e) {
                check(e.kind() == QueueException.Kind.AVAIL_INDEX_TOO_FAR, "available() threw " + e.kind());
                check(((idx - q.nextAvail()) & 0xffff) > size, "available() refused an index "
                        + ((idx - q.nextAvail()) & 0xffff) + " ahead with queue size " + size);
                return;
            }
            check(n == ((idx - q.nextAvail()) & 0xffff) && n <= size, "available() = " + n + " for avail.idx " + idx
                    + ", next " + q.nextAvail() + ", size " + size);
            for (int i = 0; i < n; i++) {
                int slot = q.nextAvail() & (size - 1);
                int expectedHead = av.getShort(avBase + 4 + 2 * slot) & 0xffff;
                int head;
                try {
                    head = q.pop();
                } catch (QueueException e) {
                    check(e.kind() == QueueException.Kind.HEAD_OUT_OF_RANGE && expectedHead >= size,
                            "pop() threw " + e.kind() + " for head " + expectedHead);
                    return;
                }
                check(head == expectedHead && head < size, "pop() gave " + head + ", ring holds " + expectedHead);
                List<long[]> reference = ReferenceWalk.walk(MEMORY, desc, size, head, indirect);
                int written;
                try {
                    q.walk(head, chain);
                    checkChain(chain, size);
                    check(reference != null, "walk accepted chain " + head + " that the reference walker refuses: "
                            + describe(chain));
                    check(sameBuffers(chain, reference), "walk of chain " + head + " gave " + describe(chain)
                            + ", reference " + describe(reference));
                    written = (int) Math.min(chain.writableBytes(), in.u16());
                } catch (QueueException e) {
                    check(!FATAL.contains(e.kind()), "walk() threw fatal kind " + e.kind());
                    check(reference == null, "walk refused chain " + head + " (" + e.getMessage()
                            + ") that the reference walker accepts: " + describe(reference));
                    written = 0;
                }
                int usedSlot = q.nextUsed() & (size - 1);
                q.addUsed(head, written);
                added++;
                check(us.getInt(usBase + 4 + 8 * usedSlot) == head && us.getInt(usBase + 8 + 8 * usedSlot) == written,
                        "used slot " + usedSlot + " does not hold (" + head + ", " + written + ")");
            }
            q.publishUsed();
            check((us.getShort(usBase + 2) & 0xffff) == ((usedStart + added) & 0xffff),
                    "used.idx " + (us.getShort(usBase + 2) & 0xffff) + " after " + added + " entries from " + usedStart);
            q.needsNotification();
            q.setKickWanted(in.bool());
            q.hasAvailable();
        }
    }

    /** Every buffer inside guest memory, non-empty, readable ones first, byte counts consistent. */
    static void checkChain(DescriptorChain c, int size) {
        check(c.count() <= size, "chain of " + c.count() + " buffers in a queue of " + size);
        long readable = 0;
        long writable = 0;
        for (int i = 0; i < c.count(); i++) {
            long len = c.length(i) & 0xffffffffL;
            check(len != 0 && MEMORY.contains(c.address(i), len), "buffer 0x" + Long.toHexString(c.address(i))
                    + "+" + len + " is not inside guest memory");
            check(c.writable(i) == (i >= c.readableCount()), "buffer " + i + " out of order: " + describe(c));
            if (c.writable(i)) {
                writable += len;
            } else {
                readable += len;
            }
        }
        check(readable == c.readableBytes() && writable == c.writableBytes(), "byte counts " + c.readableBytes()
                + "/" + c.writableBytes() + ", buffers say " + readable + "/" + writable);
    }

    static boolean sameBuffers(DescriptorChain c, List<long[]> ref) {
        if (c.count() != ref.size()) {
            return false;
        }
        for (int i = 0; i < c.count(); i++) {
            long[] r = ref.get(i);
            if (c.address(i) != r[0] || (c.length(i) & 0xffffffffL) != r[1] || c.writable(i) != (r[2] != 0)) {
                return false;
            }
        }
        return true;
    }

    static String describe(DescriptorChain c) {
        StringBuilder sb = new StringBuilder("[");
        for (int i = 0; i < c.count(); i++) {
            sb.append(String.format("0x%x+%d%s ", c.address(i), c.length(i) & 0xffffffffL, c.writable(i) ? "w" : "r"));
        }
        return sb.append(']').toString();
    }

    static String describe(List<long[]> ref) {
        if (ref == null) {
            return "refused";
        }
        StringBuilder sb = new StringBuilder("[");
        for (long[] r : ref) {
            sb.append(String.format("0x%x+%d%s ", r[0], r[1], r[2] != 0 ? "w" : "r"));
        }
        return sb.append(']').toString();
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    // ------------------------------------------------------------------ TX and RX paths

    static final int BENCH_QUEUE = 256;
    static final long BENCH_TX_DESC = 0x1000;
    static final long BENCH_TX_AVAIL = BENCH_TX_DESC + 16 * BENCH_QUEUE;
    static final long BENCH_TX_USED = 0x4000;
    static final long BENCH_RX_DESC = 0x10000;
    static final long BENCH_RX_AVAIL = BENCH_RX_DESC + 16 * BENCH_QUEUE;
    static final long BENCH_RX_USED = 0x14000;
    static final long BENCH_DATA = 0x100000;

    @FuzzTest(maxDuration = "5m")
    void txRxPaths(byte[] data) throws Exception {
        FuzzInput in = new FuzzInput(data);
        ByteBuffer a = a();
        zero(0, 0x20000); // both benches' rings; TxPathBench rewrites its descriptor tables
        InMemoryBackend backend = new InMemoryBackend("fuzz", 0);
        try {
            int frameLength = 14 + in.u16() % 1600;
            TxPathBench bench = new TxPathBench(MEMORY, frameLength, backend);
            backend.configure(bench.negotiated(), bench.headerLength());
            // TX: the input rewrites the first descriptors (the chains the bench offers) and the buffers' bytes.
            int txDescriptors = in.u8() % 17;
            for (int i = 0; i < txDescriptors; i++) {
                putDescriptor(a, (int) BENCH_TX_DESC + 16 * i, in, BENCH_QUEUE);
            }
            int txChains = 1 + in.u8() % 16;
            for (int i = 0; i < txChains; i++) {
                // The default buffer of chain i: vnet header (12 bytes) and frame, contents from the input.
                int n = Math.min(in.u8() * 8, 12 + frameLength);
                a.put((int) (BENCH_DATA + i * 0x10000L), in.bytes(n));
            }
            bench.offerTx(txChains);
            int burst = 1 + in.u8() % 32;
            int done = bench.transmit(burst);
            check(done == Math.min(burst, txChains), "transmit returned " + done + " for " + txChains
                    + " chains and a burst of " + burst);
            checkUsed(BENCH_TX_USED, BENCH_TX_DESC, done, null);
            for (InMemoryBackend.Sent s : backend.sent()) {
                check(s.header().length == 12, "header of " + s.header().length + " bytes sent");
                check(s.frame().length >= 14 && s.frame().length <= 65535 + 14 + 8, "frame of " + s.frame().length
                        + " bytes sent");
                check((s.header()[0] & ~VirtioNetHeader.F_NEEDS_CSUM) == 0 && s.header()[1] == 0,
                        "a header the negotiated features forbid was sent: flags " + s.header()[0] + " gso "
                                + s.header()[1]);
            }
            // RX: frames from the "network" with headers from the input, into buffers the input describes.
            int frames = in.u8() % 6;
            for (int i = 0; i < frames; i++) {
                byte[] header = in.bytes(in.bool() ? 12 : 0);
                backend.deliver(header, in.bytes(in.u16() % 3000));
            }
            int rxDescriptors = in.u8() % 17;
            for (int i = 0; i < rxDescriptors; i++) {
                putDescriptor(a, (int) BENCH_RX_DESC + 16 * i, in, BENCH_QUEUE);
            }
            int rxChains = in.u8() % 32;
            // The room of every chain as the guest laid it out, taken BEFORE the device writes: a writable buffer
            // may overlap the descriptor table, and then the frame written into it rewrites the chains (the guest's
            // own doing), so walking them afterwards would judge a different ring.
            long[] room = new long[BENCH_QUEUE];
            List<long[]> reads = new ArrayList<>();
            List<long[]> writable = new ArrayList<>();
            for (int head = 0; head < BENCH_QUEUE; head++) {
                // A fresh bench offers heads 0 .. rxChains-1; only those are walked by the device.
                List<long[]> ref = ReferenceWalk.walk(MEMORY, BENCH_RX_DESC, BENCH_QUEUE, head, true,
                        head < rxChains ? reads : null);
                room[head] = writableRoom(ref);
                if (ref != null && head < rxChains) {
                    ref.stream().filter(r -> r[2] != 0).forEach(writable::add);
                }
            }
            reads.add(new long[] {BENCH_RX_AVAIL, 4 + 2L * BENCH_QUEUE});
            // If a frame the device writes can land on a descriptor (or the avail ring), the guest rewrites its own
            // chains mid-burst and the room taken before the run no longer describes what the device walks: then
            // only the used ring's shape is checked.
            boolean selfModifying = anyOverlap(writable, reads);
            bench.offerRx(rxChains);
            for (int call = 0; call < 3; call++) {
                bench.receive(1 + in.u8() % 8);
            }
            int rxUsed = a.getShort((int) BENCH_RX_USED + 2) & 0xffff;
            check(rxUsed <= rxChains, rxUsed + " RX chains used, " + rxChains + " offered");
            checkUsed(BENCH_RX_USED, BENCH_RX_DESC, rxUsed, selfModifying ? UNKNOWN_ROOM : room);
            check(backend.violations().isEmpty(), "backend contract breached: " + backend.violations());
        } finally {
            backend.close();
        }
    }

    /**
     * The used ring holds {@code n} entries, each a distinct head below the queue size; a TX entry has length 0
     * (the device writes nothing into TX buffers), an RX entry at most the chain's writable bytes (0 if the chain
     * is invalid).
     */
    static void checkUsed(long usedRing, long descTable, int n, long[] rxRoom) {
        ByteBuffer a = a();
        int idx = a.getShort((int) usedRing + 2) & 0xffff;
        check(idx == n, "used.idx " + idx + ", expected " + n);
        boolean[] seen = new boolean[BENCH_QUEUE];
        List<Integer> heads = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int id = a.getInt((int) usedRing + 4 + 8 * i);
            heads.add(id);
            check(id >= 0 && id < BENCH_QUEUE && !seen[id], "used ring returns head " + id + " twice or out of range: "
                    + heads);
            seen[id] = true;
            int len = a.getInt((int) usedRing + 8 + 8 * i);
            if (rxRoom == null) {
                check(len == 0, "TX chain " + id + " returned with length " + len);
                continue;
            }
            check((len & 0xffffffffL) <= rxRoom[id], "RX chain " + id + " used with length " + (len & 0xffffffffL)
                    + ", it had " + rxRoom[id] + " writable bytes before the device ran");
        }
    }

    /** Room of chains whose descriptors the guest's own buffers overlap: any length up to 2^32 - 1 passes. */
    static final long[] UNKNOWN_ROOM = java.util.stream.LongStream.generate(() -> 0xffffffffL).limit(BENCH_QUEUE)
            .toArray();

    /**
     * Whether any range of {@code a} shares a byte with any range of {@code b} (ranges {addr, len, ...} inside
     * guest memory, so no wrap). Sorted sweep: the fuzzer runs this for every input, so no quadratic scan.
     */
    static boolean anyOverlap(List<long[]> a, List<long[]> b) {
        if (a.isEmpty() || b.isEmpty()) {
            return false;
        }
        long[][] bs = b.toArray(new long[0][]);
        java.util.Arrays.sort(bs, (x, y) -> Long.compareUnsigned(x[0], y[0]));
        // maxEnd[i]: the furthest end among bs[0..i], so one binary search answers each range of a.
        long[] maxEnd = new long[bs.length];
        for (int i = 0; i < bs.length; i++) {
            long end = bs[i][0] + bs[i][1];
            maxEnd[i] = i == 0 || Long.compareUnsigned(end, maxEnd[i - 1]) > 0 ? end : maxEnd[i - 1];
        }
        for (long[] r : a) {
            long end = r[0] + r[1];
            // the last range of b that starts before r ends
            int lo = 0;
            int hi = bs.length - 1;
            int last = -1;
            while (lo <= hi) {
                int mid = (lo + hi) >>> 1;
                if (Long.compareUnsigned(bs[mid][0], end) < 0) {
                    last = mid;
                    lo = mid + 1;
                } else {
                    hi = mid - 1;
                }
            }
            if (last >= 0 && Long.compareUnsigned(maxEnd[last], r[0]) > 0) {
                return true;
            }
        }
        return false;
    }

    /** Writable bytes of a chain the reference walker returned (0 for a refused chain). */
    static long writableRoom(List<long[]> ref) {
        long room = 0;
        if (ref != null) {
            for (long[] r : ref) {
                room += r[2] != 0 ? r[1] : 0;
            }
        }
        return room;
    }
}
