package org.virtionetd.virtio.net;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Busy polling (NetDeviceConfig.busyPollMicros): after a round that found a backlog the queue pair keeps looking at
 * its rings without kicks for the window; with polling off, chains published without a kick wait for one.
 * The driver's kicks are swallowed here (its kick fd is taken away), so only polling can find the later chains.
 */
class BusyPollTest {
    private static final int BACKLOG = QueuePairLoop.BUSY_ROUND_PACKETS + 8;

    private static NetFixture fixture(RingFormat format, int busyPollMicros) throws Exception {
        return NetFixture.started(0, format.options(), b -> b.busyPollMicros(busyPollMicros));
    }

    /**
     * Publishes a backlog with one avail.idx update and no kick, then one kick: the device takes all of it in one
     * round. (Published one by one, a device awake for another reason could take it in pieces, none a backlog.)
     */
    private static void backlogThenOneKick(NetFixture f) {
        f.driver.transmitQueue(0).setKick(null);
        List<byte[]> frames = new ArrayList<>();
        for (int i = 0; i < BACKLOG; i++) {
            frames.add(VirtioNetDeviceTest.frame(new byte[6], 60, i));
        }
        List<Chain> chains = f.driver.transmitBatch(0, NetHeaderFields.none(), frames);
        f.driver.kick(VirtioNetDriver.transmitQueueIndex(0)).signal();
        for (Chain c : chains) {
            f.driver.awaitTransmitted(0, c);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void afterABacklogChainsPublishedWithoutAKickAreStillTransmitted(RingFormat format) throws Exception {
        try (NetFixture f = fixture(format, NetDeviceConfig.MAX_BUSY_POLL_MICROS)) {
            backlogThenOneKick(f);
            // Each chain comes well inside the window of the one before, so polling goes on from chain to chain.
            for (int i = 0; i < 20; i++) {
                f.driver.awaitTransmitted(0,
                        f.driver.transmit(0, NetHeaderFields.none(), VirtioNetDeviceTest.frame(new byte[6], 60, 100 + i)));
            }
            assertThat(f.backend().sent()).hasSize(BACKLOG + 20);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void withoutPollingAChainPublishedWithoutAKickWaitsForOne(RingFormat format) throws Exception {
        try (NetFixture f = fixture(format, 0)) {
            backlogThenOneKick(f);
            Chain late = f.driver.transmit(0, NetHeaderFields.none(), VirtioNetDeviceTest.frame(new byte[6], 60, 7));
            Await.during(Duration.ofMillis(300), () -> f.backend().sent().size() == BACKLOG,
                    "no transmission without a kick", () -> f.backend().sent().size() + " frames sent");
            f.driver.kick(VirtioNetDriver.transmitQueueIndex(0)).signal();
            f.driver.awaitTransmitted(0, late);
            assertThat(f.backend().sent()).hasSize(BACKLOG + 1);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void pollingStopsWhenTrafficStopsAndKicksWakeTheDeviceAgain(RingFormat format) throws Exception {
        try (NetFixture f = fixture(format, 2000)) {
            backlogThenOneKick(f);
            // Not a wait for a condition: the 2 ms window must run out, and nothing outside shows that it did.
            Thread.sleep(100);
            Chain late = f.driver.transmit(0, NetHeaderFields.none(), VirtioNetDeviceTest.frame(new byte[6], 60, 8));
            Await.during(Duration.ofMillis(300), () -> f.backend().sent().size() == BACKLOG,
                    "no transmission without a kick once polling stopped", () -> f.backend().sent().size() + " sent");
            f.driver.kick(VirtioNetDriver.transmitQueueIndex(0)).signal();
            f.driver.awaitTransmitted(0, late);
        }
    }
}
