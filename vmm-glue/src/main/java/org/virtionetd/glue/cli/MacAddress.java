package org.virtionetd.glue.cli;

/** Parsing of MAC addresses given on the command line ("52:54:00:12:34:56"), with errors naming the bad part. */
public final class MacAddress {
    private MacAddress() {
    }

    public static byte[] parse(String text) {
        String[] parts = text.split("[:-]", -1);
        if (parts.length != 6) {
            throw new IllegalArgumentException("MAC address '" + text + "' must have 6 parts separated by ':'");
        }
        byte[] mac = new byte[6];
        for (int i = 0; i < 6; i++) {
            String p = parts[i];
            if (p.isEmpty() || p.length() > 2 || !p.matches("[0-9a-fA-F]+")) {
                throw new IllegalArgumentException("MAC address '" + text + "': part " + (i + 1) + " '" + p
                        + "' is not a hex byte");
            }
            mac[i] = (byte) Integer.parseInt(p, 16);
        }
        return mac;
    }

    public static String format(byte[] mac) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < mac.length; i++) {
            if (i > 0) {
                sb.append(':');
            }
            sb.append(String.format("%02x", mac[i] & 0xff));
        }
        return sb.toString();
    }
}
