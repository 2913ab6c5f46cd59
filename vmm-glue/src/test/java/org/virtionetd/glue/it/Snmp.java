package org.virtionetd.glue.it;

import java.util.List;

/** Reads one counter from the text of /proc/net/snmp (a header line of names, then a line of values). */
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
}
