package org.virtionetd.virtio.net;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.HostileChains;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.SplitQueueDriver;
import org.virtionetd.virtio.testdriver.UsedElement;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.virtio.net.CounterDelta.assertChanged;

/**
 * Every chain the spec forbids (2.7.4 - 2.7.6), on the transmit and the receive queue: a malformed chain comes
 * back with length 0 and is counted, a lying ring sets NEEDS_RESET; either way the device keeps serving (a good
 * packet afterwards goes through, or a reset brings the device back).
 */
class HostileGuestTest {
    static Stream<Arguments> malformedTxChains() {
        List<Arguments> cases = new ArrayList<>();
        cases.add(Arguments.of("descriptor loop", (Function<HostileChains, Chain>) h -> h.descriptorLoop(3)));
        cases.add(Arguments.of("chain longer than the queue", (Function<HostileChains, Chain>) HostileChains::chainLongerThanQueue));
        cases.add(Arguments.of("indirect inside indirect", (Function<HostileChains, Chain>) HostileChains::nestedIndirect));
        cases.add(Arguments.of("indirect table length 24", (Function<HostileChains, Chain>) h -> h.indirectTableLength(24)));
        cases.add(Arguments.of("indirect table length 0", (Function<HostileChains, Chain>) h -> h.indirectTableLength(0)));
        cases.add(Arguments.of("INDIRECT with NEXT", (Function<HostileChains, Chain>) HostileChains::indirectWithNext));
        cases.add(Arguments.of("address outside memory", (Function<HostileChains, Chain>) h -> h.addressOutsideMemory(false)));
        cases.add(Arguments.of("address wrapping 2^64", (Function<HostileChains, Chain>) h -> h.addressWrapping(false)));
        cases.add(Arguments.of("length 0xffffffff", (Function<HostileChains, Chain>) h -> h.hugeLength(false)));
        cases.add(Arguments.of("next out of range", (Function<HostileChains, Chain>) HostileChains::nextOutOfRange));
        cases.add(Arguments.of("indirect table outside memory", (Function<HostileChains, Chain>) HostileChains::indirectTableOutsideMemory));
        cases.add(Arguments.of("writable before readable", (Function<HostileChains, Chain>) HostileChains::writableBeforeReadable));
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("malformedTxChains")
    void malformedTxChainIsReturnedEmptyAndTheDeviceGoesOn(String name, Function<HostileChains, Chain> build)
            throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, new VirtioNetDriver.Options())) {
            Map<String, Long> before = f.snapshot();
            Chain bad = build.apply(new HostileChains(f.driver.transmitQueue(0)));
            UsedElement used = f.driver.awaitTransmitted(0, bad);
            assertThat(used.len()).as("used len of the malformed chain").isZero();
            byte[] good = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.mac(9), 100, 1);
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), good));
            assertThat(f.backend().awaitSent(1, Duration.ofSeconds(5))).extracting(s -> s.frame()).containsExactly(good);
            Map<String, Long> after = f.snapshot();
            assertThat(after.get("invalid_chains") + after.get("tx_bad_chain")
                    - before.get("invalid_chains") - before.get("tx_bad_chain")).as("counted once: %s",
                    CounterDelta.delta(before, after)).isEqualTo(1);
            assertChanged(before, after, "tx_packets", 1, "needs_reset", 0);
            assertThat(f.device.status() & DeviceStatus.NEEDS_RESET).isZero();
        }
    }

    static Stream<Arguments> malformedRxChains() {
        return Stream.of(
                Arguments.of("writable address outside memory", (Function<HostileChains, Chain>) h -> h.addressOutsideMemory(true)),
                Arguments.of("writable address wrapping", (Function<HostileChains, Chain>) h -> h.addressWrapping(true)),
                Arguments.of("writable length 0xffffffff", (Function<HostileChains, Chain>) h -> h.hugeLength(true)),
                Arguments.of("readable buffer on the receive queue", (Function<HostileChains, Chain>) h -> h.addressOutsideMemory(false)),
                Arguments.of("descriptor loop", (Function<HostileChains, Chain>) h -> h.descriptorLoop(4)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("malformedRxChains")
    void malformedRxChainIsReturnedEmptyAndTheFrameTakesTheNextBuffer(String name, Function<HostileChains, Chain> build)
            throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS,
                new VirtioNetDriver.Options().fillRxOnStart(false))) {
            SplitQueueDriver rxq = f.driver.receiveQueue(0);
            Map<String, Long> before = f.snapshot();
            Chain bad = build.apply(new HostileChains(rxq));
            byte[] in = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 500, 2);
            f.backend().deliver(in);
            List<UsedElement> got = new ArrayList<>();
            Await.until(Duration.ofSeconds(5), () -> got.addAll(rxq.pollUsed()) && got.size() > 0 || !got.isEmpty(),
                    "the device to return the malformed RX chain", rxq::describe);
            assertThat(got.get(0).chain()).isSameAs(bad);
            assertThat(got.get(0).len()).isZero();
            rxq.releaseBuffers(bad);
            f.driver.fillRx(0);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
            assertChanged(before, f.snapshot(), "invalid_chains", 1, "rx_packets", 1, "needs_reset", 0);
        }
    }

    @Test
    void headIndexOutOfRangeMarksNeedsResetAndAResetRecovers() throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, new VirtioNetDriver.Options())) {
            new HostileChains(f.driver.transmitQueue(0)).headOutOfRange(5);
            Await.until(Duration.ofSeconds(5), () -> (f.device.status() & DeviceStatus.NEEDS_RESET) != 0,
                    "NEEDS_RESET after a head index beyond the queue", () -> DeviceStatus.describe(f.device.status()));
            assertThat(f.counters().needsReset.sum()).isEqualTo(1);
            // The device keeps serving the other queues meanwhile.
            byte[] in = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 100, 3);
            f.backend().deliver(in);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
            // A reset and a new driver: traffic flows again.
            VirtioNetDriver second = new VirtioNetDriver(f.device, f.driver.allocator(),
                    new VirtioNetDriver.Options().seed(7).timeout(Duration.ofSeconds(10)));
            second.start();
            assertThat(f.device.status() & DeviceStatus.NEEDS_RESET).isZero();
            byte[] out = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.mac(9), 100, 4);
            second.awaitTransmitted(0, second.transmit(0, NetHeaderFields.none(), out));
            assertThat(f.backend().awaitSent(1, Duration.ofSeconds(5)).get(0).frame()).isEqualTo(out);
        }
    }

    @Test
    void availIndexTooFarAheadMarksNeedsReset() throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, new VirtioNetDriver.Options())) {
            new HostileChains(f.driver.transmitQueue(0)).availIdxAhead(f.driver.transmitQueue(0).size() + 1);
            f.driver.kick(1).signal(); // the lying driver still rings the doorbell
            Await.until(Duration.ofSeconds(5), () -> (f.device.status() & DeviceStatus.NEEDS_RESET) != 0,
                    "NEEDS_RESET after avail.idx jumped more than the queue size",
                    () -> DeviceStatus.describe(f.device.status()));
            assertThat(f.counters().needsReset.sum()).isEqualTo(1);
        }
    }

    @Test
    void indirectChainsWork() throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, new VirtioNetDriver.Options().rxIndirect(true).queueSize(64)
                .without(VirtioNetFeature.MRG_RXBUF))) {
            byte[] in = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 20_000, 5);
            f.backend().deliver(in);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
        }
    }

    @Test
    void indirectWithoutTheFeatureIsRefused() throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, new VirtioNetDriver.Options()
                .without(org.virtionetd.virtio.device.VirtioFeature.RING_INDIRECT_DESC))) {
            Map<String, Long> before = f.snapshot();
            Chain c = f.driver.transmit(0, NetHeaderFields.none(),
                    VirtioNetDeviceTest.frame(VirtioNetDeviceTest.mac(9), 100, 6),
                    VirtioNetDriver.TxShape.simple().indirect(true));
            assertThat(f.driver.awaitTransmitted(0, c).len()).isZero();
            assertChanged(before, f.snapshot(), "invalid_chains", 1, "tx_packets", 0);
        }
    }
}
