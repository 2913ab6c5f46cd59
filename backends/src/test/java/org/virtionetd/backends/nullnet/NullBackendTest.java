package org.virtionetd.backends.nullnet;

import org.junit.jupiter.api.Test;
import org.virtionetd.backends.Backends;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class NullBackendTest {
    @Test
    void specsParseAndWrongOnesNameThePart() {
        assertThat(Backends.parse("null").toString()).isEqualTo("null");
        assertThat(Backends.parse("null:source=64").toString()).isEqualTo("null:source=64");
        assertThatThrownBy(() -> Backends.parse("null:source=10")).hasMessageContaining("source size 10");
        assertThatThrownBy(() -> Backends.parse("null:source=x")).hasMessageContaining("'x' is not a number");
        assertThatThrownBy(() -> Backends.parse("null:sink")).hasMessageContaining("null:source=SIZE");
        assertThatThrownBy(() -> Backends.parse("vde:/tmp/x")).hasMessageContaining("unknown backend 'vde'");
        assertThat(Backends.parse("tap0").toString()).isEqualTo("tap:tap0");
        assertThat(Backends.parse("null:copy").toString()).isEqualTo("null:copy");
        assertThat(Backends.parse("null:copy,source=64").toString()).isEqualTo("null:copy,source=64");
        assertThat(Backends.parse("null:source=64,copy").toString()).isEqualTo("null:copy,source=64");
        assertThatThrownBy(() -> Backends.parse("null:copy,copy")).hasMessageContaining("option 'copy'");
        assertThatThrownBy(() -> Backends.parse("null:copy,fast")).hasMessageContaining("option 'fast'");
        assertThatThrownBy(() -> Backends.parse("null:")).hasMessageContaining("null:copy");
    }

    @Test
    void aCopyingSinkHoldsEveryByteOfTheLastPacketHeaderAndFrame() throws Exception {
        NullBackend backend = new NullBackend(0, true);
        assertThat(backend.name()).isEqualTo("null:copy");
        try (NetFixture f = NetFixture.builder().backend(p -> backend).memory(16 << 20)
                .options(new VirtioNetDriver.Options().queueSize(64)).start()) {
            VirtioNetDriver driver = f.driver;
            byte[] frame = new byte[3000];
            for (int i = 0; i < frame.length; i++) {
                frame[i] = (byte) (i * 7 + 1);
            }
            driver.awaitTransmitted(0, driver.transmit(0, NetHeaderFields.none(), frame));
            assertThat(backend.sentCount()).isEqualTo(1);
            java.nio.ByteBuffer copied = backend.lastCopied();
            int header = copied.remaining() - frame.length;
            assertThat(header).as("vnet header bytes before the frame").isIn(10, 12);
            byte[] got = new byte[frame.length];
            copied.position(header).get(got);
            assertThat(got).isEqualTo(frame);
        }
    }

    @Test
    void sinkCountsWhatTheGuestSendsAndSourceFeedsTheGuest() throws Exception {
        NullBackend backend = new NullBackend(100);
        try (NetFixture f = NetFixture.builder().backend(p -> backend).memory(16 << 20)
                .options(new VirtioNetDriver.Options().queueSize(64)).start()) {
            VirtioNetDriver driver = f.driver;
            for (int i = 0; i < 10; i++) {
                driver.awaitTransmitted(0, driver.transmit(0, NetHeaderFields.none(), new byte[60]));
            }
            assertThat(backend.sentCount()).isEqualTo(10);
            List<ReceivedPacket> got = driver.awaitPackets(0, 200);
            assertThat(got.get(0).frame()).hasSize(100);
            assertThat(got.get(0).frame()[12]).isEqualTo((byte) 0x08);
            Await.until(Duration.ofSeconds(5), () -> backend.deliveredCount() >= 200, "200 frames delivered",
                    () -> "delivered " + backend.deliveredCount());
        }
    }
}
