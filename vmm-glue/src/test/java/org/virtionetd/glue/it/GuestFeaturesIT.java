package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A real Linux guest's virtio_net driver binds to virtio-netd through QEMU's vhost-user front-end, and what the
 * device says was negotiated ({@code virtio-netd features --json}) agrees with what the guest says
 * (/sys/class/net/eth0/device/features, the VND-FEATURES line): the device's {@code acked} set is exactly the
 * guest's features less the bits QEMU 7.2 keeps to itself ({@link QemuVhostUserFeatures}).
 */
@Tag("integration")
class GuestFeaturesIT {
    private static final System.Logger LOG = System.getLogger(GuestFeaturesIT.class.getName());
    /** The guest stays up (bounded) until the host pings it once, so that the device is queried while it runs. */
    static final String STAY_UNTIL_PINGED = "i=0; while [ \"$(vnd-snmp Icmp InEchos)\" -lt 1 ] && [ $i -lt 1800 ]; "
            + "do usleep 100000; i=$((i+1)); done; echo VND-RELEASED echos=$(vnd-snmp Icmp InEchos)";

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void deviceAckedSetIsTheGuestsFeaturesLessWhatQemuKeeps() {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0");
                 GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                         .command(STAY_UNTIL_PINGED).start()) {
                Failures.withContext(() -> device.describe(vm), () -> {
                    long guest = GuestVm.featureBits(vm.awaitFeatures(GuestVm.BOOT_TIMEOUT));
                    vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                    Map<String, Object> features = awaitAcked(device);

                    long acked = VirtioNetd.featureBits(features, "acked");
                    long offered = VirtioNetd.featureBits(features, "offered");
                    long negotiated = VirtioNetd.featureBits(features, "negotiated");
                    LOG.log(System.Logger.Level.INFO, "guest READY after {0} ms; guest features {1}; device {2}",
                            vm.uptime().toMillis(), VirtioNetFeature.names(guest), features);
                    assertThat(VirtioNetFeature.names(acked))
                            .as("the device's acked set (virtio-netd features: %s) against the guest's features %s "
                                            + "less those QEMU keeps (%s)", features,
                                    VirtioNetFeature.names(guest),
                                    VirtioNetFeature.names(QemuVhostUserFeatures.keptByQemu(guest)))
                            .containsExactlyElementsOf(VirtioNetFeature.names(QemuVhostUserFeatures.forwarded(guest)));
                    assertThat(VirtioNetFeature.names(negotiated & ~offered))
                            .as("negotiated features that were never offered (%s)", features).isEmpty();
                    if (VirtioNetFeature.has(acked, VirtioNetFeature.GUEST_CSUM)) {
                        assertThat(JsonText.strings(features, "backend_offloads"))
                                .as("backend offloads with GUEST_CSUM acked (%s)", features).isNotEmpty();
                    }
                    // The driver really binds: it takes the modern interface and the offloads the device offers.
                    assertThat(VirtioNetFeature.names(guest)).as("guest features")
                            .contains("VIRTIO_F_VERSION_1", "VIRTIO_NET_F_MAC", "VIRTIO_NET_F_CSUM",
                                    "VIRTIO_NET_F_GUEST_CSUM");

                    Cmd.Result ping = ns.ping(GuestTraffic.GUEST_IP, 1);
                    assertThat(ping.exitCode()).as("host -> guest ping (releases the guest):\n%s", ping.output())
                            .isZero();
                    vm.awaitLine("VND-RELEASED", Duration.ofSeconds(60));
                    assertThat(vm.awaitDone(Duration.ofSeconds(60))).as("guest command exit code").isZero();
                });
            }
        }
    }

    /**
     * QEMU sends SET_FEATURES when the driver sets DRIVER_OK (vhost_net_start), which may come a moment after the
     * guest prints its features: wait (bounded) for a non-empty acked set.
     */
    static Map<String, Object> awaitAcked(VirtioNetd device) {
        Map<String, Object>[] last = new Map[1];
        Poll.until("non-empty acked feature set from virtio-netd features", Duration.ofSeconds(60), () -> {
            last[0] = device.features();
            return !JsonText.strings(last[0], "acked").isEmpty();
        }, () -> String.valueOf(last[0]));
        return last[0];
    }
}
