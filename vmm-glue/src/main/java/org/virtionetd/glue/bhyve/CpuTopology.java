package org.virtionetd.glue.bhyve;

import java.util.Map;

/**
 * {@code -c [[cpus=]numcpus][,sockets=n][,cores=n][,threads=n]} (bhyve(8)), stored as bhyve stores it in
 * {@code cpus}, {@code sockets}, {@code cores}, {@code threads}. Missing counts default to 1 and the vCPU count to
 * their product; a vCPU count that differs from the product is refused, as bhyve's calc_topology does.
 */
public record CpuTopology(int cpus, int sockets, int cores, int threads) {
    /** Writes the option into the config; the message is bhyve's {@code invalid cpu topology '<text>'}. */
    static void parseOption(String opt, BhyveConfig config) {
        IllegalArgumentException bad = new IllegalArgumentException("invalid cpu topology '" + opt + "'");
        if (opt.isEmpty()) {
            throw bad;
        }
        String[] parts = opt.split(",", -1);
        for (int i = 0; i < parts.length; i++) {
            String p = parts[i];
            String key;
            String value;
            int eq = p.indexOf('=');
            if (eq < 0) {
                if (i != 0) {
                    throw bad; // only the first item may be a bare vCPU count
                }
                key = "cpus";
                value = p;
            } else {
                key = p.substring(0, eq);
                value = p.substring(eq + 1);
            }
            if (!Map.of("cpus", 1, "sockets", 1, "cores", 1, "threads", 1, "maxcpus", 1).containsKey(key)) {
                throw bad;
            }
            int n;
            try {
                n = Integer.parseInt(value);
            } catch (NumberFormatException e) {
                throw bad;
            }
            if (n <= 0 || n > 0xffff) {
                throw bad;
            }
            if (key.equals("maxcpus")) {
                // bhyve parses maxcpus but refuses it when it differs from cpus ("maxcpus not supported").
                config.set("maxcpus", value);
            } else {
                config.set(key, Integer.toString(n));
            }
        }
    }

    /** The topology the config describes (bhyve's calc_topology). */
    public static CpuTopology of(BhyveConfig config) {
        int sockets = count(config, "sockets");
        int cores = count(config, "cores");
        int threads = count(config, "threads");
        long product = (long) sockets * cores * threads;
        int cpus;
        if (config.has("cpus")) {
            cpus = count(config, "cpus");
            boolean topologyGiven = config.has("sockets") || config.has("cores") || config.has("threads");
            if (topologyGiven && product != cpus) {
                throw new IllegalArgumentException("Invalid CPU topology: " + cpus + " vCPUs but sockets " + sockets
                        + " x cores " + cores + " x threads " + threads + " = " + product);
            }
        } else {
            if (product > 0xffff) {
                throw new IllegalArgumentException("Invalid CPU topology: sockets " + sockets + " x cores " + cores
                        + " x threads " + threads + " exceeds 65535 vCPUs");
            }
            cpus = (int) product;
        }
        if (config.has("maxcpus") && count(config, "maxcpus") != cpus) {
            throw new IllegalArgumentException("maxcpus not supported: maxcpus " + config.get("maxcpus")
                    + " differs from " + cpus + " vCPUs");
        }
        return new CpuTopology(cpus, sockets, cores, threads);
    }

    private static int count(BhyveConfig config, String key) {
        String v = config.get(key, "1");
        try {
            int n = Integer.parseInt(v);
            if (n > 0 && n <= 0xffff) {
                return n;
            }
        } catch (NumberFormatException e) {
            // falls through
        }
        throw new IllegalArgumentException("invalid cpu topology: " + key + "=" + v + " is not a count 1..65535");
    }
}
