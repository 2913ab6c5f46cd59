package org.virtionetd.glue.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.glue.control.ControlServer;
import org.virtionetd.glue.vhostuser.LifecycleCounters;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testdriver.InMemoryBackend;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code stats --format table|json|prometheus} (--json is --format json) and the device's {@code --metrics-listen}:
 * a wrong value names itself, the allowed ones or its fault, and leaves no socket behind.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class MetricsOptionsTest {
    private static MainTest.Run run(String... args) {
        return MainTest.run(args);
    }

    @Test
    void aWrongFormatNamesItselfAndTheAllowedOnes(@TempDir Path dir) {
        String ctl = dir.resolve("none.ctl").toString();
        MainTest.Run xml = run("stats", "--control", ctl, "--format", "xml");
        assertThat(xml.exit()).isEqualTo(2);
        assertThat(xml.err()).contains("--format 'xml' is not one of table, json, prometheus");
        MainTest.Run features = run("features", "--control", ctl, "--format", "prometheus");
        assertThat(features.exit()).isEqualTo(2);
        assertThat(features.err()).contains("--format 'prometheus' is not one of table, json");
        MainTest.Run both = run("stats", "--control", ctl, "--json", "--format", "prometheus");
        assertThat(both.exit()).isEqualTo(2);
        assertThat(both.err()).contains("--json and --format prometheus exclude each other");
    }

    @Test
    void statsInEachFormat(@TempDir Path dir) throws Exception {
        Path ctl = dir.resolve("ctl");
        try (NetFixture f = NetFixture.builder().backend(p -> new InMemoryBackend("mem", VirtioNetFeature.OFFLOADS))
                .memory(8 << 20).build();
             ControlServer server = new ControlServer(ctl, Main.handlers("dev", f.device, new LifecycleCounters()))) {
            f.driver.start();
            MainTest.Run prom = run("stats", "--control", ctl.toString(), "--format", "prometheus");
            assertThat(prom.exit()).as(prom.err()).isZero();
            assertThat(prom.out()).startsWith("# HELP virtio_netd_tx_packets_total ")
                    .contains("# TYPE virtio_netd_tx_packets_total counter\n")
                    .contains("\nvirtio_netd_tx_packets_total{device=\"dev\",queue_pair=\"0\"} 0\n")
                    .contains("\nvirtio_netd_memory_region_size_bytes{device=\"dev\",guest_address=\"0x0\"} 8388608\n")
                    .contains("\nvirtio_netd_dirty_pages_logged_total{device=\"dev\"} 0\n");
            String json = run("stats", "--control", ctl.toString(), "--json").out();
            assertThat(run("stats", "--control", ctl.toString(), "--format", "json").out()).isEqualTo(json);
            assertThat(json).startsWith("{\"device\":\"dev\"");
            String table = run("stats", "--control", ctl.toString()).out();
            assertThat(run("stats", "--control", ctl.toString(), "--format", "table").out()).isEqualTo(table);
            assertThat(table).startsWith("device dev\n");
        }
    }

    @Test
    void aWrongMetricsListenValueIsAStartupErrorNamingIt(@TempDir Path dir) throws Exception {
        Path sock = dir.resolve("s.sock");
        MainTest.Run port = run("--socket", sock.toString(), "--backend", "null", "--metrics-listen", "127.0.0.1:65536");
        assertThat(port.exit()).isEqualTo(2);
        assertThat(port.err()).contains("--metrics-listen '127.0.0.1:65536': port 65536 is outside 0..65535");
        MainTest.Run word = run("--socket", sock.toString(), "--backend", "null", "--metrics-listen", "loopback");
        assertThat(word.exit()).isEqualTo(2);
        assertThat(word.err()).contains("--metrics-listen 'loopback': port 'loopback' is not a number");
        assertThat(Files.exists(sock)).isFalse();
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            String value = "127.0.0.1:" + taken.getLocalPort();
            MainTest.Run inUse = run("--socket", sock.toString(), "--backend", "null", "--metrics-listen", value);
            assertThat(inUse.exit()).isNotZero();
            assertThat(inUse.err()).contains("--metrics-listen '" + value + "': cannot listen on");
            assertThat(Files.exists(sock)).as("vhost-user socket left behind after --metrics-listen failed").isFalse();
        }
    }
}
