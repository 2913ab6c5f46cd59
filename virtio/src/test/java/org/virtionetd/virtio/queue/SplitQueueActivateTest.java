package org.virtionetd.virtio.queue;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemoryRegion;
import org.virtionetd.virtio.os.LinuxNative;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** What {@link SplitQueue#activate} accepts and refuses before any ring access. */
class SplitQueueActivateTest {
    private static final int SIZE = 256;

    private static GuestMemory regionAtFdOffset(long fdOffset) throws Exception {
        int fd = LinuxNative.memfdCreate("activate-test", 1 << 20);
        return GuestMemory.of(List.of(MemoryRegion.map(0, (1 << 20) - 4096, 0x7f00_0000_0000L, fd, fdOffset)));
    }

    private static SplitQueue ringAt(long base) {
        return new SplitQueue(SIZE, base, base + 16 * SIZE, base + 8192, true, true);
    }

    @Test
    void ringsAlignedInGuestAndInThisProcessAreActivatedAndReadable() throws Exception {
        try (GuestMemory mem = regionAtFdOffset(4096)) {
            SplitQueue q = ringAt(0x1000);
            assertThat(q.activate(mem)).isNull();
            assertThat(q.readUsedIndex()).isZero();
            assertThat(q.available()).isZero();
        }
    }

    /**
     * Found by the vhost-user fuzzer: a region mapped at an odd mmap offset shifts aligned guest addresses to odd
     * host addresses, where the atomic ring index accesses threw instead of the queue being refused.
     */
    @Test
    void ringsMisalignedWhereTheRegionIsMappedAreRefusedWithAReason() throws Exception {
        for (long fdOffset : new long[] {1, 2, 4097}) {
            try (GuestMemory mem = regionAtFdOffset(fdOffset)) {
                String wrong = ringAt(0x1000).activate(mem);
                assertThat(wrong).as("fd offset %d", fdOffset)
                        .contains("avail=0x2000").contains("used=0x3000").contains("not where their region is mapped");
            }
        }
    }
}
