package org.virtionetd.virtio.net;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.virtio.net.CounterDelta.assertChanged;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_USO4;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_USO6;

/**
 * A USO frame (gso_type UDP_L4) from the backend reaches the driver only if the driver accepted the GUEST_USO bit of
 * the frame's own IP version (virtio 1.2, 5.1.3 GUEST_USO4 / GUEST_USO6, 5.1.6.4.1): a backend that breaks this is
 * caught by the device and the frame counted under rx_bad_offload, never handed to the guest.
 */
class GuestUsoDeviceTest {
    private static final int ETH_P_IP = 0x0800;
    private static final int ETH_P_IPV6 = 0x86dd;
    private static final int ETH_P_8021Q = 0x8100;

    /** A frame to the device's MAC with {@code etherType} (after one 802.1Q tag when {@code tagged}). */
    static byte[] frame(int etherType, boolean tagged, int length, long seed) {
        byte[] f = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, length, seed);
        int at = 12;
        if (tagged) {
            f[at] = (byte) (ETH_P_8021Q >> 8);
            f[at + 1] = (byte) ETH_P_8021Q;
            f[at + 2] = 0; // VID 0: priority tag, accepted by every VLAN filter setting
            f[at + 3] = 0;
            at += 4;
        }
        f[at] = (byte) (etherType >> 8);
        f[at + 1] = (byte) etherType;
        return f;
    }

    static byte[] usoHeader() {
        return NetHeaderFields.gso(NetHeaderFields.GSO_UDP_L4, 1400, 62, 54, 6).encode(12);
    }

    /** The driver accepted {@code accepted} but not {@code refused}; a USO frame of each IP version arrives. */
    private static void onlyTheAcceptedVersionArrives(RingFormat format, int refused, int refusedEtherType, int acceptedEtherType,
                                                      boolean tagged) throws Exception {
        // Without CTRL_VLAN the device filters no VLAN (5.1.6.5.3), so the tagged frame is not filtered.
        VirtioNetDriver.Options o = tagged ? format.options().without(refused, VirtioNetFeature.CTRL_VLAN)
                : format.options().without(refused);
        try (NetFixture f = NetFixture.started(VirtioNetFeature.OFFLOADS, o)) {
            assertThat(VirtioNetFeature.has(f.device.guestOffloads(), refused)).isFalse();
            Map<String, Long> before = f.snapshot();
            f.backend().deliver(usoHeader(), frame(refusedEtherType, tagged, 5000, 1));
            byte[] ok = frame(acceptedEtherType, tagged, 5000, 2);
            f.backend().deliver(usoHeader(), ok);
            var got = f.driver.awaitPackets(0, 1);
            assertThat(got).hasSize(1);
            assertThat(got.get(0).frame()).isEqualTo(ok);
            assertThat(got.get(0).header().gsoType()).isEqualTo(NetHeaderFields.GSO_UDP_L4);
            assertChanged(before, f.snapshot(), "rx_bad_offload", 1, "rx_packets", 1);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void anIpv6UsoFrameDoesNotReachADriverThatAcceptedOnlyUso4(RingFormat format) throws Exception {
        onlyTheAcceptedVersionArrives(format, GUEST_USO6, ETH_P_IPV6, ETH_P_IP, false);
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void anIpv4UsoFrameDoesNotReachADriverThatAcceptedOnlyUso6(RingFormat format) throws Exception {
        onlyTheAcceptedVersionArrives(format, GUEST_USO4, ETH_P_IP, ETH_P_IPV6, false);
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void theIpVersionIsReadBehindAVlanTag(RingFormat format) throws Exception {
        onlyTheAcceptedVersionArrives(format, GUEST_USO6, ETH_P_IPV6, ETH_P_IP, true);
        onlyTheAcceptedVersionArrives(format, GUEST_USO4, ETH_P_IP, ETH_P_IPV6, true);
    }
}
