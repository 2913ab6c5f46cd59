package org.virtionetd.glue.control;

import org.virtionetd.virtio.net.VirtioNetFeature;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What was negotiated, as the user sees it: one row per feature (offered / acked by the driver / in effect) and
 * the offloads the backend programmed. Rendered as a table or as JSON with the arrays {@code offered},
 * {@code acked}, {@code negotiated} and {@code backend_offloads} of spec names, and {@code link} ("up", or "down"
 * while the backend has lost its host side, e.g. a deleted tap).
 */
public final class FeatureReport {
    private final String device;
    private final long offered;
    private final long acked;
    private final long negotiated;
    private final List<String> backendOffloads;
    private final String status;
    private final boolean linkUp;

    public FeatureReport(String device, long offered, long acked, long negotiated, List<String> backendOffloads,
                         String status) {
        this(device, offered, acked, negotiated, backendOffloads, status, true);
    }

    public FeatureReport(String device, long offered, long acked, long negotiated, List<String> backendOffloads,
                         String status, boolean linkUp) {
        this.device = device;
        this.offered = offered;
        this.acked = acked;
        this.negotiated = negotiated;
        this.backendOffloads = List.copyOf(backendOffloads);
        this.status = status;
        this.linkUp = linkUp;
    }

    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("device", device);
        m.put("status", status);
        m.put("link", linkUp ? "up" : "down");
        m.put("offered", VirtioNetFeature.names(offered));
        m.put("acked", VirtioNetFeature.names(acked));
        m.put("negotiated", VirtioNetFeature.names(negotiated));
        m.put("backend_offloads", backendOffloads);
        m.put("offered_bits", "0x" + Long.toHexString(offered));
        m.put("acked_bits", "0x" + Long.toHexString(acked));
        return m;
    }

    public String toJson() {
        return Json.write(toMap());
    }

    /** One row per feature that is offered or acked, spec names, yes/no columns. */
    public String toTable() {
        StringBuilder sb = new StringBuilder();
        sb.append("device ").append(device).append(", status ").append(status).append(", link ")
                .append(linkUp ? "up" : "down").append('\n');
        sb.append(String.format("%-36s %-8s %-8s %-9s%n", "FEATURE", "OFFERED", "ACKED", "IN EFFECT"));
        for (int bit = 0; bit < 64; bit++) {
            long mask = 1L << bit;
            if (((offered | acked) & mask) == 0) {
                continue;
            }
            sb.append(String.format("%-36s %-8s %-8s %-9s%n", VirtioNetFeature.name(bit), yes(offered, mask),
                    yes(acked, mask), yes(negotiated, mask)));
        }
        sb.append("backend offloads: ").append(backendOffloads.isEmpty() ? "(none)" : String.join(" ", backendOffloads))
                .append('\n');
        return sb.toString();
    }

    private static String yes(long v, long mask) {
        return (v & mask) != 0 ? "yes" : "-";
    }
}
