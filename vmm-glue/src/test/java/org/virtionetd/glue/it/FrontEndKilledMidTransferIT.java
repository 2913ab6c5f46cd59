package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * QEMU is killed (SIGKILL) while its guest is in the middle of an iperf3 transfer through virtio-netd, with
 * frames in flight both ways. The device logs the disconnect and lets go of everything the connection brought:
 * its descriptor count returns to what it was before the front-end came, the guest's memory is no longer mapped,
 * its queue threads stop (CPU near zero afterwards, no loop on dead eventfds). A new guest then passes traffic
 * through the same process.
 */
@Tag("integration")
class FrontEndKilledMidTransferIT {
    private static final System.Logger LOG = System.getLogger(FrontEndKilledMidTransferIT.class.getName());
    private static final Duration STEP = Duration.ofSeconds(120);

    @Test
    @Timeout(value = 12, unit = TimeUnit.MINUTES)
    void frontEndKilledDuringIperfLeavesNoFdsMappingsOrBusyThreads() {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            Spawned iperfServer = ns.spawn("iperf3-server", "iperf3", "-s");
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0")) {
                long pid = device.process().pid();
                device.process().awaitLine("virtio-netd serving", VirtioNetd.START_TIMEOUT);
                device.stats(); // the control path has served once: what it opens lazily is in the baseline
                int fdsIdle = ProcStat.fdCount(pid);
                // Guest -> host for 60 s (bounded by timeout); it is killed long before it ends.
                String command = "timeout 90 iperf3 -c " + GuestTraffic.HOST_IP + " -t 60 -f m; echo VND-UP rc=$?";
                try (GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                        .command(command).start()) {
                    Failures.withContext(() -> device.describe(vm), () -> {
                        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                        long tx0 = VirtioNetd.counter(device.stats(), "tx_packets");
                        Poll.until("iperf3 traffic through the device", STEP,
                                () -> VirtioNetd.counter(device.stats(), "tx_packets") - tx0 > 3000,
                                () -> device.stats().toString());
                        int fdsConnected = ProcStat.fdCount(pid);
                        long mapped = guestMappings(pid);
                        LOG.log(System.Logger.Level.INFO, "fds idle {0}, connected {1}; guest memory mappings {2}",
                                fdsIdle, fdsConnected, mapped);
                        assertThat(mapped).as("guest memory (memfd) mappings while connected").isPositive();

                        ProcessHandle qemu = ProcessHandle.of(vm.pid()).orElseThrow();
                        assertThat(qemu.destroyForcibly()).isTrue();
                        qemu.onExit().get(30, TimeUnit.SECONDS);
                        device.process().awaitLine("front-end on .* disconnected", Duration.ofSeconds(30));
                    });
                }
                Failures.withContext(device::describe, () -> {
                    assertThat(device.isAlive()).as("virtio-netd after its front-end was killed").isTrue();
                    Poll.until("descriptor count back to " + fdsIdle + " (before the front-end came)",
                            Duration.ofSeconds(30), () -> ProcStat.fdCount(pid) == fdsIdle,
                            () -> ProcStat.fdCount(pid) + " fds: " + fds(pid));
                    assertThat(guestMappings(pid)).as("guest memory mappings after the disconnect").isZero();
                    double cpu = ProcStat.cpuShare(pid, Duration.ofSeconds(3));
                    LOG.log(System.Logger.Level.INFO, "virtio-netd CPU after the disconnect: {0}", cpu);
                    assertThat(cpu).as("virtio-netd CPU time / wall time over 3 s after the disconnect")
                            .isLessThan(0.2);
                });
                iperfServer.close();

                // ---- a new guest on the same device
                GuestTraffic second = new GuestTraffic(ns, 0);
                second.prepareHost();
                try (GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                        .command(second.guestCommand()).start()) {
                    Failures.withContext(() -> device.describe(vm), () -> {
                        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                        GuestTraffic.Result r = second.run(vm);
                        Map<String, Object> stats = device.stats();
                        assertThat(GuestTraffic.pingsOk(r)).as("pings with the second guest: %s / %s",
                                r.guestPing(), r.hostPing()).isTrue();
                        assertThat(vm.awaitDone(STEP)).as("second guest's exit code").isZero();
                        assertThat(VirtioNetd.counter(stats, "invalid_chains")).isZero();
                    });
                }
            }
        }
    }

    /** Mappings of the guest's RAM (QEMU's memory-backend-memfd shows as /memfd:...). */
    private static long guestMappings(long pid) {
        try {
            return Files.readAllLines(Path.of("/proc", Long.toString(pid), "maps")).stream()
                    .filter(l -> l.contains("/memfd:")).count();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static String fds(long pid) {
        StringBuilder sb = new StringBuilder();
        try (var s = Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            s.forEach(p -> {
                try {
                    sb.append(p.getFileName()).append("->").append(Files.readSymbolicLink(p)).append(' ');
                } catch (IOException e) {
                    sb.append(p.getFileName()).append("->? ");
                }
            });
        } catch (IOException e) {
            return "(cannot list: " + e.getMessage() + ")";
        }
        return sb.toString();
    }
}
