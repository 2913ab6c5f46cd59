package org.virtionetd.virtio.net;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.PackedHostileChains;
import org.virtionetd.virtio.testdriver.PackedQueueDriver;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.virtio.net.CounterDelta.assertChanged;

/**
 * The device on packed rings only (virtio 1.2, 2.8): an odd queue size over many laps, and the packed ring's own
 * hostile cases through the whole device: a lying ring marks NEEDS_RESET once while the other queues keep working,
 * a buffer ID beyond the queue comes back empty and counted.
 */
class PackedRingDeviceTest {
    private static final Duration WAIT = Duration.ofSeconds(5);

    private static byte[] frame(int length, long seed) {
        return VirtioNetDeviceTest.frame(VirtioNetDeviceTest.mac(9), length, seed);
    }

    @Test
    void anOddQueueSizeCarriesTrafficOverManyLaps() throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, RingFormat.PACKED.options().queueSize(13))) {
            for (int i = 0; i < 100; i++) {
                byte[] out = frame(60 + i, i);
                f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), out,
                        VirtioNetDriver.TxShape.simple().framePieces(1 + i % 3)));
                assertThat(f.backend().awaitSent(i + 1, WAIT).get(i).frame()).isEqualTo(out);
                byte[] in = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 100 + i, 1000 + i);
                f.backend().deliver(in);
                assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
            }
            assertThat(f.driver.packedQueue(1).nextUsed() & (PackedQueueDriver.WRAP - 1)).isLessThan(13);
        }
    }

    static Stream<Arguments> lyingRings() {
        return Stream.of(
                Arguments.of("AVAIL and USED both at the wrap counter",
                        (Consumer<PackedHostileChains>) PackedHostileChains::flagsContradictWrap),
                Arguments.of("NEXT on every descriptor",
                        (Consumer<PackedHostileChains>) PackedHostileChains::chainWrapsRing),
                Arguments.of("a later descriptor not available",
                        (Consumer<PackedHostileChains>) PackedHostileChains::laterDescriptorNotAvailable));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("lyingRings")
    void aLyingPackedRingMarksNeedsResetOnceAndTheOtherQueuesGoOn(String name, Consumer<PackedHostileChains> lie)
            throws Exception {
        try (Captured log = new Captured();
             NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, RingFormat.PACKED.options().queueSize(7))) {
            // A few chains first, so that the lie is told in a later lap.
            for (int i = 0; i < 9; i++) {
                f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), frame(60, i)));
            }
            lie.accept(new PackedHostileChains(f.driver.transmitQueue(0)));
            f.driver.kick(VirtioNetDriver.transmitQueueIndex(0)).signal();
            Await.until(WAIT, () -> (f.device.status() & DeviceStatus.NEEDS_RESET) != 0, "NEEDS_RESET after " + name,
                    () -> DeviceStatus.describe(f.device.status()) + "; " + f.driver.transmitQueue(0).describe());
            assertThat(f.counters().needsReset.sum()).isEqualTo(1);
            // The receive queue keeps working.
            byte[] in = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 100, 3);
            f.backend().deliver(in);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
            assertThat(log.matching("NEEDS_RESET")).as("logged once").hasSize(1);
            assertThat(log.matching("NEEDS_RESET").get(0)).contains("queue 1");
        }
    }

    @Test
    void aBufferIdBeyondTheQueueComesBackEmptyCountedAndLoggedOnce() throws Exception {
        try (Captured log = new Captured();
             NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, RingFormat.PACKED.options())) {
            Map<String, Long> before = f.snapshot();
            PackedHostileChains hostile = new PackedHostileChains(f.driver.transmitQueue(0));
            for (int offset = 0; offset < 2; offset++) {
                Chain bad = hostile.bufferIdOutOfRange(offset);
                assertThat(f.driver.awaitTransmitted(0, bad).len()).isZero();
            }
            byte[] good = frame(100, 1);
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), good));
            assertThat(f.backend().awaitSent(1, WAIT)).extracting(s -> s.frame()).containsExactly(good);
            assertChanged(before, f.snapshot(), "invalid_chains", 2, "tx_packets", 1, "needs_reset", 0);
            assertThat(log.matching("buffer ID")).as("logged once").hasSize(1);
            assertThat(f.device.status() & DeviceStatus.NEEDS_RESET).isZero();
        }
    }

    /** Every record of the project's loggers while open. */
    static final class Captured extends Handler implements AutoCloseable {
        private final Logger root = Logger.getLogger("org.virtionetd");
        private final List<String> lines = new ArrayList<>();

        Captured() {
            setLevel(Level.ALL);
            root.addHandler(this);
        }

        @Override
        public synchronized void publish(LogRecord r) {
            lines.add(r.getMessage());
        }

        synchronized List<String> matching(String text) {
            return lines.stream().filter(l -> l != null && l.contains(text)).toList();
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
            root.removeHandler(this);
        }
    }
}
