package org.virtionetd.backends.tap;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.VirtioNetFeature;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_CSUM;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_TSO4;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_TSO6;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_TSO_ECN;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_UFO;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_USO4;
import static org.virtionetd.backends.tap.uapi.IfTun.TUN_F_USO6;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_CSUM;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_ECN;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_TSO4;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_TSO6;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_UFO;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_USO4;
import static org.virtionetd.virtio.net.VirtioNetFeature.GUEST_USO6;

class TunOffloadsTest {
    private static long f(int... bits) {
        return VirtioNetFeature.bits(bits);
    }

    private static final long CSUM = f(GUEST_CSUM);

    @Test
    void nothingWithoutGuestCsum() {
        assertThat(TunOffloads.fromGuestFeatures(0)).isZero();
        // Every GSO bit acked but not GUEST_CSUM: a GSO frame carries a partial checksum, so none may be handed.
        assertThat(TunOffloads.fromGuestFeatures(VirtioNetFeature.GUEST_OFFLOADS & ~CSUM)).isZero();
    }

    @Test
    void guestCsumAloneGivesTunCsum() {
        assertThat(TunOffloads.fromGuestFeatures(CSUM)).isEqualTo(TUN_F_CSUM);
    }

    @Test
    void eachGuestBitMapsToItsFlag() {
        assertThat(TunOffloads.fromGuestFeatures(CSUM | f(GUEST_TSO4))).isEqualTo(TUN_F_CSUM | TUN_F_TSO4);
        assertThat(TunOffloads.fromGuestFeatures(CSUM | f(GUEST_TSO6))).isEqualTo(TUN_F_CSUM | TUN_F_TSO6);
        assertThat(TunOffloads.fromGuestFeatures(CSUM | f(GUEST_UFO))).isEqualTo(TUN_F_CSUM | TUN_F_UFO);
        assertThat(TunOffloads.fromGuestFeatures(CSUM | f(GUEST_USO4))).isEqualTo(TUN_F_CSUM | TUN_F_USO4);
        assertThat(TunOffloads.fromGuestFeatures(CSUM | f(GUEST_USO6))).isEqualTo(TUN_F_CSUM | TUN_F_USO6);
    }

    @Test
    void ecnOnlyWithTso() {
        assertThat(TunOffloads.fromGuestFeatures(CSUM | f(GUEST_ECN))).isEqualTo(TUN_F_CSUM);
        assertThat(TunOffloads.fromGuestFeatures(CSUM | f(GUEST_ECN, GUEST_TSO4)))
                .isEqualTo(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN);
        assertThat(TunOffloads.fromGuestFeatures(CSUM | f(GUEST_ECN, GUEST_TSO6)))
                .isEqualTo(TUN_F_CSUM | TUN_F_TSO6 | TUN_F_TSO_ECN);
    }

    @Test
    void everythingMapsToAll() {
        assertThat(TunOffloads.fromGuestFeatures(VirtioNetFeature.GUEST_OFFLOADS)).isEqualTo(TunOffloads.ALL);
    }

    @Test
    void nonGuestBitsAreIgnored() {
        long hostSide = VirtioNetFeature.HOST_OFFLOADS | f(VirtioNetFeature.MRG_RXBUF, VirtioNetFeature.CTRL_VQ);
        assertThat(TunOffloads.fromGuestFeatures(hostSide)).isZero();
        assertThat(TunOffloads.fromGuestFeatures(hostSide | CSUM)).isEqualTo(TUN_F_CSUM);
    }

    @Test
    void guestFeaturesInvertTheMapping() {
        assertThat(TunOffloads.guestFeatures(TunOffloads.ALL)).isEqualTo(VirtioNetFeature.GUEST_OFFLOADS);
        assertThat(TunOffloads.guestFeatures(0)).isZero();
        assertThat(TunOffloads.guestFeatures(TUN_F_TSO4)).as("TSO without CSUM is not possible").isZero();
        assertThat(TunOffloads.guestFeatures(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO))
                .isEqualTo(f(GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO));
        assertThat(TunOffloads.guestFeatures(TUN_F_CSUM | TUN_F_USO4))
                .as("Linux takes USO only as the pair").isEqualTo(CSUM);
        for (long acked : new long[] {CSUM, CSUM | f(GUEST_TSO4), CSUM | f(GUEST_TSO6, GUEST_ECN),
            CSUM | f(GUEST_UFO), CSUM | f(GUEST_USO4, GUEST_USO6), VirtioNetFeature.GUEST_OFFLOADS}) {
            assertThat(TunOffloads.guestFeatures(TunOffloads.fromGuestFeatures(acked))).isEqualTo(acked);
        }
    }

    @Test
    void hostFeaturesFollowTheProbe() {
        long base = f(VirtioNetFeature.CSUM, VirtioNetFeature.HOST_TSO4, VirtioNetFeature.HOST_TSO6,
                VirtioNetFeature.HOST_ECN);
        assertThat(TunOffloads.hostFeatures(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)).isEqualTo(base);
        assertThat(TunOffloads.hostFeatures(TUN_F_CSUM | TUN_F_UFO))
                .isEqualTo(base | f(VirtioNetFeature.HOST_UFO));
        assertThat(TunOffloads.hostFeatures(TunOffloads.ALL)).isEqualTo(VirtioNetFeature.HOST_OFFLOADS);
    }

    @Test
    void fallbackDropsUsoThenUfo() {
        assertThat(TunOffloads.attempts(TunOffloads.ALL)).containsExactly(
                TunOffloads.ALL,
                TunOffloads.ALL & ~(TUN_F_USO4 | TUN_F_USO6),
                TunOffloads.ALL & ~(TUN_F_USO4 | TUN_F_USO6 | TUN_F_UFO));
        assertThat(TunOffloads.attempts(TUN_F_CSUM | TUN_F_UFO)).containsExactly(TUN_F_CSUM | TUN_F_UFO, TUN_F_CSUM);
        assertThat(TunOffloads.attempts(TUN_F_CSUM | TUN_F_USO4))
                .containsExactly(TUN_F_CSUM | TUN_F_USO4, TUN_F_CSUM);
        assertThat(TunOffloads.attempts(TUN_F_CSUM)).containsExactly(TUN_F_CSUM);
        assertThat(TunOffloads.attempts(0)).containsExactly(0);
    }

    /** A fake kernel that refuses any set containing one of {@code refused} (as pre-6.2 Linux refuses USO). */
    private static TunOffloads.Setter kernelRefusing(int refused, List<Integer> tried) {
        return flags -> {
            tried.add(flags);
            return (flags & refused) != 0 ? -22 : 0;
        };
    }

    @Test
    void programStopsAtTheFirstAcceptedSet() throws IOException {
        List<Integer> tried = new ArrayList<>();
        assertThat(TunOffloads.program(TunOffloads.ALL, kernelRefusing(0, tried), "t")).isEqualTo(TunOffloads.ALL);
        assertThat(tried).containsExactly(TunOffloads.ALL);

        tried.clear();
        int noUso = TunOffloads.ALL & ~(TUN_F_USO4 | TUN_F_USO6);
        assertThat(TunOffloads.program(TunOffloads.ALL, kernelRefusing(TUN_F_USO4, tried), "t")).isEqualTo(noUso);
        assertThat(tried).containsExactly(TunOffloads.ALL, noUso);

        tried.clear();
        assertThat(TunOffloads.program(TunOffloads.ALL, kernelRefusing(TUN_F_USO6 | TUN_F_UFO, tried), "t"))
                .isEqualTo(noUso & ~TUN_F_UFO);
        assertThat(tried).hasSize(3);
    }

    @Test
    void programFailsNamingTheTapAndFlagsWhenEverythingIsRefused() {
        List<Integer> tried = new ArrayList<>();
        assertThatThrownBy(() -> TunOffloads.program(TUN_F_CSUM | TUN_F_TSO4, kernelRefusing(TUN_F_CSUM, tried),
                "tap vnt0"))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("tap vnt0").hasMessageContaining("TUN_F_TSO4").hasMessageContaining("errno 22");
    }

    @Test
    void namesAreTheUapiNames() {
        assertThat(TunOffloads.names(0)).isEmpty();
        assertThat(TunOffloads.names(TunOffloads.ALL)).containsExactly("TUN_F_CSUM", "TUN_F_TSO4", "TUN_F_TSO6",
                "TUN_F_TSO_ECN", "TUN_F_UFO", "TUN_F_USO4", "TUN_F_USO6");
        assertThat(TunOffloads.names(TUN_F_CSUM | 0x100)).containsExactly("TUN_F_CSUM", "0x100");
    }
}
