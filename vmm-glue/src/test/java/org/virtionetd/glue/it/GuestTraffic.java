package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.time.Duration;
import java.util.Map;

/**
 * Traffic between a guest (10.77.0.2) and the namespace it is attached to (10.77.0.1 on the tap): ping both ways,
 * then optionally iperf3 TCP guest -> host and host -> guest, with the TCP checksum error counters
 * (/proc/net/snmp TcpInCsumErrors) read before and after on both sides.
 *
 * <p>Use: {@code new GuestTraffic(ns, seconds)}; pass {@link #guestCommand()} to the guest; call
 * {@link #prepareHost()} before the guest starts (the host's iperf3 server must listen before the guest's client
 * runs); after {@code VND-READY}, {@link #run} drives the host side in step with the guest's markers and returns
 * what was measured. Every wait is bounded.
 */
public final class GuestTraffic {
    public static final String HOST_IP = "10.77.0.1";
    public static final String GUEST_IP = "10.77.0.2";
    /** Waits for one step of the guest's script: generous, the machine is shared by TCG guests and builds. */
    private static final Duration STEP = Duration.ofSeconds(120);

    private final NetNs ns;
    private final int iperfSeconds;
    private Spawned upServer;
    private long hostCsumBefore;

    /** {@code iperfSeconds} 0: ping both ways only. */
    public GuestTraffic(NetNs ns, int iperfSeconds) {
        this.ns = ns;
        this.iperfSeconds = iperfSeconds;
    }

    /** What was seen. Throughputs are in bit/s as the receiving iperf3 measured them (-1 without iperf3). */
    public record Result(String guestPing, String hostPing, double guestToHostBps, double hostToGuestBps,
                         long guestCsumErrors, long hostCsumErrors) {
    }

    /**
     * The guest's part (a busybox sh script): checksum counter, ping the host, wait (bounded) for the host's three
     * echo requests, then with iperf3: client to the host, a one-shot server for the host, checksum counter.
     * Markers: VND-CSUM-BEFORE n, VND-PING rc=, VND-HOST-PINGED echos=, VND-UP rc=, VND-IPERF-SERVER-READY,
     * VND-CSUM-AFTER n.
     */
    public String guestCommand() {
        StringBuilder s = new StringBuilder();
        s.append("echo VND-CSUM-BEFORE $(vnd-snmp Tcp InCsumErrors)\n");
        s.append("ping -c 3 -W 5 ").append(HOST_IP).append("; echo VND-PING rc=$?\n");
        s.append("i=0; while [ \"$(vnd-snmp Icmp InEchos)\" -lt 3 ] && [ $i -lt 1200 ]; do usleep 100000; "
                + "i=$((i+1)); done\n");
        s.append("echo VND-HOST-PINGED echos=$(vnd-snmp Icmp InEchos)\n");
        if (iperfSeconds > 0) {
            s.append("iperf3 -c ").append(HOST_IP).append(" -t ").append(iperfSeconds)
                    .append(" -f m --connect-timeout 10000; echo VND-UP rc=$?\n");
            s.append("iperf3 -s -1 -D\n");
            s.append("i=0; while ! netstat -ltn | grep -q ':5201 ' && [ $i -lt 100 ]; do usleep 100000; "
                    + "i=$((i+1)); done\n");
            s.append("echo VND-IPERF-SERVER-READY\n");
            s.append("i=0; while pidof iperf3 >/dev/null && [ $i -lt ").append((iperfSeconds + 90) * 10)
                    .append(" ]; do usleep 100000; i=$((i+1)); done\n");
        }
        s.append("echo VND-CSUM-AFTER $(vnd-snmp Tcp InCsumErrors)\n");
        return s.toString();
    }

    /** Starts the host's one-shot iperf3 server (if any) and reads the host's checksum error counter. */
    public void prepareHost() {
        hostCsumBefore = ns.snmp("Tcp", "InCsumErrors");
        if (iperfSeconds > 0) {
            upServer = ns.spawn("iperf3-server", "iperf3", "-s", "-1", "-J");
            Poll.until("iperf3 server listening on :5201 in " + ns.name(), Duration.ofSeconds(30),
                    () -> ns.run("ss", "-ltn", "sport = :5201").output().contains(":5201")
                            || !upServer.isAlive(), () -> upServer.output());
            if (!upServer.isAlive()) {
                throw new AssertionError("the iperf3 server in " + ns.name() + " exited at once:\n"
                        + Cmd.indent(upServer.output()));
            }
        }
    }

    /**
     * Runs the host side in step with the guest's script (started after {@link #prepareHost()}) and returns what
     * was seen; asserts nothing but that every step happened (wrap it in {@link Failures#withContext} for the
     * device's side of a failure).
     */
    public Result run(GuestVm vm) {
        String guestPing = step(vm, "VND-PING rc=");
        Cmd.Result hostPing = ns.ping(GUEST_IP, 3);
        step(vm, "VND-HOST-PINGED echos=");
        double up = -1;
        double down = -1;
        if (iperfSeconds > 0) {
            String upLine = step(vm, "VND-UP rc=");
            int exit = upServer.awaitExit(Duration.ofSeconds(60));
            up = receivedBps(upServer.output(), "iperf3 server in " + ns.name() + " (guest -> host; guest said '"
                    + upLine.strip() + "', server exited " + exit + ")");
            step(vm, "VND-IPERF-SERVER-READY");
            Cmd.Result client = ns.run(Duration.ofSeconds(iperfSeconds + 90L), "iperf3", "-c", GUEST_IP, "-t",
                    Integer.toString(iperfSeconds), "-J", "--connect-timeout", "10000");
            down = receivedBps(client.output(), "iperf3 client in " + ns.name() + " (host -> guest, exited "
                    + client.exitCode() + ")");
        }
        long guestBefore = Long.parseLong(vm.awaitMatch("VND-CSUM-BEFORE (\\d+)", STEP).group(1));
        long guestAfter = Long.parseLong(vm.awaitMatch("VND-CSUM-AFTER (\\d+)", STEP).group(1));
        long hostAfter = ns.snmp("Tcp", "InCsumErrors");
        return new Result(guestPing.strip() + "\n" + vm.output().lines()
                .filter(l -> l.contains("packets transmitted")).findFirst().orElse("(no ping summary)"),
                "exit " + hostPing.exitCode() + ":\n" + hostPing.output(), up, down, guestAfter - guestBefore,
                hostAfter - hostCsumBefore);
    }

    private static String step(GuestVm vm, String marker) {
        return vm.awaitLine(marker, STEP);
    }

    /** end.sum_received.bits_per_second of an iperf3 -J report; fails with the report when there is none. */
    static double receivedBps(String json, String what) {
        try {
            Map<String, Object> report = JsonText.object(json.substring(Math.max(0, json.indexOf('{'))));
            Object bps = JsonText.at(report, "end", "sum_received", "bits_per_second");
            return ((Number) bps).doubleValue();
        } catch (RuntimeException e) {
            throw new AssertionError("no throughput from the " + what + ": " + e.getMessage() + "\nreport:\n"
                    + Cmd.indent(Cmd.tail(json, 30)), e);
        }
    }

    /** Both pings answered, as text for assertions: each side's ping exit code and summary. */
    public static boolean pingsOk(Result r) {
        return r.guestPing().contains("VND-PING rc=0") && r.hostPing().startsWith("exit 0");
    }

    /** An iperf3 rate ("940 Mbits/sec": 940 and "M") in Gbit/s. */
    static double gbitPerSecond(String value, String prefix) {
        double v = Double.parseDouble(value);
        return switch (prefix) {
            case "G" -> v;
            case "M" -> v * 1e-3;
            case "K" -> v * 1e-6;
            default -> v * 1e-9;
        };
    }
}
