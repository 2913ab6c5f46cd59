package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cmd;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * TCP between two guests with fixed scripts (no host on their network): guest B runs two one-shot iperf3 servers,
 * on {@value #PORT_AB} and {@value #PORT_BA}; guest A waits (bounded) until B answers pings, then sends to B for
 * a few seconds (A -> B on port {@value #PORT_AB}) and has B send to it ({@code -R}, B -> A on port
 * {@value #PORT_BA}). One port per direction lets a capture tell the transfers apart. Both guests print their MTU
 * (what the device gave: the script sets none) and their TcpInCsumErrors and TcpInSegs before and after.
 */
public final class GuestPairTraffic {
    public static final String A_IP = "10.90.1.10";
    public static final String B_IP = "10.90.1.20";
    public static final int PORT_AB = 5201;
    public static final int PORT_BA = 5202;

    private static final Pattern TRANSFER = Pattern.compile("VND-T (AB|BA) rc=(\\d+)(.*)");
    private static final Pattern RATE = Pattern.compile("([\\d.]+) ([GMK]?)bits/sec");
    private static final Pattern CSUM = Pattern.compile("VND-CSUM (before|after) (\\d+) (\\d+)");
    private static final Pattern MTU = Pattern.compile("VND-MTU (\\d+)");

    private GuestPairTraffic() {
    }

    /** What one guest printed: its eth0 MTU, and the TCP counters its kernel added during the run. */
    public record Guest(int mtu, long csumErrorsAdded, long inSegsAdded) {
    }

    /** Both directions' receiver rates in Gbit/s, and both guests. */
    public record Result(double abGbps, double baGbps, Guest a, Guest b) {
        @Override
        public String toString() {
            return String.format("A -> B %.3f Gbit/s, B -> A %.3f Gbit/s; MTU A %d, B %d; TcpInCsumErrors added A %d,"
                            + " B %d; TcpInSegs added A %d, B %d", abGbps, baGbps, a.mtu(), b.mtu(),
                    a.csumErrorsAdded(), b.csumErrorsAdded(), a.inSegsAdded(), b.inSegsAdded());
        }
    }

    private static String counters() {
        return "s(){ echo VND-CSUM $1 $(vnd-snmp Tcp InCsumErrors) $(vnd-snmp Tcp InSegs); }\ns before\n"
                + "echo VND-MTU $(cat /sys/class/net/eth0/mtu)\n";
    }

    /**
     * Guest A: the clients, {@code seconds} each. A transfer is retried (bounded) only while B's server is not up
     * yet ("refused"); any other failure is reported at once with iperf3's output.
     */
    public static String commandA(int seconds) {
        return counters()
                + "i=0; while ! ping -c 1 -W 1 " + B_IP + " >/dev/null 2>&1 && [ $i -lt 90 ]; do i=$((i+1)); done\n"
                + "echo VND-PING-B tries=$i\n"
                + "t(){ n=$1; shift; k=0\n"
                + "  while :; do iperf3 -t " + seconds + " -f g \"$@\" >/tmp/o 2>&1; rc=$?\n"
                + "    [ $rc -eq 0 ] || ! grep -q refused /tmp/o || [ $k -ge 15 ] && break; k=$((k+1)); sleep 1; done\n"
                + "  echo VND-T $n rc=$rc $(grep receiver /tmp/o | tail -n 1)\n"
                + "  [ $rc -eq 0 ] || sed 's/^/VND-IPERF /' /tmp/o; }\n"
                + "t AB -c " + B_IP + " -p " + PORT_AB + "\n"
                + "t BA -c " + B_IP + " -p " + PORT_BA + " -R\n"
                + "s after";
    }

    /** Guest B: both one-shot servers at once (bounded), then its counters. */
    public static String commandB() {
        return counters()
                + "timeout 240 iperf3 -s -1 -p " + PORT_AB + " >/dev/null 2>&1 & x=$!\n"
                + "timeout 240 iperf3 -s -1 -p " + PORT_BA + " >/dev/null 2>&1 & y=$!\n"
                + "wait $x; echo VND-SERVED " + PORT_AB + " rc=$?\n"
                + "wait $y; echo VND-SERVED " + PORT_BA + " rc=$?\n"
                + "s after";
    }

    /**
     * Waits (bounded) for both guests' scripts to end, requires exit 0 and both transfers done, and returns what
     * they printed. A first: its transfers say whether B was reachable.
     */
    public static Result await(GuestVm a, GuestVm b, Duration timeout) {
        int doneA = a.awaitDone(timeout);
        String serialA = a.output();
        if (doneA != 0) {
            throw new AssertionError("guest A's script exited " + doneA + "; serial:\n" + Cmd.indent(Cmd.tail(serialA,
                    40)));
        }
        Map<String, Double> gbps = new LinkedHashMap<>();
        Matcher m = TRANSFER.matcher(serialA);
        while (m.find()) {
            if (!m.group(2).equals("0")) {
                throw new AssertionError("iperf3 " + m.group(1) + " exited " + m.group(2) + "; guest A's serial:\n"
                        + Cmd.indent(Cmd.tail(serialA, 40)));
            }
            Matcher r = RATE.matcher(m.group(3));
            if (!r.find()) {
                throw new AssertionError("no receiver rate in '" + m.group(0) + "'");
            }
            gbps.put(m.group(1), GuestTraffic.gbitPerSecond(r.group(1), r.group(2)));
        }
        if (!gbps.containsKey("AB") || !gbps.containsKey("BA")) {
            throw new AssertionError("guest A reported the transfers " + gbps.keySet() + ", not AB and BA; serial:\n"
                    + Cmd.indent(Cmd.tail(serialA, 40)));
        }
        int doneB = b.awaitDone(timeout);
        String serialB = b.output();
        if (doneB != 0) {
            throw new AssertionError("guest B's script exited " + doneB + "; serial:\n" + Cmd.indent(Cmd.tail(serialB,
                    30)));
        }
        return new Result(gbps.get("AB"), gbps.get("BA"), guest(serialA, "A"), guest(serialB, "B"));
    }

    private static Guest guest(String serial, String name) {
        Matcher mtu = MTU.matcher(serial);
        if (!mtu.find()) {
            throw new AssertionError("guest " + name + " printed no VND-MTU; serial:\n" + Cmd.indent(serial));
        }
        long[][] v = new long[2][];
        Matcher m = CSUM.matcher(serial);
        while (m.find()) {
            v[m.group(1).equals("before") ? 0 : 1] =
                    new long[] {Long.parseLong(m.group(2)), Long.parseLong(m.group(3))};
        }
        if (v[0] == null || v[1] == null) {
            throw new AssertionError("guest " + name + " did not print its TCP counters before and after; serial:\n"
                    + Cmd.indent(serial));
        }
        return new Guest(Integer.parseInt(mtu.group(1)), v[1][0] - v[0][0], v[1][1] - v[0][1]);
    }
}
