package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.NetNs;

import java.nio.file.Files;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The front-end goes away without a word and another one comes: a guest passes traffic through virtio-netd, its
 * QEMU is killed (SIGKILL: no vhost-user goodbye, only EOF on the socket), and a second QEMU (chardev
 * {@code reconnect=1}) boots a fresh guest on the same socket of the same virtio-netd process, which passes
 * traffic again. The device logs the disconnect and keeps answering {@code virtio-netd stats}. At the end SIGTERM
 * stops virtio-netd cleanly: it exits as a JVM does after running its shutdown hooks, and removes its sockets.
 */
@Tag("integration")
class FrontEndReconnectIT {
    private static final System.Logger LOG = System.getLogger(FrontEndReconnectIT.class.getName());
    /** After its traffic the first guest stays up (bounded, 10 min) so that it is killed while running. */
    private static final String STAY_UP = "echo VND-STAYING; i=0; while [ $i -lt 6000 ]; do usleep 100000; "
            + "i=$((i+1)); done";
    /** A JVM ended by SIGTERM exits with 128 + 15 once its shutdown hooks ran (Runtime.exit is not reached). */
    private static final int SIGTERM_EXIT = 143;

    @Test
    @Timeout(value = 12, unit = TimeUnit.MINUTES)
    void secondFrontEndServedAfterTheFirstWasKilledAndSigtermStopsCleanly() {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            VirtioNetd device = VirtioNetd.start(ns, "vnd0");
            try {
                // ---- first front-end: traffic, then SIGKILL
                GuestTraffic first = new GuestTraffic(ns, 0);
                first.prepareHost();
                try (GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                        .command(first.guestCommand() + STAY_UP).start()) {
                    Failures.withContext(() -> device.describe(vm), () -> {
                        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                        GuestTraffic.Result r = first.run(vm);
                        vm.awaitLine("VND-STAYING", Duration.ofSeconds(60));
                        GuestTrafficIT.assertTraffic(r, device.stats());
                        ProcessHandle qemu = ProcessHandle.of(vm.pid()).orElseThrow();
                        assertThat(qemu.destroyForcibly()).as("SIGKILL sent to QEMU %s", vm.pid()).isTrue();
                        qemu.onExit().get(30, TimeUnit.SECONDS);
                        device.process().awaitLine("front-end on .* disconnected", Duration.ofSeconds(30));
                    });
                }
                Map<String, Object> between = device.stats();
                LOG.log(System.Logger.Level.INFO, "after the first front-end was killed: {0}", between);
                assertThat(device.isAlive()).as("virtio-netd after its front-end was killed; %s",
                        device.logTail(30)).isTrue();

                // ---- second front-end on the same device
                GuestTraffic second = new GuestTraffic(ns, 0);
                second.prepareHost();
                try (GuestVm vm = GuestVm.builder().vhostUser(device.socket()).reconnect(true)
                        .ip(GuestTraffic.GUEST_IP + "/24").command(second.guestCommand()).start()) {
                    Failures.withContext(() -> device.describe(vm), () -> {
                        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                        GuestTraffic.Result r = second.run(vm);
                        Map<String, Object> stats = device.stats();
                        LOG.log(System.Logger.Level.INFO, "second front-end: {0}", stats);
                        GuestTrafficIT.assertTraffic(r, stats);
                        assertThat(VirtioNetd.counter(stats, "rx_packets"))
                                .as("device rx_packets grew with the second guest (before: %s)", between)
                                .isGreaterThan(VirtioNetd.counter(between, "rx_packets"));
                        assertThat(vm.awaitDone(Duration.ofSeconds(120))).as("second guest's exit code").isZero();
                    });
                }

                // ---- SIGTERM: a clean stop
                device.process().process().destroy();
                int exit = device.process().awaitExit(Duration.ofSeconds(30));
                LOG.log(System.Logger.Level.INFO, "virtio-netd exited {0} after SIGTERM", exit);
                assertThat(exit).as("virtio-netd exit code after SIGTERM; %s", device.logTail(30))
                        .isEqualTo(SIGTERM_EXIT);
                // Not the "shutting down" line itself: JUL's own shutdown hook may close the log handler first.
                assertThat(device.log()).as("virtio-netd log").doesNotContain("Exception");
                assertThat(Files.exists(device.socket())).as("vhost-user socket %s left behind", device.socket())
                        .isFalse();
                assertThat(Files.exists(device.control())).as("control socket %s left behind", device.control())
                        .isFalse();
            } finally {
                device.close();
            }
        }
    }
}
