package org.virtionetd.glue.control;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.glue.it.PrometheusScrape;

import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The exposition as a real parser reads it: Debian's python3-prometheus-client ({@link PrometheusScrape}). Skipped
 * where that package is missing, except under scripts/test, which installs it and then fails the test without it.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class PrometheusParserTest {
    @BeforeAll
    static void parser() {
        PrometheusScrape.requireParser();
    }

    @Test
    void twoDevicesWithAnAwkwardNameParse(@TempDir Path dir) throws Exception {
        String name = "vnd0.sock (tap:vnd0) \\ \"q\"\nx";
        Path file = Files.writeString(dir.resolve("metrics.txt"), PrometheusExposition.render(List.of(
                PrometheusExpositionTest.report(name, 2), PrometheusExpositionTest.report("vnd1", 1))));
        PrometheusScrape s = PrometheusScrape.scrape(file.toString());
        assertThat(s.family("virtio_netd_tx_packets").type()).isEqualTo("counter");
        assertThat(s.family("virtio_netd_rx_dropped").help()).contains("too_big");
        assertThat(s.family("virtio_netd_mapped_bytes").type()).isEqualTo("gauge");
        assertThat(s.family("virtio_netd_loop_allocated_bytes").type()).isEqualTo("gauge");
        assertThat(s.sum("virtio_netd_tx_packets_total", "device", name, "queue_pair", "1")).isEqualTo(11);
        assertThat(s.sum("virtio_netd_tx_packets_total", "device", name)).isEqualTo(21);
        assertThat(s.sum("virtio_netd_tx_packets_total")).isEqualTo(31);
        assertThat(s.sum("virtio_netd_rx_dropped_total", "reason", "too_big")).isEqualTo(6);
        assertThat(s.sum("virtio_netd_loop_allocated_bytes", "device", "vnd1")).isEqualTo(4096);
        assertThat(s.sum("virtio_netd_memory_region_rx_buffers_total", "guest_address", "0x100000000"))
                .isEqualTo(2 * 1234);
        assertThat(s.samples()).hasSize((int) Files.readString(file).lines().filter(l -> !l.startsWith("#"))
                .count());
    }

    @Test
    void promtoolJudgesWhereInstalled(@TempDir Path dir) throws Exception {
        Assumptions.assumeTrue(Files.isExecutable(Path.of(PrometheusScrape.PROMTOOL)),
                PrometheusScrape.PROMTOOL + " is not installed (scripts/test installs Debian's prometheus)");
        Path ours = Files.writeString(dir.resolve("ours.txt"), PrometheusExposition.render(List.of(
                PrometheusExpositionTest.report("vnd0", 2))));
        assertThat(PrometheusScrape.scrape(ours.toString()).output()).contains("promtool check metrics: no remarks");
        // A counter without _total: the Python parser takes it, promtool's lint does not, and neither may the scrape.
        Path lax = Files.writeString(dir.resolve("lax.txt"), "# HELP x_frames Frames.\n# TYPE x_frames counter\n"
                + "x_frames 1\n");
        assertThatThrownBy(() -> PrometheusScrape.scrape(lax.toString())).hasMessageContaining("_total");
    }

    @Test
    void aScrapeOverHttpParses() throws Exception {
        try (MetricsHttpServer m = new MetricsHttpServer(new InetSocketAddress("127.0.0.1", 0),
                () -> PrometheusExposition.render(List.of(PrometheusExpositionTest.report("vnd0", 1))))) {
            PrometheusScrape s = PrometheusScrape.scrape(m.url());
            assertThat(s.sum("virtio_netd_connections_total", "device", "vnd0")).isEqualTo(3);
        }
    }
}
