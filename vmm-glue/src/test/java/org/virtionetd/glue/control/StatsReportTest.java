package org.virtionetd.glue.control;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.NetCounters;
import org.virtionetd.virtio.net.RegionRxBuffers;

import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** The stats answer: queue pairs, then the memory regions with their receive buffers, then the lifecycle. */
class StatsReportTest {
    private static final List<RegionRxBuffers> TWO_REGIONS = List.of(new RegionRxBuffers(0, 1L << 30, 7),
            new RegionRxBuffers(0x1_0000_0000L, 1L << 29, 1234));

    @Test
    void memoryRegionsAreATopLevelArrayBetweenThePairsAndTheLifecycle() {
        StatsReport r = new StatsReport("dev", List.of(new NetCounters()), new long[] {0},
                Map.of("resets", 2L), TWO_REGIONS);
        assertThat(r.toJson()).contains("\"pair\":0,")
                .contains("],\"memory\":[{\"guest_address\":0,\"size\":1073741824,\"rx_buffers\":7},"
                        + "{\"guest_address\":4294967296,\"size\":536870912,\"rx_buffers\":1234}],"
                        + "\"lifecycle\":{\"resets\":2}}");
    }

    @Test
    void memoryRegionsAreASectionOfTheTable() {
        String t = new StatsReport("dev", List.of(new NetCounters()), new long[] {0}, Map.of(), TWO_REGIONS)
                .toTable();
        assertThat(t).containsPattern("\nMEMORY +size +rx_buffers\n0x0 +0x40000000 +7\n0x100000000 +0x20000000 +1234\n");
    }

    @Test
    void withoutMemoryTheAnswerIsAsBefore() {
        StatsReport r = new StatsReport("dev", List.of(new NetCounters()), new long[] {0}, Map.of());
        assertThat(r.toJson()).doesNotContain("memory");
        assertThat(r.toTable()).doesNotContain("MEMORY");
        assertThat(new StatsReport("dev", List.of(), null, Map.of(), List.of()).toJson())
                .isEqualTo("{\"device\":\"dev\",\"queue_pairs\":[],\"memory\":[]}");
    }
}
