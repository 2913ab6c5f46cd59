package org.virtionetd.backends.nullnet;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.virtionetd.virtio.net.VirtioNetDevice;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The data path allocates nothing per packet once warm (README.md, {@code loop_allocated_bytes}), so a busy device
 * causes no garbage collection: the bytes allocated by the queue pair's event-loop thread (ThreadMXBean, exact per
 * thread) hardly move while thousands of packets cross in each direction. The driver runs on the test thread, so its
 * own allocations do not count.
 */
class SteadyStateAllocationTest {
    private static final int WARM_UP = 20_000;
    private static final int MEASURED = 20_000;

    /** {@code copy}: the sink copies each packet (null:copy, the benchmark's tx case) rather than dropping it. */
    @ParameterizedTest(name = "copy={0}")
    @ValueSource(booleans = {false, true})
    void theEventLoopAllocatesNothingPerPacket(boolean copy) throws Exception {
        NullBackend backend = new NullBackend(64, copy);
        try (NetFixture f = NetFixture.builder().backend(p -> backend).memory(32 << 20)
                .options(new VirtioNetDriver.Options().queueSize(256)).timeout(Duration.ofSeconds(20)).start()) {
            VirtioNetDriver driver = f.driver;
            VirtioNetDevice device = f.device;
            byte[] frame = new byte[64];
            frame[12] = 0x08;
            traffic(driver, frame, WARM_UP);
            long before = device.loopAllocatedBytes(0);
            long sentBefore = backend.sentCount();
            long deliveredBefore = backend.deliveredCount();
            traffic(driver, frame, MEASURED);
            long after = device.loopAllocatedBytes(0);
            long packets = backend.sentCount() - sentBefore + backend.deliveredCount() - deliveredBefore;
            assertThat(before).as("allocation counter of the loop thread").isNotNegative();
            assertThat(packets).isGreaterThanOrEqualTo(MEASURED);
            assertThat((after - before) / (double) packets)
                    .as("bytes allocated per packet by the event loop (%d bytes for %d packets)", after - before,
                            packets)
                    .isLessThan(1.0);
        }
    }

    /** Sends {@code n} frames and receives at least as many (the source never runs dry). */
    private static void traffic(VirtioNetDriver driver, byte[] frame, int n) {
        int received = 0;
        for (int i = 0; i < n; i++) {
            if (driver.transmitQueue(0).freeSlotCount() < 2) {
                Await.until(Duration.ofSeconds(10), () -> {
                    driver.reapTransmitted(0);
                    return driver.transmitQueue(0).freeSlotCount() >= 2;
                }, "TX descriptors back from the device", driver.transmitQueue(0)::describe);
            }
            driver.transmit(0, NetHeaderFields.none(), frame);
            received += driver.receive(0).size();
        }
        while (received < n) {
            received += driver.awaitPackets(0, 1).size();
        }
        driver.reapTransmitted(0);
    }
}
