package org.virtionetd.glue.bhyve;

/**
 * bhyve's memory size ({@code -m}, {@code memory.size}), read as libvmmapi's vm_parse_memsize does: a plain number
 * below one megabyte means megabytes (backward compatibility: {@code -m 512} is 512 MiB), a larger plain number is
 * bytes, and expand_number(3) suffixes k, m, g, t, p, e (powers of 1024, either case, an optional trailing b).
 */
public final class MemorySize {
    static final long MB = 1L << 20;

    private MemorySize() {
    }

    /** Bytes; the exception message is bhyve's {@code invalid memsize '<text>'}. */
    public static long parse(String text) {
        IllegalArgumentException bad = new IllegalArgumentException("invalid memsize '" + text + "'");
        if (text == null || text.isEmpty()) {
            throw bad;
        }
        Long plain = strtoul(text);
        if (plain != null) {
            return plain < MB ? plain * MB : plain;
        }
        // expand_number: a decimal number, then one unit letter, optionally followed by 'b'/'B'.
        int i = 0;
        while (i < text.length() && Character.isDigit(text.charAt(i))) {
            i++;
        }
        if (i == 0) {
            throw bad;
        }
        long number;
        try {
            number = Long.parseLong(text.substring(0, i));
        } catch (NumberFormatException e) {
            throw bad;
        }
        String unit = text.substring(i).toLowerCase(java.util.Locale.ROOT);
        if (unit.length() == 2 && unit.charAt(1) == 'b') {
            unit = unit.substring(0, 1);
        }
        int shift;
        switch (unit) {
            case "b": shift = 0; break;
            case "k": shift = 10; break;
            case "m": shift = 20; break;
            case "g": shift = 30; break;
            case "t": shift = 40; break;
            case "p": shift = 50; break;
            case "e": shift = 60; break;
            default: throw bad;
        }
        if (number > (Long.MAX_VALUE >> shift)) {
            throw bad;
        }
        return number << shift;
    }

    /** strtoul(text, &end, 0) that consumed the whole string (decimal, 0x hex or 0 octal), else null. */
    private static Long strtoul(String text) {
        try {
            if (text.startsWith("0x") || text.startsWith("0X")) {
                return Long.parseUnsignedLong(text.substring(2), 16);
            }
            if (text.length() > 1 && text.startsWith("0")) {
                return Long.parseUnsignedLong(text.substring(1), 8);
            }
            if (!text.chars().allMatch(Character::isDigit)) {
                return null;
            }
            return Long.parseUnsignedLong(text);
        } catch (NumberFormatException e) {
            return null;
        }
    }

    /** The size as QEMU's {@code -m} and memory backends take it: whole MiB, rounded up. */
    public static String toQemuMiB(long bytes) {
        return toMiB(bytes) + "M";
    }

    /** Whole MiB, rounded up (QEMU's and libvirt's unit for guest RAM). */
    public static long toMiB(long bytes) {
        return (bytes + MB - 1) / MB;
    }
}
