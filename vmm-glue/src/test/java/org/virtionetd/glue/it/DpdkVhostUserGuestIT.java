package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testsupport.Cleanup;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Proves the harness's vhost-user path with a back-end that is not ours: dpdk-testpmd's net_vhost in icmpecho
 * mode (it answers ARP and ping). The guest boots with a vhost-user NIC on testpmd's socket, negotiates, and
 * pings through it. The same shape, with virtio-netd in testpmd's place, is how the device is tested.
 */
@Tag("integration")
class DpdkVhostUserGuestIT {
    private static final Duration STEP = Duration.ofSeconds(90);

    @Test
    void guestPingsThroughAVhostUserNicServedByDpdkTestpmd() throws Exception {
        Path dir = Files.createTempDirectory("vnd-dpdk-");
        Path socket = dir.resolve("vhost.sock");
        String prefix = "vnd-it-" + ProcessHandle.current().pid();
        // No hugepages here: --no-huge with a small -m (a large one makes the memory-table message slow).
        List<String> testpmd = List.of("dpdk-testpmd", "--lcores", "0@0,1@1", "--no-huge", "-m", "256", "--no-pci",
                "--file-prefix=" + prefix, "--vdev", "net_vhost0,iface=" + socket + ",queues=1", "--",
                "--forward-mode=icmpecho", "--nb-cores=1", "--total-num-mbufs=8192", "--stats-period", "60");
        try (Spawned backEnd = Spawned.start(dir.resolve("testpmd.log"), testpmd)) {
            Poll.until("vhost-user socket " + socket, Duration.ofSeconds(60),
                    () -> Files.exists(socket) || !backEnd.isAlive(), () -> Cmd.tail(backEnd.output(), 20));
            assertThat(backEnd.isAlive()).as("dpdk-testpmd running; output:\n%s", backEnd.output()).isTrue();

            try (GuestVm vm = GuestVm.builder().vhostUser(socket).ip("10.77.0.2/24")
                    .command("ping -c 3 -W 5 10.77.0.1; echo VND-PING rc=$?").start()) {
                long bits = GuestVm.featureBits(vm.awaitFeatures(GuestVm.BOOT_TIMEOUT));
                assertThat(VirtioNetFeature.names(bits)).as("features negotiated with testpmd's net_vhost")
                        .contains("VIRTIO_F_VERSION_1", "VIRTIO_NET_F_MAC", "VIRTIO_NET_F_MRG_RXBUF");
                vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                assertThat(vm.awaitLine("VND-PING rc=", STEP)).as("guest ping via testpmd icmpecho; serial:\n%s",
                        vm.output()).contains("VND-PING rc=0");
                assertThat(vm.awaitDone(STEP)).isZero();
            }
        } finally {
            Cleanup.deleteTree(dir);
            Cleanup.deleteTree(Path.of("/var/run/dpdk", prefix));
        }
    }
}
