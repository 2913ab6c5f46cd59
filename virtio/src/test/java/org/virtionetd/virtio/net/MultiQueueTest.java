package org.virtionetd.virtio.net;

import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.VirtioNetCtrl;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.Set;
import java.util.stream.Collectors;

import static org.assertj.core.api.Assertions.assertThat;

/** Several queue pairs (5.1.6.5.5) and a round-trip property over random frames and chain shapes. */
class MultiQueueTest {
    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void pairsBeyondTheFirstReceiveOnlyAfterVqPairsSet(RingFormat format) throws Exception {
        NetFixture f = new NetFixture(VirtioNetFeature.OFFLOADS, 2, format.options());
        try {
            f.driver.start();
            assertThat(f.device.offeredFeatures() & VirtioNetFeature.bits(VirtioNetFeature.MQ)).isNotZero();
            assertThat(f.driver.queuePairs()).isEqualTo(2);
            f.backends.get(1).deliver(VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 100, 1));
            // 5.1.6.5.5: until VQ_PAIRS_SET only receiveq1 is used. Watch pair 1 for a while: nothing may arrive.
            long deadline = System.nanoTime() + 300_000_000L;
            while (System.nanoTime() < deadline) {
                assertThat(f.driver.receive(1)).as("frames on pair 1 before MQ_VQ_PAIRS_SET").isEmpty();
                Thread.onSpinWait();
            }
        } catch (Exception | AssertionError e) {
            f.close();
            throw e;
        }
        try {
            assertThat(f.driver.mqVqPairsSet(3)).isEqualTo(VirtioNetCtrl.ERR);
            assertThat(f.driver.mqVqPairsSet(0)).isEqualTo(VirtioNetCtrl.ERR);
            assertThat(f.driver.mqVqPairsSet(2)).isEqualTo(VirtioNetCtrl.OK);
            assertThat(f.driver.awaitPackets(1, 1)).hasSize(1);
            byte[] out = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.mac(9), 200, 2);
            f.driver.awaitTransmitted(1, f.driver.transmit(1, NetHeaderFields.none(), out));
            assertThat(f.backends.get(1).awaitSent(1, Duration.ofSeconds(5)).get(0).frame()).isEqualTo(out);
            assertThat(f.backends.get(0).sentCount()).isZero();
            Set<String> threads = Thread.getAllStackTraces().keySet().stream().map(Thread::getName)
                    .filter(n -> n.startsWith("virtio-net-pair-")).collect(Collectors.toSet());
            assertThat(threads).contains("virtio-net-pair-0", "virtio-net-pair-1");
        } finally {
            f.close();
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void aPairTheDriverDoesNotUseIsDisabledInItsBackend(RingFormat format) throws Exception {
        try (NetFixture f = new NetFixture(VirtioNetFeature.OFFLOADS, 2, format.options())) {
            f.driver.start();
            // 5.1.6.5.5: the driver starts on pair 0 only; pair 1's backend (a multi-queue tap queue) must not be
            // handed flows nobody reads.
            assertThat(f.backends.get(0).enabled()).isTrue();
            assertThat(f.backends.get(1).enabled()).as("pair 1 before MQ_VQ_PAIRS_SET").isFalse();
            assertThat(f.driver.mqVqPairsSet(2)).isEqualTo(VirtioNetCtrl.OK);
            assertThat(f.backends.get(1).enabled()).as("pair 1 after MQ_VQ_PAIRS_SET 2").isTrue();
            // A transport disabling pair 1's receive queue (vhost-user SET_VRING_ENABLE 0) disables its backend.
            f.device.setQueueEnabled(2, false);
            assertThat(f.backends.get(1).enabled()).as("pair 1 with receiveq2 disabled").isFalse();
            f.device.setQueueEnabled(3, true);
            assertThat(f.backends.get(1).enabled()).as("a transmit queue does not decide").isFalse();
            f.device.setQueueEnabled(2, true);
            assertThat(f.backends.get(1).enabled()).isTrue();
            assertThat(f.driver.mqVqPairsSet(1)).isEqualTo(VirtioNetCtrl.OK);
            assertThat(f.backends.get(1).enabled()).as("pair 1 after MQ_VQ_PAIRS_SET 1").isFalse();
            assertThat(f.backends.get(0).enabledCalls()).doesNotContain(false);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void aPairWhoseReceiveQueueIsStoppedOrResetIsDisabledInItsBackend(RingFormat format) throws Exception {
        try (NetFixture f = new NetFixture(VirtioNetFeature.OFFLOADS, 2, format.options())) {
            f.driver.start();
            assertThat(f.driver.mqVqPairsSet(2)).isEqualTo(VirtioNetCtrl.OK);
            assertThat(f.backends.get(1).enabled()).isTrue();
            // vhost-user GET_VRING_BASE of receiveq2: nobody reads pair 1 until it starts again.
            f.device.stopQueue(2);
            assertThat(f.backends.get(1).enabled()).as("pair 1 with receiveq2 stopped").isFalse();
            // A reset: the next driver (or a front-end with fewer pairs, which never starts pair 1) begins on pair 0.
            f.device.reset();
            assertThat(f.backends.get(1).enabled()).as("pair 1 after a reset").isFalse();
            assertThat(f.backends.get(0).enabled()).as("pair 0 after a reset").isTrue();
        }
    }

    @Property(tries = 25)
    void framesSurviveTheRoundTripInEveryShape(@ForAll @IntRange(min = 14, max = 9000) int length,
                                              @ForAll @IntRange(min = 1, max = 8) int pieces,
                                              @ForAll boolean headerSeparate, @ForAll boolean indirect,
                                              @ForAll boolean mergeable, @ForAll @IntRange(min = 0, max = 1000) int seed,
                                              @ForAll RingFormat format)
            throws Exception {
        VirtioNetDriver.Options o = format.options().seed(seed).queueSize(64);
        if (!mergeable) {
            o = o.without(VirtioNetFeature.MRG_RXBUF);
        }
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, o)) {
            byte[] frame = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.mac(9), length, seed);
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), frame,
                    VirtioNetDriver.TxShape.simple().framePieces(pieces).headerSeparate(headerSeparate)
                            .indirect(indirect)));
            assertThat(f.backend().awaitSent(1, Duration.ofSeconds(5)).get(0).frame()).isEqualTo(frame);
            byte[] in = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, length, seed + 1);
            f.backend().deliver(in);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
        }
    }
}
