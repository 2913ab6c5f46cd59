package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testsupport.NetNs;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * QEMU's virtio-net-pci properties take features away from the guest; the device must follow the driver down
 * and still carry traffic: a legacy (virtio 0.9.5) driver without VERSION_1, a driver without mergeable receive
 * buffers, a driver without any checksum offload (hence no TSO either, 5.1.3.1). Each case checks what the device
 * says was acked and is in effect, then pings both ways and moves TCP both ways for a short while without
 * checksum errors.
 *
 * <p>With {@code csum=off,guest_csum=off} QEMU 7.2 still offers the guest HOST_TSO4/6, GUEST_TSO4/6, the ECN and
 * UFO bits (it does not close its offer under 5.1.3.1), and Linux 6.1's virtio_net acks them: the device's acked
 * set has them, but none of CSUM, GUEST_CSUM, HOST_TSO4/6, GUEST_TSO4/6 may be in effect ({@code negotiated}), as
 * with a kernel tap, which ignores TUN_F_TSO* without TUN_F_CSUM.
 */
@Tag("integration")
class GuestNegotiatesDownIT {
    private static final System.Logger LOG = System.getLogger(GuestNegotiatesDownIT.class.getName());
    private static final int IPERF_SECONDS = 2;

    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of("disable-modern=on,disable-legacy=off",
                        List.of(VirtioFeature.VERSION_1), false),
                Arguments.of("mrg_rxbuf=off",
                        List.of(VirtioNetFeature.MRG_RXBUF), false),
                Arguments.of("csum=off,guest_csum=off",
                        List.of(VirtioNetFeature.CSUM, VirtioNetFeature.GUEST_CSUM, VirtioNetFeature.HOST_TSO4,
                                VirtioNetFeature.HOST_TSO6, VirtioNetFeature.GUEST_TSO4, VirtioNetFeature.GUEST_TSO6),
                        true));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void negotiatesDownAndStillCarriesTraffic(String deviceProperties, List<Integer> absentBits,
                                             boolean noBackendOffloads) {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            GuestTraffic traffic = new GuestTraffic(ns, IPERF_SECONDS);
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0")) {
                traffic.prepareHost();
                try (GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                        .deviceProperties(deviceProperties).command(traffic.guestCommand()).start()) {
                    Failures.withContext(() -> device.describe(vm), () -> {
                        long guest = GuestVm.featureBits(vm.awaitFeatures(GuestVm.BOOT_TIMEOUT));
                        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                        Map<String, Object> features = GuestFeaturesIT.awaitAcked(device);
                        long acked = VirtioNetd.featureBits(features, "acked");
                        long negotiated = VirtioNetd.featureBits(features, "negotiated");
                        LOG.log(System.Logger.Level.INFO, "{0}: guest features {1}; device {2}", deviceProperties,
                                VirtioNetFeature.names(guest), features);
                        long absent = 0;
                        for (int bit : absentBits) {
                            absent |= 1L << bit;
                        }
                        // What the driver acked reaches the device unchanged (less what QEMU keeps), whatever
                        // it is: the device cannot refuse under vhost-user (QEMU neither waits for a reply to
                        // SET_FEATURES nor reads FEATURES_OK back), so it must take what the driver uses.
                        assertThat(VirtioNetFeature.names(acked))
                                .as("device acked = guest features less what QEMU keeps (guest %s)",
                                        VirtioNetFeature.names(guest))
                                .containsExactlyElementsOf(
                                        VirtioNetFeature.names(QemuVhostUserFeatures.forwarded(guest)));
                        assertThat(VirtioNetFeature.names(negotiated & absent))
                                .as("with %s these must not be in effect in the device (features: %s)",
                                        deviceProperties, features).isEmpty();
                        assertThat(VirtioNetFeature.names(negotiated & ~acked))
                                .as("in effect but not acked (features: %s)", features).isEmpty();
                        if (noBackendOffloads) {
                            assertThat(JsonText.strings(features, "backend_offloads"))
                                    .as("backend offloads without GUEST_CSUM (%s)", features).isEmpty();
                        }

                        GuestTraffic.Result r = traffic.run(vm);
                        Map<String, Object> stats = device.stats();
                        LOG.log(System.Logger.Level.INFO, "{0}: guest -> host {1} Mbit/s, host -> guest {2} Mbit/s, "
                                        + "TcpInCsumErrors added: guest {3}, host {4}; stats {5}", deviceProperties,
                                r.guestToHostBps() / 1e6, r.hostToGuestBps() / 1e6, r.guestCsumErrors(),
                                r.hostCsumErrors(), stats);
                        GuestTrafficIT.assertTraffic(r, stats);
                        assertThat(vm.awaitDone(Duration.ofSeconds(120))).as("guest command exit code").isZero();
                    });
                }
            }
        }
    }
}
