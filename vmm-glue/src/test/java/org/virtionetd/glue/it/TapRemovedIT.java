package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.NetNs;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The tap is deleted under a running device and created again: virtio-netd says so in one log line naming the
 * tap, reports {@code link down} in {@code virtio-netd features}, does not spin (its CPU time grows by less than a
 * fifth of the wall time while the tap is gone, although a detached tun fd polls as an error forever), counts the
 * guest's frames it cannot deliver as drops, and once a tap of that name exists again re-attaches by itself: link
 * up, and the guest's pings are answered again, without restarting the device or the guest.
 *
 * <p>Under vhost-user the guest does not see the link change (QEMU keeps the status field; see docs/faults.md):
 * what the guest sees is pings failing while the tap is gone and succeeding after.
 */
@Tag("integration")
class TapRemovedIT {
    private static final System.Logger LOG = System.getLogger(TapRemovedIT.class.getName());
    private static final String H = GuestTraffic.HOST_IP;
    /**
     * Ping, then ping once every ~0.1-1 s until a ping fails and a later one succeeds (bounded), then ping again
     * and wait (bounded) for the host's three echo requests.
     */
    private static final String GUEST = String.join("\n",
            "ping -c 3 -W 5 " + H + "; echo VND-PING1 rc=$?",
            "f=0; i=0",
            "while [ $i -lt 900 ]; do",
            "  if ping -c 1 -W 1 " + H + " >/dev/null 2>&1; then [ $f -gt 0 ] && break",
            "  else f=$((f+1)); [ $f -eq 1 ] && echo VND-PING-FAILING; fi",
            "  i=$((i+1)); usleep 100000",
            "done",
            "echo VND-PING-BACK fails=$f",
            "e=$(vnd-snmp Icmp InEchos); ping -c 3 -W 5 " + H + "; echo VND-PING2 rc=$?",
            "i=0; while [ $(vnd-snmp Icmp InEchos) -lt $((e+3)) ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done",
            "echo VND-HOST-PINGED echos=$(( $(vnd-snmp Icmp InEchos) - e ))");
    private static final Duration STEP = Duration.ofSeconds(120);

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void deletedTapTakesTheLinkDownWithoutSpinningAndTrafficResumesWhenItComesBack() {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", H + "/24");
            String tapMac = ns.exec("cat", "/sys/class/net/vnd0/address").strip();
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0");
                 GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                         .command(GUEST).start()) {
                Failures.withContext(() -> device.describe(vm), () -> {
                    vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                    assertThat(vm.awaitLine("VND-PING1 rc=", STEP)).as("guest ping with the tap there")
                            .contains("rc=0");
                    assertThat(device.features().get("link")).as("link before the tap is deleted").isEqualTo("up");
                    Map<String, Object> before = device.stats();

                    // ---- the tap goes
                    ns.exec("ip", "link", "del", "vnd0");
                    long goneAt = System.nanoTime();
                    String line = device.process().awaitLine("tap vnd0 is gone", Duration.ofSeconds(60));
                    LOG.log(System.Logger.Level.INFO, "after {0} ms: {1}", (System.nanoTime() - goneAt) / 1_000_000,
                            line);
                    Poll.until("link down in virtio-netd features", Duration.ofSeconds(30),
                            () -> "down".equals(device.features().get("link")), () -> device.features().toString());
                    vm.awaitLine("VND-PING-FAILING", STEP);
                    double cpu = ProcStat.cpuShare(device.process().pid(), Duration.ofSeconds(5));
                    LOG.log(System.Logger.Level.INFO, "virtio-netd CPU while the tap is gone: {0}", cpu);
                    assertThat(cpu).as("virtio-netd CPU time / wall time over 5 s while the tap is gone")
                            .isLessThan(0.2);
                    assertThat(device.log().lines().filter(l -> l.contains("tap vnd0 is gone")).count())
                            .as("log lines saying the tap is gone").isEqualTo(1);
                    assertThat(device.isAlive()).isTrue();

                    // ---- it comes back (same name and MAC, as an admin re-creating it would)
                    ns.exec("ip", "tuntap", "add", "dev", "vnd0", "mode", "tap");
                    ns.exec("ip", "link", "set", "vnd0", "address", tapMac);
                    ns.addAddress("vnd0", H + "/24");
                    ns.up("vnd0");
                    device.process().awaitLine("tap vnd0 is back", Duration.ofSeconds(60));
                    Poll.until("link up in virtio-netd features", Duration.ofSeconds(30),
                            () -> "up".equals(device.features().get("link")), () -> device.features().toString());
                    String back = vm.awaitLine("VND-PING-BACK", STEP);
                    assertThat(vm.awaitLine("VND-PING2 rc=", STEP)).as("guest ping after the tap came back (%s)",
                            back).contains("rc=0");
                    assertThat(ns.ping(GuestTraffic.GUEST_IP, 3).exitCode()).as("host -> guest ping after").isZero();
                    assertThat(vm.awaitLine("VND-HOST-PINGED", STEP)).as("echo requests the guest answered")
                            .contains("echos=3");
                    assertThat(vm.awaitDone(STEP)).as("guest command exit code").isZero();

                    Map<String, Object> after = device.stats();
                    LOG.log(System.Logger.Level.INFO, "before {0}\nafter {1}", before, after);
                    assertThat(VirtioNetd.counter(after, "tx_dropped_backend"))
                            .as("guest frames dropped (and counted) while the tap was gone")
                            .isGreaterThan(VirtioNetd.counter(before, "tx_dropped_backend"));
                    assertThat(VirtioNetd.counter(after, "rx_packets")).as("frames to the guest after the tap came back")
                            .isGreaterThan(VirtioNetd.counter(before, "rx_packets"));
                    assertThat(VirtioNetd.counter(after, "invalid_chains")).isZero();
                    assertThat(device.log()).as("device log").doesNotContain("Exception");
                });
            }
        }
    }
}
