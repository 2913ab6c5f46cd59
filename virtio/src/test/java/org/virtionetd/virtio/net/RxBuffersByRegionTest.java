package org.virtionetd.virtio.net;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.testdriver.Buffer;
import org.virtionetd.virtio.testdriver.GuestAllocator;
import org.virtionetd.virtio.testdriver.QueueDriver;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.virtio.net.VirtioNetDeviceTest.DEVICE_MAC;
import static org.virtionetd.virtio.net.VirtioNetDeviceTest.frame;
import static org.virtionetd.virtio.net.VirtioNetFeature.MRG_RXBUF;

/**
 * {@link VirtioNetDevice#rxBuffersByRegion}: which memory region the receive buffers the device wrote into came
 * from (memory hot-plug shows buffers moving into a region added at run time), counted per buffer, and counted
 * again from zero on a new memory.
 */
class RxBuffersByRegionTest {
    private static final long R = NetFixture.REGION;

    private static NetFixture threeRegions(VirtioNetDriver.Options o) throws Exception {
        NetFixture f = NetFixture.builder().inMemoryBackends(VirtioNetFeature.OFFLOADS).memory(R, R, R)
                .options(o.fillRxOnStart(false).autoRefill(false)).start();
        // The rings are the driver's only allocations and lie in region 0: buffers at fixed addresses in regions
        // 1 and 2 meet nothing.
        for (GuestAllocator.Range r : f.driver.allocator().live()) {
            assertThat(r.end()).as("driver allocation %s", r).isLessThanOrEqualTo(R);
        }
        return f;
    }

    /** {@code count} one-descriptor buffers of {@code size} bytes from {@code gpa} on, a page apart. */
    private static void post(NetFixture f, long gpa, int count, int size) {
        QueueDriver q = f.driver.receiveQueue(0);
        for (int i = 0; i < count; i++) {
            q.addChain(Buffer.writable(size).at(gpa + i * 4096L));
        }
    }

    private static List<Long> counts(NetFixture f) {
        return f.device.rxBuffersByRegion().stream().map(RegionRxBuffers::rxBuffers).toList();
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void buffersAreCountedInTheRegionTheyLieIn(RingFormat format) throws Exception {
        try (NetFixture f = threeRegions(format.options())) {
            assertThat(f.device.rxBuffersByRegion()).containsExactly(new RegionRxBuffers(0, R, 0),
                    new RegionRxBuffers(R, R, 0), new RegionRxBuffers(2 * R, R, 0));
            post(f, R + 0x1000, 3, 1536);
            for (int i = 0; i < 3; i++) {
                f.backend().deliver(frame(DEVICE_MAC, 200 + i, i));
            }
            f.driver.awaitPackets(0, 3);
            assertThat(counts(f)).containsExactly(0L, 3L, 0L);

            // Mergeable buffers: a 2500-byte frame takes two 1536-byte buffers, both counted.
            post(f, 2 * R + 0x1000, 2, 1536);
            f.backend().deliver(frame(DEVICE_MAC, 2500, 9));
            ReceivedPacket p = f.driver.awaitPackets(0, 1).get(0);
            assertThat(p.header().numBuffers()).isEqualTo(2);
            assertThat(counts(f)).containsExactly(0L, 3L, 2L);
            assertThat(f.counters().rxPackets.sum()).isEqualTo(4);
        }
    }

    @Test
    void withoutMergeableBuffersAFrameCountsOneBufferWhereItsFirstByteIs() throws Exception {
        try (NetFixture f = threeRegions(new VirtioNetDriver.Options().without(MRG_RXBUF))) {
            assertThat(f.driver.rxMode()).isEqualTo(VirtioNetDriver.RxMode.BIG);
            // Header in region 1, the frame's room in region 2: one buffer, in region 1.
            f.driver.receiveQueue(0).addChain(Buffer.writable(f.driver.headerLength()).at(R + 0x2000),
                    Buffer.writable(4096).at(2 * R + 0x2000), Buffer.writable(4096).at(2 * R + 0x4000));
            f.backend().deliver(frame(DEVICE_MAC, 6000, 3));
            f.driver.awaitPackets(0, 1);
            assertThat(counts(f)).containsExactly(0L, 1L, 0L);
        }
    }

    @Test
    void aNewMemoryCountsFromZero() throws Exception {
        try (NetFixture f = threeRegions(new VirtioNetDriver.Options())) {
            post(f, R + 0x1000, 2, 1536);
            f.backend().deliver(frame(DEVICE_MAC, 100, 1));
            f.backend().deliver(frame(DEVICE_MAC, 100, 2));
            f.driver.awaitPackets(0, 2);
            assertThat(counts(f)).containsExactly(0L, 2L, 0L);

            // As after a vhost-user memory table change: a new GuestMemory (here over the same mappings, which the
            // fixture unmaps), the device told, the receive queue restarted on it.
            GuestMemory next = GuestMemory.of(f.memory.regions());
            f.device.setMemory(next);
            assertThat(counts(f)).as("counts of the old memory are not the new one's").containsExactly(0L, 0L, 0L);
            f.driver.restartQueue(VirtioNetDriver.receiveQueueIndex(0));
            assertThat(counts(f)).containsExactly(0L, 0L, 0L);

            post(f, 2 * R + 0x1000, 1, 1536);
            f.backend().deliver(frame(DEVICE_MAC, 100, 3));
            f.driver.awaitPackets(0, 1);
            assertThat(counts(f)).containsExactly(0L, 0L, 1L);

            // A restart on the same memory (a pause, the other queue of the pair) keeps the counts.
            f.driver.restartQueue(VirtioNetDriver.transmitQueueIndex(0));
            f.driver.restartQueue(VirtioNetDriver.receiveQueueIndex(0));
            assertThat(counts(f)).containsExactly(0L, 0L, 1L);
        }
    }
}
