package org.virtionetd.virtio.net;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.HostileChains;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.PackedHostileChains;
import org.virtionetd.virtio.testdriver.QueueDriver;
import org.virtionetd.virtio.testdriver.RingFormat;
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
    /** A malformed chain: how to build it on a split ring and, if the packed ring has the rule too, on a packed one. */
    record Malformed(String name, Function<HostileChains, Chain> split, Function<PackedHostileChains, Chain> packed) {
    }

    /** Each case on each ring format that has its rule: (format, name, builder on the queue). */
    static Stream<Arguments> onEveryFormat(List<Malformed> cases) {
        List<Arguments> out = new ArrayList<>();
        for (RingFormat format : RingFormat.values()) {
            for (Malformed m : cases) {
                if (!format.packed()) {
                    out.add(Arguments.of(format, m.name(), (Function<QueueDriver, Chain>) q -> m.split().apply(new HostileChains(q))));
                } else if (m.packed() != null) {
                    out.add(Arguments.of(format, m.name(), (Function<QueueDriver, Chain>) q -> m.packed().apply(new PackedHostileChains(q))));
                }
            }
        }
        return out.stream();
    }

    static Stream<Arguments> malformedTxChains() {
        List<Malformed> cases = new ArrayList<>();
        cases.add(new Malformed("descriptor loop", h -> h.descriptorLoop(3), null));
        cases.add(new Malformed("chain longer than the queue", HostileChains::chainLongerThanQueue, PackedHostileChains::chainLongerThanQueue));
        cases.add(new Malformed("indirect inside indirect", HostileChains::nestedIndirect, PackedHostileChains::nestedIndirect));
        cases.add(new Malformed("indirect table length 24", h -> h.indirectTableLength(24), h -> h.indirectTableLength(24)));
        cases.add(new Malformed("indirect table length 0", h -> h.indirectTableLength(0), h -> h.indirectTableLength(0)));
        cases.add(new Malformed("INDIRECT with NEXT", HostileChains::indirectWithNext, PackedHostileChains::indirectWithNext));
        cases.add(new Malformed("address outside memory", h -> h.addressOutsideMemory(false), h -> h.addressOutsideMemory(false)));
        cases.add(new Malformed("address wrapping 2^64", h -> h.addressWrapping(false), h -> h.addressWrapping(false)));
        cases.add(new Malformed("length 0xffffffff", h -> h.hugeLength(false), h -> h.hugeLength(false)));
        cases.add(new Malformed("next out of range", HostileChains::nextOutOfRange, null));
        cases.add(new Malformed("indirect table outside memory", HostileChains::indirectTableOutsideMemory, PackedHostileChains::indirectTableOutsideMemory));
        cases.add(new Malformed("writable before readable", HostileChains::writableBeforeReadable, PackedHostileChains::writableBeforeReadable));
        return onEveryFormat(cases);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("malformedTxChains")
    void malformedTxChainIsReturnedEmptyAndTheDeviceGoesOn(RingFormat format, String name,
                                                           Function<QueueDriver, Chain> build) throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, format.options())) {
            Map<String, Long> before = f.snapshot();
            Chain bad = build.apply(f.driver.transmitQueue(0));
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
        return onEveryFormat(List.of(
                new Malformed("writable address outside memory", h -> h.addressOutsideMemory(true), h -> h.addressOutsideMemory(true)),
                new Malformed("writable address wrapping", h -> h.addressWrapping(true), h -> h.addressWrapping(true)),
                new Malformed("writable length 0xffffffff", h -> h.hugeLength(true), h -> h.hugeLength(true)),
                new Malformed("readable buffer on the receive queue", h -> h.addressOutsideMemory(false), h -> h.addressOutsideMemory(false)),
                new Malformed("descriptor loop", h -> h.descriptorLoop(4), null)));
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("malformedRxChains")
    void malformedRxChainIsReturnedEmptyAndTheFrameTakesTheNextBuffer(RingFormat format, String name,
                                                                      Function<QueueDriver, Chain> build) throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, format.options().fillRxOnStart(false))) {
            QueueDriver rxq = f.driver.receiveQueue(0);
            Map<String, Long> before = f.snapshot();
            Chain bad = build.apply(rxq);
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

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void indirectChainsWork(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, format.options().rxIndirect(true).queueSize(64)
                .without(VirtioNetFeature.MRG_RXBUF))) {
            byte[] in = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 20_000, 5);
            f.backend().deliver(in);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void indirectWithoutTheFeatureIsRefused(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, format.options()
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
