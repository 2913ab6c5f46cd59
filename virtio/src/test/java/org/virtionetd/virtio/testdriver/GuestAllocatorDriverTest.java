package org.virtionetd.virtio.testdriver;

import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemfdGuestMemory;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class GuestAllocatorDriverTest {
    private static final long BASE = 0x10_0000;
    private static final long SIZE = 4 << 20;

    /** Sorted live ranges must not overlap and must lie in guest memory. */
    private static void assertDisjointInside(GuestMemory mem, List<GuestAllocator.Range> live) {
        for (int i = 0; i < live.size(); i++) {
            GuestAllocator.Range r = live.get(i);
            assertThat(mem.contains(r.address(), r.length())).as("range %s is guest memory", r).isTrue();
            if (i > 0) {
                assertThat(r.address()).as("range %s starts after %s ends", r, live.get(i - 1))
                        .isGreaterThanOrEqualTo(live.get(i - 1).end());
            }
        }
    }

    @Property(tries = 40)
    void allocationsNeverOverlapAndStayInside(@ForAll long seed, @ForAll @IntRange(min = 0, max = 4096) int maxGap)
            throws Exception {
        try (GuestMemory mem = MemfdGuestMemory.create(new long[] {BASE, BASE + SIZE}, new long[] {SIZE, SIZE})) {
            GuestAllocator a = new GuestAllocator(mem, seed, maxGap);
            Random r = new Random(seed);
            List<Long> held = new ArrayList<>();
            for (int i = 0; i < 400; i++) {
                if (!held.isEmpty() && r.nextInt(3) == 0) {
                    a.free(held.remove(r.nextInt(held.size())));
                } else {
                    long len = 1 + r.nextInt(r.nextBoolean() ? 64 : 9000);
                    held.add(r.nextInt(4) == 0 ? a.allocate(len, 16, false) : a.allocate(len));
                }
            }
            assertDisjointInside(mem, a.live());
            long liveBytes = a.live().stream().mapToLong(GuestAllocator.Range::length).sum();
            assertThat(a.freeBytes() + liveBytes).as("free + live bytes cover the memory exactly")
                    .isEqualTo(2 * SIZE);
        }
    }

    @Test
    void leavesGapsAndPlacesBuffersAtOddAddresses() throws Exception {
        try (GuestMemory mem = MemfdGuestMemory.create(BASE, SIZE)) {
            GuestAllocator a = new GuestAllocator(mem, 7, 512);
            for (int i = 0; i < 200; i++) {
                a.allocate(100);
            }
            List<GuestAllocator.Range> live = a.live();
            int gaps = 0;
            int odd = 0;
            for (int i = 1; i < live.size(); i++) {
                if (live.get(i).address() > live.get(i - 1).end()) {
                    gaps++;
                }
                if ((live.get(i).address() & 1) != 0) {
                    odd++;
                }
            }
            assertThat(gaps).as("gaps between 200 consecutive allocations").isGreaterThan(150);
            assertThat(odd).as("allocations at odd addresses").isGreaterThan(50);
        }
    }

    @Test
    void zeroGapPacksTightly() throws Exception {
        try (GuestMemory mem = MemfdGuestMemory.create(BASE, SIZE)) {
            GuestAllocator a = new GuestAllocator(mem, 7, 0);
            long first = a.allocate(10);
            long second = a.allocate(10);
            assertThat(first).isEqualTo(BASE);
            assertThat(second).isEqualTo(BASE + 10);
        }
    }

    @Test
    void honoursAlignment() throws Exception {
        try (GuestMemory mem = MemfdGuestMemory.create(BASE, SIZE)) {
            GuestAllocator a = new GuestAllocator(mem, 3);
            for (int align : new int[] {2, 4, 16, 4096}) {
                for (int i = 0; i < 20; i++) {
                    assertThat(a.allocate(33, align, false) % align).as("alignment %d", align).isZero();
                }
            }
        }
    }

    @Test
    void ringPartsNeverStraddleARegionBoundaryButBuffersMay() throws Exception {
        try (GuestMemory mem = MemfdGuestMemory.create(new long[] {BASE, BASE + 0x10000},
                new long[] {0x10000, 0x10000})) {
            GuestAllocator a = new GuestAllocator(mem, 11, 64);
            assertThat(a.regionBoundaries()).containsExactly(BASE + 0x10000);
            long boundary = BASE + 0x10000;
            for (int i = 0; i < 40; i++) {
                long at = a.allocate(1000, 4, false);
                assertThat(at >= boundary || at + 1000 <= boundary).as("ring part at 0x%x", at).isTrue();
            }
            long across = a.allocateAcrossBoundary(300);
            assertThat(across).isLessThan(boundary);
            assertThat(across + 300).isGreaterThan(boundary);
            // The range is usable guest memory although it is in two mappings.
            byte[] data = new byte[300];
            new Random(1).nextBytes(data);
            mem.write(across, data, 0, data.length);
            byte[] back = new byte[300];
            mem.read(across, back, 0, back.length);
            assertThat(back).isEqualTo(data);
            assertThat(mem.locate(across, 300)).as("not one mapping").isEqualTo(GuestMemory.NOWHERE);
        }
    }

    @Test
    void separateRegionsAreNeverBridged() throws Exception {
        try (GuestMemory mem = MemfdGuestMemory.create(new long[] {BASE, BASE + 0x100000},
                new long[] {0x1000, 0x1000})) {
            GuestAllocator a = new GuestAllocator(mem, 5, 0);
            assertThat(a.regionBoundaries()).isEmpty();
            a.allocate(0x800);
            long second = a.allocate(0x1000);
            assertThat(second).as("does not fit after the first: goes to the second region")
                    .isEqualTo(BASE + 0x100000);
            assertThatThrownBy(() -> a.allocateAcrossBoundary(16)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("no free range of 16 bytes across a region boundary");
        }
    }

    @Test
    void exhaustionAndDoubleFreeNameTheProblem() throws Exception {
        try (GuestMemory mem = MemfdGuestMemory.create(BASE, 0x1000)) {
            GuestAllocator a = new GuestAllocator(mem, 5, 0);
            long x = a.allocate(0x800);
            assertThatThrownBy(() -> a.allocate(0x900)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("guest memory exhausted").hasMessageContaining("2304 bytes");
            a.free(x);
            assertThatThrownBy(() -> a.free(x)).hasMessageContaining("not allocated");
            assertThat(a.allocate(0x1000)).as("freed space coalesced").isEqualTo(BASE);
        }
    }
}
