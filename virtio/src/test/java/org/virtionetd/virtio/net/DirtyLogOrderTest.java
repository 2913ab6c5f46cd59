package org.virtionetd.virtio.net;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.memory.DirtyLog;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.Placed;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.UsedElement;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Every byte the device writes into a guest's receive buffer is marked in the dirty log after its last write
 * (vhost-user.rst, "Migration": the front-end reads and clears the log while the device runs, so a byte written
 * after its page was marked can be missed by the copy). The log here keeps what each marked range held when it
 * was marked; the bytes of every received buffer must still be what the last mark covering them saw.
 */
class DirtyLogOrderTest {

    /** Keeps a copy of each range at the moment it is marked. */
    static final class RecordingLog implements DirtyLog {
        private final GuestMemory memory;
        private final List<long[]> ranges = new ArrayList<>();
        private final List<byte[]> contents = new ArrayList<>();

        RecordingLog(GuestMemory memory) {
            this.memory = memory;
        }

        @Override
        public synchronized void mark(long gpa, long length) {
            byte[] now = new byte[(int) length];
            try {
                memory.read(gpa, now, 0, now.length);
            } catch (GuestMemoryException e) {
                throw new AssertionError("the device marked 0x" + Long.toHexString(gpa) + "+" + length
                        + ", outside guest memory", e);
            }
            ranges.add(new long[] {gpa, length});
            contents.add(now);
        }

        /** What the last mark covering {@code gpa} saw there, or -1 if no mark covered it. */
        synchronized int lastMarked(long gpa) {
            for (int i = ranges.size() - 1; i >= 0; i--) {
                long[] r = ranges.get(i);
                if (gpa >= r[0] && gpa < r[0] + r[1]) {
                    return contents.get(i)[(int) (gpa - r[0])] & 0xff;
                }
            }
            return -1;
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void everyReceivedByteIsMarkedAfterItsLastWriteHeaderIncluded(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(0, format.options().mergeableBufferSize(1024))) {
            RecordingLog log = new RecordingLog(f.memory);
            f.memory.setDirtyLog(log);
            List<byte[]> frames = List.of(VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 60, 1),
                    VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 3000, 2),
                    VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 1500, 3));
            for (byte[] frame : frames) {
                f.backend().deliver(NetHeaderFields.none().encode(12), frame);
            }
            List<ReceivedPacket> got = f.driver.awaitPackets(0, frames.size());
            assertThat(got).hasSize(frames.size());
            assertThat(got.get(1).buffers()).as("the 3000-byte frame spans several buffers (num_buffers > 1)")
                    .hasSizeGreaterThan(1);
            f.memory.setDirtyLog(null);
            for (ReceivedPacket p : got) {
                for (UsedElement u : p.buffers()) {
                    long left = u.len();
                    for (Placed b : u.chain().elements()) {
                        if (!b.writable() || left == 0) {
                            continue;
                        }
                        long n = Math.min(left, b.length());
                        for (long i = 0; i < n; i++) {
                            long gpa = b.address() + i;
                            byte[] now = new byte[1];
                            f.memory.read(gpa, now, 0, 1);
                            assertThat(log.lastMarked(gpa))
                                    .as("byte 0x%x of %s (%s): what the last dirty mark saw", gpa, u, p)
                                    .isEqualTo(now[0] & 0xff);
                        }
                        left -= n;
                    }
                }
            }
        }
    }
}
