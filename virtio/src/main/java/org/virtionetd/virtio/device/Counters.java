package org.virtionetd.virtio.device;

import java.lang.reflect.Field;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;

/**
 * Snapshots of counter holders: classes whose public final {@link LongAdder} fields are named counters
 * (NetCounters, the offload and switch counters). The name users see is the field name in snake_case.
 */
public final class Counters {
    private Counters() {
    }

    /** Every public LongAdder field of {@code holder} by snake_case name, in declaration order. */
    public static Map<String, Long> snapshot(Object holder) {
        Map<String, Long> m = new LinkedHashMap<>();
        for (Field f : holder.getClass().getFields()) {
            if (f.getType() != LongAdder.class) {
                continue;
            }
            try {
                m.put(snakeCase(f.getName()), ((LongAdder) f.get(holder)).sum());
            } catch (IllegalAccessException e) {
                throw new IllegalStateException("counter " + f.getName() + " of " + holder.getClass(), e);
            }
        }
        return m;
    }

    /** Adds {@code prefix + reason} for each non-zero counter of a per-reason array (drops by reason). */
    public static <E extends Enum<E>> void putNonZero(Map<String, Long> into, String prefix, E[] reasons,
                                                      LongAdder[] byReason) {
        for (E r : reasons) {
            long v = byReason[r.ordinal()].sum();
            if (v != 0) {
                into.put(prefix + r.name().toLowerCase(Locale.ROOT), v);
            }
        }
    }

    /** "txPackets" -> "tx_packets". */
    public static String snakeCase(String camel) {
        StringBuilder sb = new StringBuilder();
        for (char c : camel.toCharArray()) {
            if (Character.isUpperCase(c)) {
                sb.append('_').append(Character.toLowerCase(c));
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }
}
