package org.virtionetd.virtio.memory;

import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.LongRange;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Translation of guest-physical ranges: bounds, region and chunk boundaries, regions over 2 GiB. */
class GuestMemoryTest {
    @Test
    void rangesInsideOneRegionAreLocatedAndOthersAreNot() throws Exception {
        try (GuestMemory m = MemfdGuestMemory.create(new long[] {0x1000, 0x100000}, new long[] {0x2000, 0x1000})) {
            assertThat(m.locate(0x1000, 0x2000)).isNotEqualTo(GuestMemory.NOWHERE);
            assertThat(m.locate(0x2fff, 1)).isNotEqualTo(GuestMemory.NOWHERE);
            assertThat(m.locate(0x2fff, 2)).as("one byte past the region").isEqualTo(GuestMemory.NOWHERE);
            assertThat(m.locate(0xfff, 2)).as("one byte before the region").isEqualTo(GuestMemory.NOWHERE);
            assertThat(m.locate(0x3000, 1)).as("the gap between regions").isEqualTo(GuestMemory.NOWHERE);
            assertThat(m.locate(0x100fff, 1)).isNotEqualTo(GuestMemory.NOWHERE);
            assertThat(m.locate(-1L, 1)).isEqualTo(GuestMemory.NOWHERE);
            assertThat(m.contains(0x1000, 0x2001)).isFalse();
            assertThat(m.contains(Long.MAX_VALUE, Long.MAX_VALUE)).isFalse();
        }
    }

    @Test
    void aBufferAcrossTwoAdjacentRegionsIsSplitIntoTwoSlices() throws Exception {
        try (GuestMemory m = MemfdGuestMemory.create(new long[] {0, 0x10000}, new long[] {0x10000, 0x10000})) {
            byte[] data = new byte[100];
            for (int i = 0; i < data.length; i++) {
                data[i] = (byte) i;
            }
            m.write(0x10000 - 40, data, 0, 100);
            long[] locs = new long[4];
            int[] lens = new int[4];
            assertThat(m.resolve(0x10000 - 40, 100, locs, lens, 0, 4)).isEqualTo(2);
            assertThat(lens).startsWith(40, 60);
            assertThat(GuestMemory.chunkId(locs[0])).isNotEqualTo(GuestMemory.chunkId(locs[1]));
            assertThat(m.locate(0x10000 - 40, 100)).as("not one contiguous chunk").isEqualTo(GuestMemory.NOWHERE);
            byte[] back = new byte[100];
            m.read(0x10000 - 40, back, 0, 100);
            assertThat(back).isEqualTo(data);
            assertThat(m.resolve(0x10000 - 40, 100, locs, lens, 0, 1)).as("more pieces than allowed").isEqualTo(-2);
            assertThat(m.resolve(0x20000 - 10, 11, locs, lens, 0, 4)).as("past the end").isEqualTo(-1);
        }
    }

    @Test
    void aRegionLargerThanTwoGibibytesIsMappedInChunks() throws Exception {
        long size = 3L << 30; // memfd pages are allocated only when touched
        try (GuestMemory m = MemfdGuestMemory.create(0, size)) {
            assertThat(m.chunkCount()).isEqualTo(3);
            long far = size - 8;
            m.write(far, new byte[] {1, 2, 3, 4, 5, 6, 7, 8}, 0, 8);
            ByteBuffer b = m.slice(far, 8);
            assertThat(b.getLong(0)).isEqualTo(0x0807060504030201L);
            long[] locs = new long[4];
            int[] lens = new int[4];
            long boundary = 2L << 30;
            assertThat(m.resolve(boundary - 4, 8, locs, lens, 0, 4)).as("split at the 2 GiB chunk edge").isEqualTo(2);
            assertThat(m.locate(size, 1)).isEqualTo(GuestMemory.NOWHERE);
        }
    }

    @Test
    void everyChunkNamesItsRegion() throws Exception {
        long gib = MemoryRegion.CHUNK_SIZE;
        // Given out of order: regions() is sorted by guest address, and chunk ids follow it.
        try (GuestMemory m = MemfdGuestMemory.create(new long[] {4 * gib, 0}, new long[] {0x1000, gib + 0x1000})) {
            assertThat(m.chunkCount()).isEqualTo(3);
            assertThat(m.regions().get(0).guestAddress()).isZero();
            assertThat(m.regionOfChunk(GuestMemory.chunkId(m.locate(0, 1)))).isZero();
            assertThat(m.regionOfChunk(GuestMemory.chunkId(m.locate(gib, 1)))).as("second chunk of region 0").isZero();
            assertThat(m.regionOfChunk(GuestMemory.chunkId(m.locate(4 * gib, 1)))).isEqualTo(1);
        }
    }

    @Test
    void overlappingRegionsAreRefused() throws Exception {
        GuestMemory a = MemfdGuestMemory.create(0, 0x2000);
        GuestMemory b = MemfdGuestMemory.create(0x1000, 0x2000);
        try {
            List<MemoryRegion> both = List.of(a.regions().get(0), b.regions().get(0));
            assertThatThrownBy(() -> GuestMemory.of(both)).hasMessageContaining("overlap");
        } finally {
            a.close();
            b.close();
        }
    }

    @Test
    void userAddressesTranslateToGuestPhysical() throws Exception {
        try (GuestMemory m = MemfdGuestMemory.create(new long[] {0, 0x100000}, new long[] {0x1000, 0x1000})) {
            MemoryRegion r = m.regions().get(1);
            assertThat(m.guestAddressOfUser(r.userAddress() + 5)).isEqualTo(0x100005);
            assertThat(m.guestAddressOfUser(r.userAddress() + 0x1000)).isEqualTo(GuestMemory.NOWHERE);
        }
    }

    @Property(tries = 200)
    void resolvedPiecesCoverExactlyTheRange(@ForAll @LongRange(min = 0, max = 0x30000) long gpa,
                                            @ForAll @LongRange(min = 0, max = 0x8000) long length) throws Exception {
        try (GuestMemory m = MemfdGuestMemory.create(new long[] {0, 0x10000, 0x28000},
                new long[] {0x10000, 0x8000, 0x4000})) {
            long[] locs = new long[8];
            int[] lens = new int[8];
            int n = m.resolve(gpa, length, locs, lens, 0, 8);
            boolean inside = m.contains(gpa, length);
            if (!inside) {
                assertThat(n).isEqualTo(-1);
                return;
            }
            long total = 0;
            for (int i = 0; i < n; i++) {
                total += lens[i];
                ByteBuffer c = m.chunk(GuestMemory.chunkId(locs[i]));
                assertThat((long) GuestMemory.offset(locs[i]) + lens[i]).isLessThanOrEqualTo(c.capacity());
            }
            assertThat(total).isEqualTo(length);
        }
    }
}
