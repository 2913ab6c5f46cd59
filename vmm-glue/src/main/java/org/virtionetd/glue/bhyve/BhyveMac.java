package org.virtionetd.glue.bhyve;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * MAC addresses the way bhyve makes and checks them (usr.sbin/bhyve/net_utils.c).
 *
 * <p>{@link #generate}: net_genmac, the NetApp OUI 00:a0:98 followed by the first three bytes of the MD5 of
 * {@code "<slot>-<func>-<vmname>"}; the bus is not part of it. A guest keeps its MAC across restarts and hosts.
 *
 * <p>{@link #parse}: net_parsemac, ether_aton(3) (six ':'-separated hex fields read with {@code %x}), then
 * refused if multicast or all zero, with bhyve's message {@code Invalid MAC <text>}.
 */
public final class BhyveMac {
    private BhyveMac() {
    }

    public static byte[] generate(int slot, int func, String vmName) {
        byte[] digest;
        try {
            digest = MessageDigest.getInstance("MD5")
                    .digest((slot + "-" + func + "-" + vmName).getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("MD5 is missing from this JVM; every JVM must have it", e);
        }
        return new byte[] {0x00, (byte) 0xa0, (byte) 0x98, digest[0], digest[1], digest[2]};
    }

    /** Parses as net_parsemac does; the exception message is bhyve's {@code Invalid MAC <text>}. */
    public static byte[] parse(String text) {
        byte[] mac = etherAton(text);
        if (mac == null || (mac[0] & 1) != 0 || isZero(mac)) {
            throw new IllegalArgumentException("Invalid MAC " + text);
        }
        return mac;
    }

    /** FreeBSD ether_aton_r: {@code sscanf(a, "%x:%x:%x:%x:%x:%x")} must match six fields; each is kept as a byte. */
    static byte[] etherAton(String a) {
        byte[] out = new byte[6];
        int[] pos = {0};
        for (int i = 0; i < 6; i++) {
            if (i > 0) {
                if (pos[0] >= a.length() || a.charAt(pos[0]) != ':') {
                    return null;
                }
                pos[0]++;
            }
            Long v = scanHex(a, pos);
            if (v == null) {
                return null;
            }
            out[i] = (byte) v.longValue(); // ether_aton stores each int into a u_char
        }
        return out;
    }

    /** sscanf's %x: optional white space, optional sign, optional 0x, then at least one hex digit. */
    private static Long scanHex(String s, int[] pos) {
        int i = pos[0];
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
        boolean negative = false;
        if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            negative = s.charAt(i) == '-';
            i++;
        }
        if (i + 1 < s.length() && s.charAt(i) == '0' && (s.charAt(i + 1) == 'x' || s.charAt(i + 1) == 'X')
                && i + 2 < s.length() && Character.digit(s.charAt(i + 2), 16) >= 0) {
            i += 2;
        }
        int start = i;
        long v = 0;
        while (i < s.length() && Character.digit(s.charAt(i), 16) >= 0) {
            v = (v << 4) | Character.digit(s.charAt(i), 16);
            i++;
        }
        if (i == start) {
            return null;
        }
        pos[0] = i;
        return negative ? -v : v;
    }

    private static boolean isZero(byte[] mac) {
        for (byte b : mac) {
            if (b != 0) {
                return false;
            }
        }
        return true;
    }

    public static String format(byte[] mac) {
        StringBuilder sb = new StringBuilder(17);
        for (int i = 0; i < mac.length; i++) {
            if (i > 0) {
                sb.append(':');
            }
            sb.append(String.format("%02x", mac[i] & 0xff));
        }
        return sb.toString();
    }
}
