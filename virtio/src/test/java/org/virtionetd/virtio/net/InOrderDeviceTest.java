package org.virtionetd.virtio.net;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.QueueDriver;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.UsedElement;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * VIRTIO_F_IN_ORDER through the device (virtio 1.2, 2.7.9 / 2.8.9): a TX burst the device sent whole comes back as
 * one used element (split) or descriptor (packed), the driver returning every buffer up to its ID.
 */
class InOrderDeviceTest {
    @ParameterizedTest
    @EnumSource(value = RingFormat.class, names = {"SPLIT_IN_ORDER", "PACKED_IN_ORDER"})
    void aTxBurstComesBackAsOneUsedEntry(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, format.options())) {
            List<byte[]> frames = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                frames.add(VirtioNetDeviceTest.frame(VirtioNetDeviceTest.mac(9), 80, i));
            }
            List<Chain> chains = f.driver.transmitBatch(0, NetHeaderFields.none(), frames);
            QueueDriver tx = f.driver.transmitQueue(0);
            List<UsedElement> used = new ArrayList<>();
            Await.until(Duration.ofSeconds(5), () -> {
                used.addAll(tx.pollUsed());
                return used.size() == chains.size();
            }, "the burst back", tx::describe);
            assertThat(used).extracting(UsedElement::chain).containsExactlyElementsOf(chains);
            assertThat(used).extracting(UsedElement::ringIndex).as("one used entry for the burst")
                    .containsOnly(used.get(0).ringIndex());
            assertThat(f.backend().awaitSent(10, Duration.ofSeconds(5))).extracting(s -> s.frame())
                    .containsExactlyElementsOf(frames);
        }
    }
}
