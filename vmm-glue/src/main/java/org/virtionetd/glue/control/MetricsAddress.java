package org.virtionetd.glue.control;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;

/**
 * Where {@code --metrics-listen} serves: {@code ADDR:PORT}, {@code [IPV6]:PORT}, or {@code :PORT} / {@code PORT}
 * for the loopback address (counters stay on the host unless an address is asked for). ADDR is a host name or
 * address; PORT 0..65535, 0 letting the kernel pick a free one (the log names it).
 */
public final class MetricsAddress {
    /** Turns a host name into an address; {@link InetAddress#getByName} outside tests. */
    interface Resolver {
        InetAddress resolve(String host) throws UnknownHostException;
    }

    private MetricsAddress() {
    }

    /** Parses {@code text}; a wrong one is an IllegalArgumentException that names it and what is wrong. */
    public static InetSocketAddress parse(String text) {
        return parse(text, InetAddress::getByName);
    }

    static InetSocketAddress parse(String text, Resolver resolver) {
        String host;
        String port;
        if (text.startsWith("[")) {
            int close = text.indexOf(']');
            if (close < 2 || !text.startsWith(":", close + 1)) {
                throw bad(text, "an IPv6 address is written [ADDR]:PORT");
            }
            host = text.substring(1, close);
            port = text.substring(close + 2);
        } else {
            int colon = text.lastIndexOf(':');
            host = colon < 0 ? "" : text.substring(0, colon);
            port = text.substring(colon + 1);
            if (host.contains(":")) {
                throw bad(text, "an IPv6 address is written [ADDR]:PORT");
            }
        }
        int p = port(text, port);
        if (host.isEmpty()) {
            return new InetSocketAddress(InetAddress.getLoopbackAddress(), p);
        }
        try {
            return new InetSocketAddress(resolver.resolve(host), p);
        } catch (UnknownHostException e) {
            throw bad(text, "cannot resolve host '" + host + "'");
        }
    }

    private static int port(String text, String port) {
        if (port.isEmpty() || port.length() > 5 || !port.chars().allMatch(c -> c >= '0' && c <= '9')) {
            throw bad(text, "port '" + port + "' is not a number 0..65535");
        }
        int p = Integer.parseInt(port);
        if (p > 65535) {
            throw bad(text, "port " + p + " is outside 0..65535");
        }
        return p;
    }

    private static IllegalArgumentException bad(String text, String why) {
        return new IllegalArgumentException("--metrics-listen '" + text + "': " + why
                + " (ADDR:PORT, [IPV6]:PORT, or :PORT / PORT for loopback)");
    }
}
