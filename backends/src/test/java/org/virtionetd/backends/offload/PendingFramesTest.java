package org.virtionetd.backends.offload;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.atomic.LongAdder;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The pending-frame queue shared by OffloadingBackend and SwitchPort: entries, all-or-nothing, counting. */
class PendingFramesTest {
    final LongAdder checksums = new LongAdder();
    final LongAdder segmented = new LongAdder();
    final LongAdder segments = new LongAdder();
    final LongAdder noRoom = new LongAdder();
    final LongAdder[] drops = new LongAdder[OffloadResult.values().length];
    final PendingFrames pending;

    PendingFramesTest() {
        for (int i = 0; i < drops.length; i++) {
            drops[i] = new LongAdder();
        }
        pending = new PendingFrames(new SoftwareOffload(),
                new PendingFrames.Counts(checksums, segmented, segments, noRoom, r -> drops[r.ordinal()]));
    }

    static ByteBuffer direct(byte[] b) {
        ByteBuffer d = ByteBuffer.allocateDirect(b.length);
        d.put(b).flip();
        return d;
    }

    static byte[] take(ByteBuffer slice, int n) {
        byte[] out = new byte[n];
        slice.get(slice.position(), out);
        return out;
    }

    @ParameterizedTest(name = "vnet header {0} bytes")
    @ValueSource(ints = {VirtioNetHeader.LENGTH_LEGACY, VirtioNetHeader.LENGTH_MRG})
    void segmentsAreQueuedBehindAZeroHeaderAndCounted(int headerLength) {
        pending.headerLength(headerLength);
        TestFrames.Built f = TestFrames.build(new Random(1), 0, 4, 0, 0, TestFrames.L4_TCP, 0, 3000, 0x18);
        assertThat(pending.complete(direct(f.frame), TestFrames.gsoHeader(f, VirtioNetHeader.GSO_TCPV4, 1000)))
                .isEqualTo(OffloadResult.OK);
        assertThat(segmented.sum()).isEqualTo(1);
        assertThat(segments.sum()).isEqualTo(3);
        int frames = 0;
        while (!pending.isEmpty()) {
            int next = pending.nextLength();
            ByteBuffer slice = ByteBuffer.allocateDirect(2000).position(7);
            assertThat(pending.deliver(new ByteBuffer[] {slice}, 1)).isEqualTo(next);
            assertThat(slice.position()).as("positions kept").isEqualTo(7);
            assertThat(take(slice, headerLength)).isEqualTo(new byte[headerLength]);
            frames++;
        }
        assertThat(frames).isEqualTo(3);
    }

    @Test
    void aFrameWhoseOutputsDoNotFitLeavesNothingQueued() {
        TestFrames.Built f = TestFrames.build(new Random(2), 0, 4, 0, 0, TestFrames.L4_TCP, 0, 3000, 0);
        assertThat(pending.complete(direct(f.frame), TestFrames.gsoHeader(f, VirtioNetHeader.GSO_TCPV4, 1)))
                .isEqualTo(OffloadResult.TOO_MANY_SEGMENTS);
        assertThat(pending.isEmpty()).isTrue();
        assertThat(drops[OffloadResult.TOO_MANY_SEGMENTS.ordinal()].sum()).isEqualTo(1);
        assertThat(segmented.sum()).isZero();
    }

    @Test
    void aCopyIsKeptAsItIsAndAFrameTooBigForTheSlicesIsDroppedAndCounted() {
        byte[] whole = new byte[300];
        Arrays.fill(whole, (byte) 0x5a);
        pending.copy(direct(whole), 0, whole.length);
        pending.copy(direct(whole), 0, 100);
        assertThat(pending.nextLength()).isEqualTo(300);
        ByteBuffer small = ByteBuffer.allocate(200);
        assertThat(pending.deliver(new ByteBuffer[] {small}, 1)).isEqualTo(-1);
        assertThat(noRoom.sum()).isEqualTo(1);
        ByteBuffer[] two = {ByteBuffer.allocate(60), ByteBuffer.allocate(60)};
        assertThat(pending.deliver(two, 2)).isEqualTo(100);
        assertThat(take(two[0], 60)).containsOnly(0x5a);
        assertThat(take(two[1], 40)).containsOnly(0x5a);
        assertThat(pending.isEmpty()).isTrue();
    }

    @Test
    void aCopyThatCannotFitIsAnError() {
        byte[] big = new byte[PendingFrames.BYTES + 1];
        assertThatThrownBy(() -> pending.copy(ByteBuffer.wrap(big), 0, big.length))
                .hasMessageContaining(big.length + "-byte frame");
    }
}
