package org.virtionetd.virtio.testsupport;

import java.util.List;

/**
 * Reads one counter from the text of /proc/net/snmp (per protocol a header line of names, then a line of values)
 * or of /proc/net/snmp6 (one "name value" per line).
 */
public final class Snmp {
    private Snmp() {
    }

    /** The value of {@code field} in the {@code proto} lines, e.g. ("Tcp", "InCsumErrors"). */
    public static long field(String snmpText, String proto, String field) {
        List<String> lines = snmpText.lines().filter(l -> l.startsWith(proto + ":")).toList();
        if (lines.size() < 2) {
            throw new IllegalArgumentException("no " + proto + " lines in /proc/net/snmp text:\n" + snmpText);
        }
        String[] names = lines.get(0).trim().split("\\s+");
        String[] values = lines.get(1).trim().split("\\s+");
        for (int i = 1; i < names.length && i < values.length; i++) {
            if (names[i].equals(field)) {
                return Long.parseLong(values[i]);
            }
        }
        throw new IllegalArgumentException("no counter " + proto + "." + field + " in: " + lines.get(0));
    }

    /** The value of {@code field} in /proc/net/snmp6 text, e.g. "Udp6InCsumErrors". */
    public static long field6(String snmp6Text, String field) {
        for (String l : snmp6Text.split("\n")) {
            String[] w = l.trim().split("\\s+");
            if (w.length == 2 && w[0].equals(field)) {
                return Long.parseLong(w[1]);
            }
        }
        throw new IllegalArgumentException("no counter " + field + " in /proc/net/snmp6 text:\n" + snmp6Text);
    }
}
