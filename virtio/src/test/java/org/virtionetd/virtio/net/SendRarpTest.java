package org.virtionetd.virtio.net;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.testdriver.InMemoryBackend;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.Arrays;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * SEND_RARP (vhost-user.rst: "Ask vhost user back-end to broadcast a fake RARP to notify the migration is
 * terminated for guest that does not support GUEST_ANNOUNCE"): the device sends an RFC 903 RARP request from the
 * guest's MAC through its backend, with the vnet header length the backend was configured with, also when the
 * device was reset in between (QEMU stops and starts the device around a migration's end; a reset does not
 * reconfigure the backend, and a tap refuses a header of another length). QEMU's first rounds can come before the
 * features: that RARP waits until the backend is configured.
 */
class SendRarpTest {
    private static final byte[] GUEST_MAC = {0x52, 0x54, 0x00, 0x12, 0x34, 0x58};

    @Test
    void rarpGoesOutWithTheBackendsHeaderLengthBeforeAndAfterAReset() throws Exception {
        try (NetFixture f = NetFixture.started(0, new VirtioNetDriver.Options())) {
            InMemoryBackend backend = f.backend();
            int configured = backend.configureCalls().get(backend.configureCalls().size() - 1).vnetHeaderLength();
            assertThat(configured).as("VERSION_1 header").isEqualTo(12);

            f.device.sendRarp(GUEST_MAC);
            f.device.reset();
            f.device.sendRarp(GUEST_MAC);

            for (InMemoryBackend.Sent s : backend.awaitSent(2, Duration.ofSeconds(5))) {
                assertThat(s.header()).as("vnet header of the RARP").hasSize(configured);
                byte[] frame = s.frame();
                assertThat(frame).hasSize(60);
                assertThat(Arrays.copyOfRange(frame, 0, 6)).as("destination: broadcast")
                        .containsOnly((byte) 0xff);
                assertThat(Arrays.copyOfRange(frame, 6, 12)).as("source: the guest").isEqualTo(GUEST_MAC);
                assertThat(frame[12] & 0xff).isEqualTo(0x80);
                assertThat(frame[13] & 0xff).as("EtherType RARP 0x8035").isEqualTo(0x35);
                assertThat(frame[21]).as("opcode 3, request reverse").isEqualTo((byte) 3);
                assertThat(Arrays.copyOfRange(frame, 22, 28)).as("sender hardware address")
                        .isEqualTo(GUEST_MAC);
                assertThat(Arrays.copyOfRange(frame, 32, 38)).as("target hardware address")
                        .isEqualTo(GUEST_MAC);
            }
            assertThat(backend.violations()).isEmpty();
        }
    }

    @Test
    void aRarpBeforeTheFeaturesGoesOutOnceTheBackendIsConfigured() throws Exception {
        try (NetFixture f = NetFixture.builder().inMemoryBackends(0).options(new VirtioNetDriver.Options()).build()) {
            InMemoryBackend backend = f.backend();
            f.device.sendRarp(GUEST_MAC);
            assertThat(backend.sentCount()).as("nothing goes out before the backend's header length is known")
                    .isZero();

            f.driver.start();

            InMemoryBackend.Sent s = backend.awaitSent(1, Duration.ofSeconds(5)).get(0);
            assertThat(s.header()).as("vnet header of the RARP").hasSize(12);
            assertThat(Arrays.copyOfRange(s.frame(), 6, 12)).as("source: the guest").isEqualTo(GUEST_MAC);
            assertThat(backend.sentCount()).as("sent once").isEqualTo(1);
            assertThat(backend.violations()).isEmpty();
        }
    }
}
