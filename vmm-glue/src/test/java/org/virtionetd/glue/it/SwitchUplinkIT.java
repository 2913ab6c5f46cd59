package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.virtionetd.virtio.testsupport.NetNs;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A guest on a port of virtio-netd's in-process switch whose uplink is a tap in a namespace with an address
 * ({@code --backend switch:sw0,uplink=tap:vnd0[,uplink-no-offload]}): the host pings the guest and the guest the
 * host through the switch, iperf3 TCP runs guest -> host and host -> guest, and neither kernel counts a TCP checksum
 * error. With a vnet header the guest's TSO frames go to the kernel whole with their partial checksums; without one
 * the uplink segments and checksums them in software, and the host's kernel is the judge of both. The guest always
 * hands the switch TSO frames (its port offers every offload), whatever the uplink can take.
 */
@Tag("integration")
class SwitchUplinkIT {
    private static final int IPERF_SECONDS = 4;

    @ParameterizedTest(name = "uplink with vnet header: {0}")
    @ValueSource(booleans = {true, false})
    @Timeout(value = 12, unit = TimeUnit.MINUTES)
    void guestOnTheSwitchReachesTheHostThroughTheUplink(boolean vnetHeader) {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            GuestTraffic traffic = new GuestTraffic(ns, IPERF_SECONDS);
            String backend = "switch:sw0,port=g,uplink=tap:vnd0" + (vnetHeader ? "" : ",uplink-no-offload");
            try (VirtioNetd device = VirtioNetd.startBackend(ns, backend)) {
                String expected = vnetHeader ? "uplink vnd0 with vnet header" : "uplink vnd0 without vnet header";
                Poll.until("the uplink's start in the log", Duration.ofSeconds(30),
                        () -> device.log().contains(expected), () -> device.logTail(20));
                traffic.prepareHost();
                try (GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                        .command(traffic.guestCommand()).start()) {
                    Failures.withContext(() -> device.describe(vm), () -> {
                        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                        GuestTraffic.Result r = traffic.run(vm);
                        Map<String, Object> stats = device.stats();
                        System.out.printf("SwitchUplinkIT (vnet header %s): guest -> host %.0f Mbit/s, host -> guest "
                                        + "%.0f Mbit/s, TcpInCsumErrors added: guest %d, host %d%n", vnetHeader,
                                r.guestToHostBps() / 1e6, r.hostToGuestBps() / 1e6, r.guestCsumErrors(),
                                r.hostCsumErrors());
                        GuestTrafficIT.assertTraffic(r, stats);
                        // The guest's port takes TSO whatever the uplink can carry: frames into the switch average
                        // more than an MTU-sized frame.
                        assertThat(VirtioNetd.counter(stats, "tx_bytes") / VirtioNetd.counter(stats, "tx_packets"))
                                .as("average guest -> switch frame, bytes (TSO in use; %s)", stats)
                                .isGreaterThan(1514);
                        assertThat(VirtioNetd.counter(stats, "rx_bad_offload")).as("rx_bad_offload (%s)", stats)
                                .isZero();
                        assertThat(vm.awaitDone(Duration.ofSeconds(120))).as("guest command exit code").isZero();
                    });
                }
                assertThat(device.isAlive()).as("virtio-netd survived the guest; %s", device.logTail(20)).isTrue();
                assertThat(device.log()).as("virtio-netd log").doesNotContain("Exception").doesNotContain("SEVERE");
            }
        }
    }
}
