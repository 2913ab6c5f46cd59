package org.virtionetd.glue.control;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The counters of one or more devices ({@link StatsReport}: queue pairs, memory regions, lifecycle) in the
 * Prometheus text exposition format 0.0.4 ("Exposition formats" in the Prometheus documentation,
 * https://prometheus.io/docs/instrumenting/exposition_formats/), named as {@link PrometheusMetric} says.
 *
 * <p>Each metric family has its {@code # HELP} and {@code # TYPE} lines once, followed by the samples of every
 * device: the format allows a family only once in an exposition, so the devices of one process cannot be
 * rendered one after another. Labels: {@code device} (the name the stats table shows), {@code queue_pair} (0, 1,
 * ...) on the counters of a pair, {@code reason} on the drop families, {@code guest_address} (hexadecimal) on a
 * memory region's.
 */
public final class PrometheusExposition {
    /** What a scrape's Content-Type says the body is. */
    public static final String CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

    private PrometheusExposition() {
    }

    /** One family: its metric and its samples' lines so far. */
    private record Family(PrometheusMetric metric, StringBuilder samples) {
    }

    /** The exposition of {@code reports}, families in the order their first sample appears. */
    public static String render(List<StatsReport> reports) {
        Map<String, Family> families = new LinkedHashMap<>();
        for (StatsReport r : reports) {
            String device = "device=\"" + escapeLabelValue(r.device()) + "\"";
            List<Map<String, Long>> pairs = r.pairs();
            for (int i = 0; i < pairs.size(); i++) {
                String labels = device + ",queue_pair=\"" + i + "\"";
                pairs.get(i).forEach((name, v) -> add(families, PrometheusMetric.of(name), labels, v));
            }
            if (r.memory() != null) {
                for (Map<String, Long> region : r.memory()) {
                    String labels = device + ",guest_address=\"0x" + Long.toHexString(region.get("guest_address"))
                            + "\"";
                    add(families, PrometheusMetric.REGION_RX_BUFFERS, labels, region.get("rx_buffers"));
                    add(families, PrometheusMetric.REGION_SIZE, labels, region.get("size"));
                }
            }
            r.lifecycle().forEach((name, v) -> add(families, PrometheusMetric.of(name), device, v));
        }
        StringBuilder sb = new StringBuilder();
        for (Family f : families.values()) {
            PrometheusMetric m = f.metric();
            sb.append("# HELP ").append(m.family()).append(' ').append(escapeHelp(m.help())).append('\n');
            sb.append("# TYPE ").append(m.family()).append(' ').append(m.type()).append('\n');
            sb.append(f.samples());
        }
        return sb.toString();
    }

    private static void add(Map<String, Family> families, PrometheusMetric m, String labels, long value) {
        StringBuilder sb = families.computeIfAbsent(m.family(), k -> new Family(m, new StringBuilder())).samples();
        sb.append(m.family()).append('{').append(labels);
        if (m.reason() != null) {
            sb.append(",reason=\"").append(escapeLabelValue(m.reason())).append('"');
        }
        sb.append("} ").append(value).append('\n');
    }

    /** A label value as the format writes it: backslash, double quote and line feed escaped. */
    static String escapeLabelValue(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }

    /** A HELP text as the format writes it: backslash and line feed escaped (a quote stays). */
    static String escapeHelp(String s) {
        return s.replace("\\", "\\\\").replace("\n", "\\n");
    }
}
