package org.virtionetd.virtio.testdriver;

import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemfdGuestMemory;
import org.virtionetd.virtio.os.EventFd;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The driver against raw memory, checked by a tiny walker written here from the spec (no device). */
class SplitQueueDriverTest {
    private static final long BASE = 0x20_0000;
    private static final long REGION = 2 << 20;

    private GuestMemory mem;
    private GuestAllocator alloc;

    @BeforeEach
    void setUp() throws Exception {
        // Two adjacent regions, so that buffers may straddle the boundary.
        mem = MemfdGuestMemory.create(new long[] {BASE, BASE + REGION}, new long[] {REGION, REGION});
        alloc = new GuestAllocator(mem, 42);
    }

    @AfterEach
    void tearDown() {
        mem.close();
    }

    // ---- a tiny independent walker: reads the rings with GuestMemory.read only ----

    private int u16(long gpa) throws Exception {
        byte[] b = new byte[2];
        mem.read(gpa, b, 0, 2);
        return (b[0] & 0xff) | (b[1] & 0xff) << 8;
    }

    private long[] desc(long table, int i) throws Exception {
        byte[] b = new byte[16];
        mem.read(table + 16L * i, b, 0, 16);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        return new long[] {bb.getLong(0), Integer.toUnsignedLong(bb.getInt(8)), bb.getShort(12) & 0xffff,
                bb.getShort(14) & 0xffff};
    }

    /** One walked element: address, length, writable. */
    record Walked(long addr, long len, boolean writable) {
    }

    /** Follows a chain from {@code head}, descending into one indirect table; fails on loops. */
    private List<Walked> walk(RingLayout l, int head) throws Exception {
        List<Walked> out = new ArrayList<>();
        long table = l.descTable();
        int tableSize = l.size();
        int i = head;
        Set<String> seen = new HashSet<>();
        while (true) {
            assertThat(seen.add(table + ":" + i)).as("loop at descriptor %d", i).isTrue();
            long[] d = desc(table, i);
            if ((d[2] & 4) != 0) {
                assertThat(table).as("indirect only from the main table").isEqualTo(l.descTable());
                table = d[0];
                tableSize = (int) (d[1] / 16);
                i = 0;
                continue;
            }
            out.add(new Walked(d[0], d[1], (d[2] & 2) != 0));
            if ((d[2] & 1) == 0) {
                return out;
            }
            i = (int) d[3];
            assertThat(i).as("next within table").isLessThan(tableSize);
        }
    }

    private byte[] bytes(List<Walked> ws, boolean writable) throws Exception {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        for (Walked w : ws) {
            if (w.writable() == writable) {
                byte[] b = new byte[(int) w.len()];
                mem.read(w.addr(), b, 0, b.length);
                o.write(b);
            }
        }
        return o.toByteArray();
    }

    private int availEntry(RingLayout l, int ringIndex) throws Exception {
        return u16(l.availRing() + 4 + 2L * (ringIndex % l.size()));
    }

    /** Plays the device: writes used element {@code ringIndex} and then used idx. */
    private void deviceUses(RingLayout l, int ringIndex, int id, int len) throws Exception {
        byte[] e = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(0, id).putInt(4, len).array();
        mem.write(l.usedRing() + 4 + 8L * (ringIndex % l.size()), e, 0, 8);
        mem.write(l.usedRing() + 2, new byte[] {(byte) (ringIndex + 1), (byte) ((ringIndex + 1) >> 8)}, 0, 2);
    }

    private void writeU16(long gpa, int v) throws Exception {
        mem.write(gpa, new byte[] {(byte) v, (byte) (v >> 8)}, 0, 2);
    }

    // ---- layouts ----

    @Test
    void modernLayoutHasTheSpecAlignmentsAndSizes() {
        for (int size : new int[] {1, 2, 256, 1024, 32768}) {
            SplitQueueDriver q = SplitQueueDriver.modern(alloc, size, "q" + size);
            RingLayout l = q.layout();
            assertThat(l.descTable() % 16).isZero();
            assertThat(l.availRing() % 2).isZero();
            assertThat(l.usedRing() % 4).isZero();
            List<long[]> parts = List.of(new long[] {l.descTable(), 16L * size},
                    new long[] {l.availRing(), 6 + 2L * size}, new long[] {l.usedRing(), 6 + 8L * size});
            for (long[] p : parts) {
                assertThat(mem.locate(p[0], p[1])).as("ring part in one mapping").isNotEqualTo(GuestMemory.NOWHERE);
            }
            for (int a = 0; a < 3; a++) {
                for (int b = a + 1; b < 3; b++) {
                    long[] x = parts.get(a);
                    long[] y = parts.get(b);
                    assertThat(x[0] + x[1] <= y[0] || y[0] + y[1] <= x[0]).as("parts %d and %d disjoint", a, b)
                            .isTrue();
                }
            }
        }
    }

    @Test
    void legacyLayoutPutsTheUsedRingOnTheNextPageBoundary() {
        // Worked by hand from 2.7.2's virtq layout: desc 16*qsz, avail 2*(3+qsz), pad to 4096, used.
        RingLayout l256 = RingLayout.legacy(0x10000, 256);
        assertThat(l256.availRing()).isEqualTo(0x10000 + 4096);
        assertThat(l256.usedRing()).isEqualTo(0x10000 + 8192);
        assertThat(RingLayout.legacyBytes(256)).isEqualTo(12288);
        RingLayout l1024 = RingLayout.legacy(0x40000, 1024);
        assertThat(l1024.availRing()).isEqualTo(0x40000 + 16384);
        assertThat(l1024.usedRing()).isEqualTo(0x40000 + 20480);
        assertThat(RingLayout.legacyBytes(1024)).isEqualTo(20480 + 12288);
        RingLayout l8 = RingLayout.legacy(0x3000, 8);
        assertThat(l8.availRing()).isEqualTo(0x3000 + 128);
        assertThat(l8.usedRing()).isEqualTo(0x4000);

        SplitQueueDriver q = SplitQueueDriver.legacy(alloc, 256, "legacy");
        RingLayout l = q.layout();
        assertThat(l.descTable() % 4096).isZero();
        assertThat(l.availRing()).isEqualTo(l.descTable() + 4096);
        assertThat(l.usedRing()).isEqualTo(l.descTable() + 8192);
        assertThatThrownBy(() -> RingLayout.legacy(0x10010, 256)).hasMessageContaining("not aligned to 4096");
        assertThatThrownBy(() -> SplitQueueDriver.modern(alloc, 100, "x")).hasMessageContaining("power of two");
    }

    // ---- chains ----

    @Test
    void aChainReadsBackThroughAnIndependentWalker() throws Exception {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 16, "tx");
        byte[] a = "header-bytes".getBytes();
        byte[] b = new byte[3000];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (i * 7);
        }
        Chain c = q.addChain(Buffer.readable(a), Buffer.readable(b), Buffer.writable(100));
        RingLayout l = q.layout();
        assertThat(u16(l.availRing() + 2)).as("avail idx").isEqualTo(1);
        assertThat(availEntry(l, 0)).isEqualTo(c.head());
        List<Walked> ws = walk(l, c.head());
        assertThat(ws).hasSize(3);
        assertThat(ws).extracting(Walked::writable).containsExactly(false, false, true);
        byte[] readable = bytes(ws, false);
        assertThat(readable).hasSize(a.length + b.length);
        assertThat(java.util.Arrays.copyOfRange(readable, a.length, readable.length)).isEqualTo(b);
        assertThat(bytes(ws, true)).containsOnly(SplitQueueDriver.WRITABLE_FILL).hasSize(100);
        assertThat(c.slots()).hasSize(3).doesNotHaveDuplicates();
        assertThat(q.freeSlotCount()).isEqualTo(13);
    }

    @Test
    void indirectAndMixedChainsReadBack() throws Exception {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 8, "rx");
        Chain ind = q.addIndirectChain(Buffer.readable(new byte[] {1, 2, 3}), Buffer.writable(50),
                Buffer.writable(60));
        assertThat(ind.slots()).hasSize(1);
        assertThat(ind.indirectLength()).isEqualTo(48);
        assertThat(ind.indirectTable() % 16).isZero();
        long[] head = q.readDescriptor(ind.head());
        assertThat(head[2]).as("flags: INDIRECT only").isEqualTo(SplitQueueDriver.VIRTQ_DESC_F_INDIRECT);
        List<Walked> ws = walk(q.layout(), ind.head());
        assertThat(ws).extracting(Walked::len).containsExactly(3L, 50L, 60L);
        assertThat(bytes(ws, false)).containsExactly(1, 2, 3);

        Chain mixed = q.placeChain(List.of(Buffer.readable(new byte[] {9, 8})),
                List.of(Buffer.readable(new byte[] {7}), Buffer.writable(5)));
        q.publish();
        assertThat(mixed.slots()).hasSize(2);
        List<Walked> mw = walk(q.layout(), mixed.head());
        assertThat(mw).extracting(Walked::len).containsExactly(2L, 1L, 5L);
        assertThat(u16(q.availRingAddress() + 2)).isEqualTo(2);
    }

    @Test
    void aBufferMayStraddleTheRegionBoundary() throws Exception {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 8, "tx");
        byte[] data = new byte[1000];
        new java.util.Random(3).nextBytes(data);
        Chain c = q.addChain(Buffer.readable(data).acrossRegionBoundary());
        Placed p = c.elements().get(0);
        assertThat(p.address()).isLessThan(BASE + REGION);
        assertThat(p.address() + p.length()).isGreaterThan(BASE + REGION);
        assertThat(bytes(walk(q.layout(), c.head()), false)).isEqualTo(data);
    }

    @Test
    void refusesReadableAfterWritableAndTooLongChains() {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 4, "q");
        assertThatThrownBy(() -> q.addChain(Buffer.writable(4), Buffer.readable(new byte[1])))
                .hasMessageContaining("readable element after a writable one");
        assertThatThrownBy(() -> q.addChain(Buffer.writable(1), Buffer.writable(1), Buffer.writable(1),
                Buffer.writable(1), Buffer.writable(1)))
                .hasMessageContaining("has 4 free descriptors, the chain needs 5");
    }

    // ---- used ring ----

    @Test
    void readsUsedEntriesSinceTheLastPollAndRecyclesSlots() throws Exception {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 4, "rx");
        RingLayout l = q.layout();
        Chain a = q.addChain(Buffer.writable(100));
        Chain b = q.addChain(Buffer.writable(200), Buffer.writable(300));
        assertThat(q.freeSlotCount()).isEqualTo(1);
        assertThat(q.pollUsed()).isEmpty();
        deviceUses(l, 0, b.head(), 450);
        List<UsedElement> got = q.pollUsed();
        assertThat(got).hasSize(1);
        assertThat(got.get(0).id()).isEqualTo(b.head());
        assertThat(got.get(0).len()).isEqualTo(450);
        assertThat(got.get(0).chain()).isSameAs(b);
        assertThat(q.freeSlotCount()).isEqualTo(3);
        assertThat(q.pollUsed()).as("nothing new").isEmpty();
        deviceUses(l, 1, a.head(), 0);
        assertThat(q.pollUsed()).extracting(UsedElement::id).containsExactly(a.head());
        assertThat(q.outstanding()).isEmpty();
        assertThat(q.lastSeenUsed()).isEqualTo(2);
        q.releaseBuffers(a);
        q.releaseBuffers(b);
        assertThat(alloc.live()).as("only the ring parts remain").hasSize(3);
    }

    @Test
    void usedEntriesThatBreakTheSpecFailLoudly() throws Exception {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 4, "rx");
        RingLayout l = q.layout();
        Chain a = q.addChain(Buffer.writable(100));
        deviceUses(l, 0, a.head(), 101);
        assertThatThrownBy(q::pollUsed).isInstanceOf(AssertionError.class)
                .hasMessageContaining("says len 101 but the chain has only 100 device-writable bytes");

        SplitQueueDriver q2 = SplitQueueDriver.modern(alloc, 4, "rx2");
        Chain c = q2.addChain(Buffer.writable(10));
        int notOutstanding = (c.head() + 1) % 4;
        deviceUses(q2.layout(), 0, notOutstanding, 0);
        assertThatThrownBy(q2::pollUsed).isInstanceOf(AssertionError.class)
                .hasMessageContaining("has id " + notOutstanding + " (len 0) which is not an outstanding head");

        SplitQueueDriver q3 = SplitQueueDriver.modern(alloc, 4, "rx3");
        writeU16(q3.usedRingAddress() + 2, 5);
        assertThatThrownBy(q3::pollUsed).isInstanceOf(AssertionError.class)
                .hasMessageContaining("used idx 5 is 5 entries past the last seen 0, more than the queue size 4");
    }

    // ---- notification suppression ----

    @Test
    void vringNeedEventCases() {
        assertThat(SplitQueueDriver.needEvent(0, 1, 0)).as("first entry written").isTrue();
        assertThat(SplitQueueDriver.needEvent(1, 1, 0)).as("entry 1 not yet written").isFalse();
        assertThat(SplitQueueDriver.needEvent(5, 10, 3)).isTrue();
        assertThat(SplitQueueDriver.needEvent(2, 10, 3)).as("already passed before").isFalse();
        assertThat(SplitQueueDriver.needEvent(10, 10, 3)).isFalse();
        assertThat(SplitQueueDriver.needEvent(3, 10, 3)).as("old idx itself is written").isTrue();
        assertThat(SplitQueueDriver.needEvent(9, 10, 3)).isTrue();
        // Wrap-around of the 16-bit indexes.
        assertThat(SplitQueueDriver.needEvent(0xffff, 0, 0xfffe)).isTrue();
        assertThat(SplitQueueDriver.needEvent(0xfffe, 0, 0xffff)).isFalse();
        assertThat(SplitQueueDriver.needEvent(0, 0x10, 0xfff0)).isTrue();
        assertThat(SplitQueueDriver.needEvent(0xfff0, 0x10, 0xffe0)).isTrue();
        assertThat(SplitQueueDriver.needEvent(0x11, 0x10, 0xfff0)).isFalse();
        assertThat(SplitQueueDriver.needEvent(0xffef, 0x10, 0xfff0)).isFalse();
        assertThat(SplitQueueDriver.needEvent(7, 7, 7)).as("no movement, no event").isFalse();
    }

    /** vring_need_event equals stepping the index one entry at a time and watching for the event entry. */
    @Property(tries = 2000)
    void needEventMatchesStepping(@ForAll @IntRange(min = 0, max = 0xffff) int old,
                                  @ForAll @IntRange(min = 0, max = 300) int steps,
                                  @ForAll @IntRange(min = 0, max = 0xffff) int event) {
        boolean written = false;
        for (int i = 0; i < steps; i++) {
            if (((old + i) & 0xffff) == event) {
                written = true;
            }
        }
        assertThat(SplitQueueDriver.needEvent(event, (old + steps) & 0xffff, old)).isEqualTo(written);
    }

    @Test
    void publishNotifiesUnlessTheDeviceSuppresses() throws Exception {
        try (EventFd kick = EventFd.create()) {
            SplitQueueDriver q = SplitQueueDriver.modern(alloc, 8, "tx");
            q.setKick(kick);
            q.addChain(Buffer.readable(new byte[] {1}));
            assertThat(kick.drain()).isEqualTo(1);
            writeU16(q.usedRingAddress(), SplitQueueDriver.VIRTQ_USED_F_NO_NOTIFY);
            assertThat(q.publish()).as("nothing pending").isFalse();
            q.addChain(Buffer.readable(new byte[] {2}));
            assertThat(kick.drain()).as("VIRTQ_USED_F_NO_NOTIFY").isZero();
            assertThat(q.notificationsSent()).isEqualTo(1);
            assertThat(q.notificationsSuppressed()).isEqualTo(1);

            // EVENT_IDX: flags are ignored, avail_event decides (2.7.10).
            q.setEventIdx(true);
            writeU16(q.usedRingAddress() + 4 + 8 * 8, 3);   // avail_event = 3; avail idx is 2
            q.addChain(Buffer.readable(new byte[] {3}));     // idx 2 -> 3: entry 2 written, not 3
            assertThat(kick.drain()).isZero();
            q.addChain(Buffer.readable(new byte[] {4}));     // idx 3 -> 4: entry 3 written
            assertThat(kick.drain()).isEqualTo(1);
            q.placeChain(List.of(Buffer.readable(new byte[] {5})), List.of());
            q.placeChain(List.of(Buffer.readable(new byte[] {6})), List.of());
            writeU16(q.usedRingAddress() + 4 + 8 * 8, 4);   // batch 4 -> 6 passes 4
            assertThat(q.publish()).isTrue();
            assertThat(kick.drain()).isEqualTo(1);
        }
    }

    @Test
    void decidesWhetherTheDeviceMustHaveNotified() {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 8, "rx");
        assertThat(q.deviceMustNotify(0, 1)).as("flags 0: MUST").isTrue();
        q.setNoInterrupt(true);
        assertThat(q.availFlags()).isEqualTo(SplitQueueDriver.VIRTQ_AVAIL_F_NO_INTERRUPT);
        assertThat(q.deviceMustNotify(0, 1)).isFalse();
        q.setNoInterrupt(false);
        assertThat(q.deviceMustNotify(3, 3)).as("nothing used").isFalse();

        q.setEventIdx(true);
        q.setUsedEvent(5);
        assertThat(q.usedEvent()).isEqualTo(5);
        assertThat(q.deviceMustNotify(0, 5)).isFalse();
        assertThat(q.deviceMustNotify(5, 6)).isTrue();
        q.setNoInterrupt(true);
        assertThat(q.deviceMustNotify(4, 8)).as("low flag bit ignored with EVENT_IDX").isTrue();
        q.setUsedEvent(0xffff);
        assertThat(q.deviceMustNotify(0xfffe, 1)).isTrue();
    }

    // ---- hostile chains: what lands in memory is exactly the broken structure ----

    @Test
    void hostileBuildersWriteTheBrokenStructures() throws Exception {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 16, "hostile");
        HostileChains h = new HostileChains(q);
        RingLayout l = q.layout();

        Chain loop = h.descriptorLoop(3);
        assertThatThrownBy(() -> walk(l, loop.head())).hasMessageContaining("loop at descriptor");
        assertThat(availEntry(l, 0)).isEqualTo(loop.head());

        Chain longer = h.chainLongerThanQueue();
        assertThat(walk(l, longer.head())).hasSize(17);

        Chain nested = h.nestedIndirect();
        assertThatThrownBy(() -> walk(l, nested.head())).hasMessageContaining("indirect only from the main table");

        Chain badLen = h.indirectTableLength(24);
        assertThat(q.readDescriptor(badLen.head())[1]).isEqualTo(24);

        Chain withNext = h.indirectWithNext();
        assertThat(q.readDescriptor(withNext.head())[2]).isEqualTo(
                SplitQueueDriver.VIRTQ_DESC_F_INDIRECT | SplitQueueDriver.VIRTQ_DESC_F_NEXT);

        Chain outside = h.addressOutsideMemory(true);
        long[] second = q.readDescriptor(outside.slots().get(1));
        assertThat(mem.contains(second[0], second[1])).isFalse();

        Chain wrap = h.addressWrapping(false);
        long[] w = q.readDescriptor(wrap.head());
        assertThat(Long.compareUnsigned(w[0] + w[1], w[0])).as("addr + len wraps").isNegative();

        Chain huge = h.hugeLength(true);
        assertThat(q.readDescriptor(huge.head())[1]).isEqualTo(0xffff_ffffL);

        Chain next = h.nextOutOfRange();
        assertThat(q.readDescriptor(next.head())[3]).isEqualTo(16);

        Chain wr = h.writableBeforeReadable();
        assertThat(walk(l, wr.head())).extracting(Walked::writable).containsExactly(true, false);

        Chain tableOut = h.indirectTableOutsideMemory();
        assertThat(q.readDescriptor(tableOut.head())[0]).isEqualTo(HostileChains.OUTSIDE);

        int idxBefore = u16(l.availRing() + 2);
        assertThat(idxBefore).isEqualTo(11);
        h.headOutOfRange(0);
        assertThat(availEntry(l, 11)).isEqualTo(16);
        assertThat(u16(l.availRing() + 2)).isEqualTo(12);

        h.availIdxAhead(17);
        assertThat(u16(l.availRing() + 2)).isEqualTo(12 + 17);
        assertThat(q.availIdx()).as("the driver's own count is unchanged").isEqualTo(12);
    }

    @Test
    void aDeviceAnsweringHostileChainsWithLengthZeroIsReadBack() throws Exception {
        SplitQueueDriver q = SplitQueueDriver.modern(alloc, 8, "hostile");
        HostileChains h = new HostileChains(q);
        Chain loop = h.descriptorLoop(4);
        Chain outside = h.addressOutsideMemory(true);
        deviceUses(q.layout(), 0, loop.head(), 0);
        deviceUses(q.layout(), 1, outside.head(), 0);
        assertThat(q.pollUsed()).extracting(UsedElement::id).containsExactly(loop.head(), outside.head());
        assertThat(q.freeSlotCount()).isEqualTo(8);
    }
}
