package org.virtionetd.virtio.queue;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemfdGuestMemory;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Where a packed ring resumes after SET_VRING_BASE ({@link PackedQueue#resumeAt}): at the base when the ring agrees,
 * at the position the ring's USED flags show when they show one and the base is another (a stale base: QEMU's
 * after its back-end was killed), at the base when the flags show none.
 */
class PackedQueueResumeTest {
    private static final int SIZE = 256;
    private static final long DESC = 0x1000;
    private static final int W = PackedQueue.WRAP;

    private GuestMemory memory;

    @BeforeEach
    void map() throws Exception {
        memory = MemfdGuestMemory.create(0, 1 << 20);
    }

    @AfterEach
    void unmap() {
        memory.close();
    }

    private void flags(int slot, int flags) throws Exception {
        memory.write(DESC + PackedQueue.DESC_SIZE * slot + 14, new byte[] {(byte) flags, (byte) (flags >> 8)}, 0, 2);
    }

    /**
     * The flags of a full ring (the driver refilled everything) with the device at {@code slot} of the lap with
     * wrap counter {@code wrap} (2.8.1): slots before it used in this lap and made available again for the next
     * (AVAIL = !wrap, USED = wrap), the others available in this lap (AVAIL = wrap, USED = !wrap).
     */
    private void fullRingAt(int slot, boolean wrap) throws Exception {
        for (int i = 0; i < SIZE; i++) {
            boolean before = i < slot;
            boolean avail = before != wrap;
            boolean used = before == wrap;
            flags(i, (avail ? PackedQueue.DESC_F_AVAIL : 0) | (used ? PackedQueue.DESC_F_USED : 0));
        }
    }

    private String resumed(int base) {
        PackedQueue q = new PackedQueue(SIZE, DESC, 0x10000, 0x20000, true, true, false);
        assertThat(q.activate(memory)).isNull();
        assertThat(q.resumeAt(base)).isNull();
        return Integer.toHexString(q.base());
    }

    private static String base(int slot, boolean wrap) {
        int p = slot | (wrap ? W : 0);
        return Integer.toHexString(p | p << 16);
    }

    @Test
    void aBaseTheRingAgreesWithIsKept() throws Exception {
        fullRingAt(77, true);
        assertThat(resumed(77 | W | (77 | W) << 16)).isEqualTo(base(77, true));
        fullRingAt(0, false);
        assertThat(resumed(0)).isEqualTo(base(0, false));
    }

    @Test
    void theResetBaseOnARingThatShowsTheDeviceElsewhereResumesThere() throws Exception {
        fullRingAt(137, false);
        assertThat(resumed(W | W << 16)).isEqualTo(base(137, false));
    }

    /**
     * Seen with QEMU 7.2 (PackedRingGuestIT): after a stop and cont QEMU holds the base of that stop; the device
     * went on more than a lap past it, its virtio-netd was killed, and the new one got that base. Its own slot's
     * USED flag (used in the device's lap, wrap 1) does not contradict it: only the whole ring does.
     */
    @Test
    void aStaleBaseOneLapBehindAndPastItsSlotResumesWhereTheRingShows() throws Exception {
        fullRingAt(240, true);
        assertThat(resumed(236 | 236 << 16)).isEqualTo(base(240, true));
    }

    @Test
    void aStaleBaseTwoLapsBehindResumesWhereTheRingShows() throws Exception {
        fullRingAt(60, true);
        assertThat(resumed(100 | W | (100 | W) << 16)).isEqualTo(base(60, true));
    }

    @Test
    void flagsThatStepMoreThanOnceShowNoPositionAndTheBaseIsKept() throws Exception {
        fullRingAt(100, true);
        // A three-descriptor chain used at slot 40: its second and third slots keep the driver's flags.
        flags(41, PackedQueue.DESC_F_AVAIL);
        flags(42, PackedQueue.DESC_F_AVAIL);
        assertThat(resumed(50 | W | (50 | W) << 16)).isEqualTo(base(50, true));
    }
}
