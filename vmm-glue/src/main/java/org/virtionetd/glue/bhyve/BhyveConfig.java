package org.virtionetd.glue.bhyve;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeSet;
import java.util.SortedSet;

/**
 * bhyve's configuration tree (bhyve_config(5)), flattened: dotted keys such as {@code memory.size},
 * {@code pci.0.2.0.device}, {@code pci.0.2.0.backend}, {@code lpc.com1.path}. Every bhyve option ends up here, as
 * in bhyve itself ({@code -s} and {@code -l} write nodes, {@code -o} writes one key, a later value wins), so that
 * {@code -s 2,virtio-net,tap0} and {@code -o pci.0.2.0.device=virtio-net -o pci.0.2.0.backend=tap0} are one thing.
 */
public final class BhyveConfig {
    private final Map<String, String> values = new LinkedHashMap<>();

    /** bhyve's defaults before option parsing (bhyve_init_config): 256M of memory, one vCPU. */
    public static BhyveConfig withDefaults() {
        BhyveConfig c = new BhyveConfig();
        c.set("memory.size", "256M");
        return c;
    }

    public void set(String key, String value) {
        values.put(key, value);
    }

    public String get(String key) {
        return values.get(key);
    }

    public String get(String key, String fallback) {
        return values.getOrDefault(key, fallback);
    }

    /** A boolean node as bhyve reads it: "true"/"yes"/"on"/"1" (get_config_bool accepts these and their opposites). */
    public boolean getBool(String key, boolean fallback) {
        String v = values.get(key);
        if (v == null) {
            return fallback;
        }
        switch (v.toLowerCase(java.util.Locale.ROOT)) {
            case "true": case "yes": case "on": case "1":
                return true;
            case "false": case "no": case "off": case "0":
                return false;
            default:
                throw new IllegalArgumentException("config '" + key + "' is '" + v + "', not a boolean");
        }
    }

    public boolean has(String key) {
        return values.containsKey(key);
    }

    /** True if any key lies under {@code node} ({@code node} itself or {@code node.*}). */
    public boolean hasNode(String node) {
        String prefix = node + ".";
        return values.keySet().stream().anyMatch(k -> k.equals(node) || k.startsWith(prefix));
    }

    /** The keys under {@code node}, relative to it ({@code pci.0.2.0} gives {@code device}, {@code mac}...). */
    public Map<String, String> node(String node) {
        String prefix = node + ".";
        Map<String, String> out = new LinkedHashMap<>();
        values.forEach((k, v) -> {
            if (k.startsWith(prefix)) {
                out.put(k.substring(prefix.length()), v);
            }
        });
        return out;
    }

    /** Every PCI function that has a {@code device} node, in bus/slot/function order. */
    public SortedSet<PciAddress> pciFunctions() {
        SortedSet<PciAddress> out = new TreeSet<>();
        for (String k : values.keySet()) {
            String[] p = k.split("\\.");
            if (p.length == 5 && p[0].equals("pci") && p[4].equals("device")) {
                try {
                    out.add(new PciAddress(Integer.parseInt(p[1]), Integer.parseInt(p[2]), Integer.parseInt(p[3])));
                } catch (IllegalArgumentException e) {
                    // A key bhyve would not find either (pci.0.40.0 or pci.x.y.z): ignored, as bhyve does.
                }
            }
        }
        return out;
    }

    public Map<String, String> asMap() {
        return Collections.unmodifiableMap(values);
    }
}
