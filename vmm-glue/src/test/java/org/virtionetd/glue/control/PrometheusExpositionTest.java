package org.virtionetd.glue.control;

import org.junit.jupiter.api.Test;
import org.virtionetd.glue.vhostuser.LifecycleCounters;
import org.virtionetd.virtio.net.NetCounters;
import org.virtionetd.virtio.net.RegionRxBuffers;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The Prometheus text format 0.0.4 of the stats: names, types, labels, the drop reasons, escaping, and one HELP and
 * TYPE per family however many devices and pairs there are.
 */
class PrometheusExpositionTest {
    private static final Pattern SAMPLE = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)\\{(.*)} (-?[0-9]+)");

    /** A device with {@code pairs} pairs, pair p's tx_packets = 10 + p, rx_dropped_too_big = 2, and one region. */
    static StatsReport report(String device, int pairs) {
        List<NetCounters> cs = new ArrayList<>();
        long[] allocated = new long[pairs];
        for (int p = 0; p < pairs; p++) {
            NetCounters c = new NetCounters();
            c.txPackets.add(10 + p);
            c.rxDroppedTooBig.add(2);
            c.txBadHeader.add(1);
            cs.add(c);
            allocated[p] = p == 0 ? 4096 : -1;
        }
        Map<String, Long> lifecycle = new LinkedHashMap<>(new LifecycleCounters().snapshot());
        lifecycle.put("mapped_bytes", 1L << 30);
        lifecycle.put("connections", 3L);
        return new StatsReport(device, cs, allocated, lifecycle,
                List.of(new RegionRxBuffers(0x1_0000_0000L, 1L << 29, 1234)));
    }

    @Test
    void countersGaugesAndDropReasonsAreNamedAsDocumented() {
        String text = PrometheusExposition.render(List.of(report("vnd0.sock (tap:vnd0)", 1)));
        String dev = "device=\"vnd0.sock (tap:vnd0)\"";
        assertThat(text).contains("# HELP virtio_netd_tx_packets_total Packets the guest transmitted")
                .contains("# TYPE virtio_netd_tx_packets_total counter\n")
                .contains("\nvirtio_netd_tx_packets_total{" + dev + ",queue_pair=\"0\"} 10\n")
                .contains("# TYPE virtio_netd_rx_dropped_total counter\n")
                .contains("\nvirtio_netd_rx_dropped_total{" + dev + ",queue_pair=\"0\",reason=\"too_big\"} 2\n")
                .contains("\nvirtio_netd_tx_dropped_total{" + dev + ",queue_pair=\"0\",reason=\"bad_header\"} 1\n")
                .contains("\nvirtio_netd_tx_dropped_total{" + dev + ",queue_pair=\"0\",reason=\"backend\"} 0\n")
                .contains("\nvirtio_netd_rx_dropped_total{" + dev + ",queue_pair=\"0\",reason=\"stale\"} 0\n")
                .contains("# TYPE virtio_netd_loop_allocated_bytes gauge\n")
                .contains("\nvirtio_netd_loop_allocated_bytes{" + dev + ",queue_pair=\"0\"} 4096\n")
                .contains("# TYPE virtio_netd_mapped_bytes gauge\n")
                .contains("\nvirtio_netd_mapped_bytes{" + dev + "} 1073741824\n")
                .contains("# TYPE virtio_netd_memory_regions gauge\n")
                .contains("\nvirtio_netd_connections_total{" + dev + "} 3\n")
                .contains("# TYPE virtio_netd_memory_region_rx_buffers_total counter\n")
                .contains("\nvirtio_netd_memory_region_rx_buffers_total{" + dev
                        + ",guest_address=\"0x100000000\"} 1234\n")
                .contains("# TYPE virtio_netd_memory_region_size_bytes gauge\n")
                .contains("\nvirtio_netd_memory_region_size_bytes{" + dev + ",guest_address=\"0x100000000\"} "
                        + (1L << 29) + "\n")
                .doesNotContain("dropped_too_big").doesNotContain("tx_bad_header").doesNotContain("_total_total")
                .endsWith("\n");
    }

    @Test
    void everyCounterOfTheStatsIsASampleWithAValidName() {
        StatsReport r = report("d", 2);
        String text = PrometheusExposition.render(List.of(r));
        int expected = 2 * r.pairs().get(0).size() + r.lifecycle().size() + 2;
        List<String> samples = text.lines().filter(l -> !l.startsWith("#")).toList();
        assertThat(samples).hasSize(expected);
        for (String s : samples) {
            Matcher m = SAMPLE.matcher(s);
            assertThat(m.matches()).as(s).isTrue();
            assertThat(m.group(1)).as(s).startsWith("virtio_netd_");
            assertThat(m.group(2)).as(s).matches("device=\"d\"(,[a-z_]+=\"[a-z0-9_]+\")*");
        }
    }

    @Test
    void everyFamilyHasOneHelpAndOneTypeBeforeAllItsSamplesWithTwoDevices() {
        String text = PrometheusExposition.render(List.of(report("a", 2), report("b", 1)));
        Map<String, Integer> helps = new HashMap<>();
        Map<String, Integer> types = new HashMap<>();
        String current = null;
        Map<String, Integer> devicesSeen = new HashMap<>();
        for (String line : text.lines().toList()) {
            if (line.startsWith("# HELP ")) {
                helps.merge(line.split(" ")[2], 1, Integer::sum);
            } else if (line.startsWith("# TYPE ")) {
                current = line.split(" ")[2];
                types.merge(current, 1, Integer::sum);
            } else {
                Matcher m = SAMPLE.matcher(line);
                assertThat(m.matches()).as(line).isTrue();
                assertThat(m.group(1)).as("sample under the TYPE of its family: " + line).isEqualTo(current);
                devicesSeen.merge(m.group(1) + (m.group(2).startsWith("device=\"a\"") ? "/a" : "/b"), 1,
                        Integer::sum);
            }
        }
        assertThat(helps.values()).as("HELP lines per family: " + helps).containsOnly(1);
        assertThat(types).as("TYPE lines per family").isEqualTo(helps.keySet().stream()
                .collect(java.util.stream.Collectors.toMap(k -> k, k -> 1)));
        assertThat(devicesSeen).containsEntry("virtio_netd_tx_packets_total/a", 2)
                .containsEntry("virtio_netd_tx_packets_total/b", 1)
                .containsEntry("virtio_netd_rx_dropped_total/a", 8).containsEntry("virtio_netd_mapped_bytes/b", 1);
        assertThat(text).contains("virtio_netd_tx_packets_total{device=\"a\",queue_pair=\"1\"} 11\n");
    }

    @Test
    void labelValuesAndHelpAreEscapedAsTheFormatSays() {
        String text = PrometheusExposition.render(List.of(report("a\\b\"c\nd", 1)));
        assertThat(text).contains("virtio_netd_tx_packets_total{device=\"a\\\\b\\\"c\\nd\",queue_pair=\"0\"} 10\n");
        assertThat(text.lines().filter(l -> !l.startsWith("virtio_netd_") && !l.startsWith("# ")).toList())
                .as("no line broken by the newline in the device name").isEmpty();
        assertThat(PrometheusExposition.escapeHelp("a\\b\"c\nd")).isEqualTo("a\\\\b\"c\\nd");
        assertThat(PrometheusExposition.escapeLabelValue("x")).isEqualTo("x");
    }

    @Test
    void everyCounterHasItsOwnHelpAndEveryDropCounterIsADropReason() {
        List<String> names = new ArrayList<>(new NetCounters().snapshot().keySet());
        names.addAll(new LifecycleCounters().snapshot().keySet());
        names.add("loop_allocated_bytes");
        for (String n : names) {
            assertThat(PrometheusMetric.documented(n)).as("HELP text for " + n).isTrue();
            PrometheusMetric m = PrometheusMetric.of(n);
            if (n.contains("dropped")) {
                assertThat(m.family()).as(n).isEqualTo("virtio_netd_" + n.substring(0, 2) + "_dropped_total");
                assertThat(n).as("reason of " + n).endsWith(m.reason());
            }
            assertThat(m.type().equals("counter")).as(n).isEqualTo(m.family().endsWith("_total"));
        }
        assertThat(PrometheusMetric.of("some_future_counter").family()).isEqualTo("virtio_netd_some_future_counter_total");
    }

    @Test
    void noDevicesNoSamples() {
        assertThat(PrometheusExposition.render(List.of())).isEmpty();
    }
}
