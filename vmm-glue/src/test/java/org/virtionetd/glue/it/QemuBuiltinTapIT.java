package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Proves the harness on QEMU's own virtio-net (tap backend, vnet header, no vhost): the guest boots, negotiates
 * features, and guest and host ping each other through a tap in a namespace. It is also the anchor that
 * virtio-netd is measured against: the same guest, the same tap, QEMU's device instead of ours.
 */
@Tag("integration")
class QemuBuiltinTapIT {
    private static final System.Logger LOG = System.getLogger(QemuBuiltinTapIT.class.getName());
    private static final Duration STEP = Duration.ofSeconds(90);

    @Test
    void guestAndHostPingEachOtherThroughQemusVirtioNetOnATap() {
        // The guest pings the host, then stays up (bounded, 60 s) until the host's three echo requests
        // have reached it, so that the host->guest ping below has a guest to answer.
        String guestCommand = String.join("\n",
                "ping -c 3 -W 5 10.77.0.1; echo VND-GUEST-PING rc=$?",
                "i=0",
                "while [ \"$(vnd-snmp Icmp InEchos)\" -lt 3 ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done",
                "echo VND-HOST-PINGED echos=$(vnd-snmp Icmp InEchos)");
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", "10.77.0.1/24");
            try (GuestVm vm = GuestVm.builder().tap("vnd0").netns(ns).ip("10.77.0.2/24").command(guestCommand)
                    .start()) {
                String features = vm.awaitFeatures(GuestVm.BOOT_TIMEOUT);
                long bits = GuestVm.featureBits(features);
                assertThat(VirtioNetFeature.names(bits))
                        .as("features the guest negotiated with QEMU's virtio-net on a tap (%s)", features)
                        .contains("VIRTIO_F_VERSION_1", "VIRTIO_NET_F_MAC", "VIRTIO_NET_F_CSUM",
                                "VIRTIO_NET_F_GUEST_CSUM", "VIRTIO_NET_F_HOST_TSO4", "VIRTIO_NET_F_GUEST_TSO4",
                                "VIRTIO_NET_F_MRG_RXBUF");

                vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                Duration ready = vm.uptime();
                LOG.log(System.Logger.Level.INFO, "guest READY after {0} ms; features {1}", ready.toMillis(),
                        VirtioNetFeature.names(bits));

                vm.awaitLine("VND-GUEST-PING rc=", STEP);
                assertThat(vm.output()).as("guest -> host ping").contains("VND-GUEST-PING rc=0")
                        .containsPattern("3 packets transmitted, [123] packets received");

                Cmd.Result hostPing = ns.ping("10.77.0.2", 3);
                assertThat(hostPing.exitCode()).as("host -> guest ping from %s:\n%s", ns.name(), hostPing.output())
                        .isZero();
                assertThat(hostPing.output()).containsPattern("3 packets transmitted, [123] packets received");

                int rc = vm.awaitDone(STEP);
                assertThat(rc).as("guest command exit code; serial log:\n%s", vm.output()).isZero();
                assertThat(vm.awaitMatch("VND-HOST-PINGED echos=(\\d+)", STEP).group(1))
                        .as("echo requests the guest received from the host").matches("[3-9]|\\d\\d+");
            }
        }
    }
}
