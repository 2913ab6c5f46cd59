package org.virtionetd.virtio.net;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.VirtioNetCtrl;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The control queue publishes and notifies through the same queue operation as TX and RX, so a notification the
 * driver did not want (VIRTQ_AVAIL_F_NO_INTERRUPT without EVENT_IDX, 2.7.10) is counted as suppressed there too.
 */
class ControlQueueNotificationTest {
    private static final long CAPABILITIES = 0;

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void aControlCommandIsNotifiedOrCountedAsSuppressedAsTheDriverAsked(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(CAPABILITIES, format.options().without(VirtioFeature.RING_EVENT_IDX))) {
            NetCounters c = f.counters();
            long notified = c.notifications.sum();
            assertThat(f.driver.announceAck()).isEqualTo(VirtioNetCtrl.OK);
            Await.until(Duration.ofSeconds(10), () -> c.notifications.sum() == notified + 1,
                    "one notification for the command", () -> "notifications " + c.notifications.sum()
                            + ", was " + notified);

            f.driver.controlQueue().suppressUsedNotifications(true);
            long suppressed = c.notificationsSuppressed.sum();
            assertThat(f.driver.announceAck()).isEqualTo(VirtioNetCtrl.OK);
            Await.until(Duration.ofSeconds(10), () -> c.notificationsSuppressed.sum() == suppressed + 1,
                    "the command's notification counted as suppressed",
                    () -> "notifications_suppressed " + c.notificationsSuppressed.sum() + ", was " + suppressed);
            assertThat(c.notifications.sum()).isEqualTo(notified + 1);
        }
    }
}
