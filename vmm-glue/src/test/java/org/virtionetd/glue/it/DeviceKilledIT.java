package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Files;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The device process dies under a running guest and a new one takes its place, twice: first SIGKILL in the
 * middle of an iperf3 transfer (no cleanup at all: the socket file stays behind, the new process must replace
 * it), then SIGTERM (a clean stop: exit 143, sockets removed). QEMU's chardev has {@code reconnect=1}; each time
 * a new virtio-netd is started on the same socket path QEMU reconnects and the same guest, never rebooted, pings
 * the host again through it. What the guest sees meanwhile is pings failing (QEMU puts the link down while the
 * back-end is gone).
 */
@Tag("integration")
class DeviceKilledIT {
    private static final System.Logger LOG = System.getLogger(DeviceKilledIT.class.getName());
    private static final String H = GuestTraffic.HOST_IP;
    /**
     * Ping; iperf3 to the host in the background (bounded); then twice: ping every ~0.1-2 s until two pings in a
     * row failed (VND-LOSTk) and a later one succeeds (VND-BACKk, with the guest's uptime); then ping again and
     * wait (bounded) for the host's three echo requests.
     */
    private static final String GUEST = String.join("\n",
            "ping -c 3 -W 5 " + H + "; echo VND-PING1 rc=$?",
            "timeout 60 iperf3 -c " + H + " -t 40 >/dev/null 2>&1 &",
            "echo VND-IPERF-STARTED",
            "for k in 1 2; do",
            "  l=0; c=0; i=0",
            "  while [ $i -lt 900 ]; do",
            "    if ping -c 1 -W 2 " + H + " >/dev/null 2>&1; then [ $l -eq 1 ] && break; c=0",
            "    else c=$((c+1)); if [ $c -eq 2 ] && [ $l -eq 0 ]; then l=1; echo VND-LOST$k; fi; fi",
            "    i=$((i+1)); usleep 100000",
            "  done",
            "  echo VND-BACK$k up=$(cut -d. -f1 /proc/uptime)",
            "done",
            "e=$(vnd-snmp Icmp InEchos); ping -c 3 -W 5 " + H + "; echo VND-PING2 rc=$?",
            "i=0; while [ $(vnd-snmp Icmp InEchos) -lt $((e+3)) ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done",
            "echo VND-HOST-PINGED echos=$(( $(vnd-snmp Icmp InEchos) - e ))");
    private static final Duration STEP = Duration.ofSeconds(120);
    private static final int SIGKILL_EXIT = 137;
    private static final int SIGTERM_EXIT = 143;

    @Test
    @Timeout(value = 12, unit = TimeUnit.MINUTES)
    void guestSurvivesSigkillAndSigtermOfTheDeviceAndReconnectsToANewOne() {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", H + "/24");
            Spawned iperfServer = ns.spawn("iperf3-server", "iperf3", "-s");
            VirtioNetd first = VirtioNetd.start(ns, "vnd0");
            VirtioNetd[] current = {first};
            try (GuestVm vm = GuestVm.builder().vhostUser(first.socket()).reconnect(true)
                    .ip(GuestTraffic.GUEST_IP + "/24").command(GUEST).start()) {
                Failures.withContext(() -> current[0].describe(vm), () -> {
                    vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                    assertThat(vm.awaitLine("VND-PING1 rc=", STEP)).as("first ping").contains("rc=0");
                    vm.awaitLine("VND-IPERF-STARTED", STEP);
                    // Mid-transfer: the device is moving the guest's iperf3 segments right now.
                    long tx0 = VirtioNetd.counter(first.stats(), "tx_packets");
                    Poll.until("iperf3 traffic through the first device", STEP,
                            () -> VirtioNetd.counter(first.stats(), "tx_packets") - tx0 > 2000,
                            () -> first.stats().toString());

                    // ---- SIGKILL: nothing is cleaned up; the socket file stays
                    first.process().process().destroyForcibly();
                    assertThat(first.process().awaitExit(Duration.ofSeconds(30))).as("exit after SIGKILL")
                            .isEqualTo(SIGKILL_EXIT);
                    assertThat(Files.exists(first.socket())).as("stale socket file after SIGKILL").isTrue();
                    vm.awaitLine("VND-LOST1", STEP);
                    VirtioNetd second = startAgain(ns);
                    current[0] = second;
                    String back1 = vm.awaitLine("VND-BACK1", STEP);
                    Map<String, Object> s2 = second.stats();
                    LOG.log(System.Logger.Level.INFO, "second device after the guest reconnected: {0}", s2);
                    assertThat(VirtioNetd.counter(s2, "tx_packets")).as("guest frames through the second device")
                            .isPositive();
                    assertThat(VirtioNetd.counter(s2, "rx_packets")).as("frames to the guest through the second device")
                            .isPositive();

                    // ---- SIGTERM: a clean stop; sockets removed
                    second.process().process().destroy();
                    assertThat(second.process().awaitExit(Duration.ofSeconds(30))).as("exit after SIGTERM; %s",
                            second.logTail(20)).isEqualTo(SIGTERM_EXIT);
                    assertThat(Files.exists(second.socket())).as("socket file after SIGTERM").isFalse();
                    // Not its "shutting down" line: JUL's own shutdown hook (LogManager.Cleaner) resets the
                    // handlers concurrently with ours, so a line logged from a shutdown hook may be lost.
                    assertThat(second.log()).doesNotContain("Exception");
                    vm.awaitLine("VND-LOST2", STEP);
                    VirtioNetd third = startAgain(ns);
                    current[0] = third;
                    String back2 = vm.awaitLine("VND-BACK2", STEP);
                    assertThat(vm.awaitLine("VND-PING2 rc=", STEP)).as("ping through the third device").contains("rc=0");
                    assertThat(ns.ping(GuestTraffic.GUEST_IP, 3).exitCode()).as("host -> guest ping").isZero();
                    assertThat(vm.awaitLine("VND-HOST-PINGED", STEP)).as("echo requests the guest answered")
                            .contains("echos=3");
                    assertThat(vm.awaitDone(STEP)).as("guest command exit code").isZero();

                    // The same guest all along: one boot, uptime moving on, QEMU never restarted.
                    assertThat(vm.output().lines().filter(l -> l.contains("VND-READY")).count())
                            .as("guest boots (VND-READY lines)").isEqualTo(1);
                    assertThat(uptime(back2)).as("guest uptime at VND-BACK2 vs VND-BACK1 (%s / %s)", back1, back2)
                            .isGreaterThan(uptime(back1));
                    Map<String, Object> s3 = third.stats();
                    LOG.log(System.Logger.Level.INFO, "third device: {0}", s3);
                    assertThat(VirtioNetd.counter(s3, "tx_packets")).as("frames through the third device").isPositive();
                    assertThat(VirtioNetd.counter(s3, "invalid_chains")).isZero();
                    assertThat(third.log()).doesNotContain("NEEDS_RESET");
                });
            } finally {
                current[0].close();
                first.close();
                iperfServer.close();
            }
        }
    }

    /** A new virtio-netd on the same socket and control paths; it replaces stale files, so wait for its log. */
    private static VirtioNetd startAgain(NetNs ns) {
        VirtioNetd d = VirtioNetd.start(ns, "vnd0");
        d.process().awaitLine("virtio-netd serving", VirtioNetd.START_TIMEOUT);
        return d;
    }

    private static long uptime(String backLine) {
        return Long.parseLong(backLine.replaceAll(".*up=(\\d+).*", "$1"));
    }
}
