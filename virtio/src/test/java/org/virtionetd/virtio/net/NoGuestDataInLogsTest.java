package org.virtionetd.virtio.net;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.testdriver.HostileChains;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import java.util.logging.SimpleFormatter;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.virtio.net.VirtioNetFeature.*;

/**
 * Nothing the device logs carries the guest's or the host's frame bytes: every frame here that the device must
 * drop and log (a header breaking the negotiated rules, a GSO size of 0, a malformed chain, a frame too big for
 * the buffers, an offload the driver did not accept) has a payload full of a marker string, and with every logger
 * at its finest level the marker appears in no log record, neither as text nor as hex. What the logs say is
 * what was wrong (rule, header fields, lengths, chain index), which the test also checks, so that it cannot pass
 * by logging nothing.
 */
class NoGuestDataInLogsTest {
    private static final String MARKER = "VND-SECRET-PAYLOAD";

    /** Collects every record as it would be printed, message and stack trace. */
    static final class Capture extends Handler {
        final List<String> lines = new ArrayList<>();
        private final SimpleFormatter formatter = new SimpleFormatter();

        @Override
        public synchronized void publish(LogRecord r) {
            lines.add(formatter.format(r));
        }

        synchronized List<String> lines() {
            return List.copyOf(lines);
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    }

    /** A frame to {@code dst} whose payload is the marker, repeated. */
    static byte[] markedFrame(byte[] dst, int length) {
        byte[] f = new byte[length];
        byte[] m = MARKER.getBytes(StandardCharsets.US_ASCII);
        for (int i = 14; i < length; i++) {
            f[i] = m[(i - 14) % m.length];
        }
        System.arraycopy(dst, 0, f, 0, 6);
        f[6] = 0x52;
        f[12] = 0x08;
        return f;
    }

    @Test
    void droppedFramesAreLoggedWithoutTheirBytes() throws Exception {
        Logger root = Logger.getLogger("org.virtionetd");
        Level oldLevel = root.getLevel();
        Capture capture = new Capture();
        capture.setLevel(Level.ALL);
        root.setLevel(Level.ALL);
        root.addHandler(capture);
        try {
            // TX: CSUM / HOST_TSO4 not negotiated, so NEEDS_CSUM and GSO frames break the rules.
            VirtioNetDriver.Options noHostOffloads = new VirtioNetDriver.Options().without(CSUM, HOST_TSO4, HOST_TSO6,
                    HOST_ECN, HOST_UFO, HOST_USO);
            try (NetFixture f = NetFixture.started(OFFLOADS, noHostOffloads)) {
                byte[] dst = VirtioNetDeviceTest.mac(9);
                f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.partialCsum(34, 16),
                        markedFrame(dst, 200)));
                f.driver.awaitTransmitted(0, f.driver.transmit(0,
                        new NetHeaderFields(0, NetHeaderFields.GSO_TCPV4, 54, 1448, 0, 0, 0), markedFrame(dst, 3000)));
                f.driver.awaitTransmitted(0, new HostileChains(f.driver.transmitQueue(0)).writableBeforeReadable());
                byte[] good = markedFrame(dst, 120);
                f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), good));
                assertThat(f.backend().awaitSent(1, Duration.ofSeconds(5))).hasSize(1);
            }
            // TX: GSO with size 0, everything negotiated.
            try (NetFixture f = NetFixture.started(OFFLOADS, new VirtioNetDriver.Options())) {
                f.driver.awaitTransmitted(0, f.driver.transmit(0,
                        NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 0, 66, 34, 16),
                        markedFrame(VirtioNetDeviceTest.mac(9), 3000)));
                assertThat(f.snapshot().get("tx_bad_header")).isEqualTo(1);
            }
            // RX: a frame too big for small buffers, and a GSO frame for a driver that accepted no offloads.
            VirtioNetDriver.Options small = new VirtioNetDriver.Options().without(MRG_RXBUF)
                    .features(VirtioNetDriver.LINUX_FEATURES & ~GUEST_OFFLOADS & ~bits(MRG_RXBUF));
            try (NetFixture f = NetFixture.started(OFFLOADS, small)) {
                byte[] mac = VirtioNetDeviceTest.DEVICE_MAC;
                f.backend().deliver(markedFrame(mac, 4000));
                f.backend().deliver(NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 1448, 66, 34, 16).encode(12),
                        markedFrame(mac, 1400));
                byte[] ok = markedFrame(mac, 200);
                f.backend().deliver(ok);
                assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(ok);
                Map<String, Long> c = f.snapshot();
                assertThat(c.get("rx_dropped_too_big")).isEqualTo(1);
                assertThat(c.get("rx_bad_offload")).isEqualTo(1);
            }
        } finally {
            root.removeHandler(capture);
            root.setLevel(oldLevel);
        }
        List<String> lines = capture.lines();
        String all = String.join("", lines);
        // The drops were logged (with what was wrong), so an empty log cannot make this pass.
        assertThat(all).as("log of the drops").contains("breaks rule")
                .contains("larger than the buffers").contains("offloads the driver did not accept")
                .contains("device-readable");
        String hex = HexFormat.of().formatHex(MARKER.getBytes(StandardCharsets.US_ASCII));
        for (String line : lines) {
            assertThat(line).as("a log record").doesNotContain(MARKER).doesNotContain(MARKER.substring(0, 8))
                    .doesNotContainIgnoringCase(hex.substring(0, 16));
        }
    }
}
