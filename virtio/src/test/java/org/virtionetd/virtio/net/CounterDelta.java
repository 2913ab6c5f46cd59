package org.virtionetd.virtio.net;

import java.util.LinkedHashMap;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/** Asserts how counters changed between two snapshots (Firecracker's test_utils idea), naming every change. */
final class CounterDelta {
    private CounterDelta() {
    }

    static Map<String, Long> delta(Map<String, Long> before, Map<String, Long> after) {
        Map<String, Long> d = new LinkedHashMap<>();
        for (Map.Entry<String, Long> e : after.entrySet()) {
            long v = e.getValue() - before.getOrDefault(e.getKey(), 0L);
            if (v != 0) {
                d.put(e.getKey(), v);
            }
        }
        return d;
    }

    /** The named counters changed by exactly these amounts (others may change too). */
    static void assertChanged(Map<String, Long> before, Map<String, Long> after, Object... nameAndDelta) {
        Map<String, Long> d = delta(before, after);
        for (int i = 0; i < nameAndDelta.length; i += 2) {
            String name = (String) nameAndDelta[i];
            long want = ((Number) nameAndDelta[i + 1]).longValue();
            assertThat(d.getOrDefault(name, 0L)).as("change of counter %s (all changes: %s)", name, d).isEqualTo(want);
        }
    }
}
