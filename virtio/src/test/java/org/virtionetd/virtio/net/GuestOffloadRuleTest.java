package org.virtionetd.virtio.net;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.virtio.net.GuestOffloadRule.Verdict.DELIVER;
import static org.virtionetd.virtio.net.GuestOffloadRule.Verdict.DELIVER_WITHOUT_FLAGS;
import static org.virtionetd.virtio.net.GuestOffloadRule.Verdict.REFUSE;
import static org.virtionetd.virtio.net.VirtioNetFeature.*;
import static org.virtionetd.virtio.net.VirtioNetHeader.*;

/**
 * {@link GuestOffloadRule} (RX, 5.1.6.4.1) and {@link HeaderCheck#offloadsCarried} (TX, 5.1.6.2.1) flag by flag:
 * each GSO type against each feature bit, the USO bits by IP version, and properties over every header byte.
 */
class GuestOffloadRuleTest {
    static final long ALL_GUEST = GUEST_OFFLOADS;

    /** gso_type, IP version, the one GUEST_* bit it needs. */
    @ParameterizedTest(name = "gso_type {0} over IPv{1} needs bit {2}")
    @CsvSource({
        "1, 4, 7",   // TCPV4: GUEST_TSO4
        "1, 6, 7",   // the type names the version; the frame's is not looked at
        "4, 6, 8",   // TCPV6: GUEST_TSO6
        "4, 4, 8",
        "3, 4, 10",  // UDP (UFO): GUEST_UFO
        "3, 6, 10",
        "5, 4, 54",  // UDP_L4 (USO) over IPv4: GUEST_USO4
        "5, 6, 55",  // UDP_L4 over IPv6: GUEST_USO6
    })
    void eachGsoTypeNeedsItsOwnGuestBit(int gso, int ipVersion, int bit) {
        long csum = bits(GUEST_CSUM);
        assertThat(GuestOffloadRule.verdict(csum | bits(bit), F_NEEDS_CSUM, gso, ipVersion)).isEqualTo(DELIVER);
        assertThat(GuestOffloadRule.verdict(ALL_GUEST & ~bits(bit), F_NEEDS_CSUM, gso, ipVersion))
                .as("every GUEST_* bit but %s", name(bit)).isEqualTo(REFUSE);
        for (int other : new int[] {GUEST_TSO4, GUEST_TSO6, GUEST_UFO, GUEST_USO4, GUEST_USO6}) {
            if (other != bit) {
                assertThat(GuestOffloadRule.verdict(csum | bits(other), F_NEEDS_CSUM, gso, ipVersion))
                        .as("gso_type %d over IPv%d with only %s", gso, ipVersion, name(other)).isEqualTo(REFUSE);
            }
        }
    }

    @ParameterizedTest(name = "USO with IP version {0} is never received")
    @CsvSource({"0", "5", "7"})
    void usoOfNoKnownIpVersionIsRefusedEvenWithBothBits(int ipVersion) {
        assertThat(GuestOffloadRule.verdict(ALL_GUEST, F_NEEDS_CSUM, GSO_UDP_L4, ipVersion)).isEqualTo(REFUSE);
    }

    @ParameterizedTest(name = "gso_type {0} does not exist")
    @CsvSource({"2", "6", "7", "127", "130"})
    void unknownGsoTypesAreRefused(int gso) {
        assertThat(GuestOffloadRule.verdict(ALL_GUEST, F_NEEDS_CSUM, gso, 4)).isEqualTo(REFUSE);
        assertThat(GuestOffloadRule.verdict(ALL_GUEST, F_NEEDS_CSUM, gso, 6)).isEqualTo(REFUSE);
    }

    @ParameterizedTest(name = "ECN on gso_type {0}")
    @CsvSource({"1, 4", "4, 6", "3, 4", "5, 4", "5, 6", "0, 4"})
    void theEcnBitNeedsGuestEcn(int proto, int ipVersion) {
        int gso = proto | GSO_ECN;
        assertThat(GuestOffloadRule.verdict(ALL_GUEST, F_NEEDS_CSUM, gso, ipVersion)).isEqualTo(DELIVER);
        assertThat(GuestOffloadRule.verdict(ALL_GUEST & ~bits(GUEST_ECN), F_NEEDS_CSUM, gso, ipVersion))
                .isEqualTo(REFUSE);
    }

    @ParameterizedTest(name = "flags {0}")
    @CsvSource({"1", "3", "5", "7"})
    void needsCsumNeedsGuestCsumAndCannotBeCleared(int flags) {
        assertThat(GuestOffloadRule.verdict(0, flags, GSO_NONE, 4)).isEqualTo(REFUSE);
        assertThat(GuestOffloadRule.verdict(ALL_GUEST & ~bits(GUEST_CSUM), flags, GSO_NONE, 4)).isEqualTo(REFUSE);
        assertThat(GuestOffloadRule.verdict(bits(GUEST_CSUM), flags, GSO_NONE, 4)).isEqualTo(DELIVER);
    }

    @ParameterizedTest(name = "flags {0}")
    @CsvSource({"2", "4", "6", "128"})
    void otherFlagsWithoutGuestCsumAreCleared(int flags) {
        assertThat(GuestOffloadRule.verdict(0, flags, GSO_NONE, 0)).isEqualTo(DELIVER_WITHOUT_FLAGS);
        assertThat(GuestOffloadRule.verdict(bits(GUEST_CSUM), flags, GSO_NONE, 0)).isEqualTo(DELIVER);
    }

    @ParameterizedTest(name = "accepted {0}")
    @CsvSource({"0", "2", "-1"})
    void aPlainFrameAlwaysGoes(long accepted) {
        assertThat(GuestOffloadRule.verdict(accepted, 0, GSO_NONE, 0)).isEqualTo(DELIVER);
    }

    @Provide
    Arbitrary<Long> features() {
        return Arbitraries.longs().map(v -> v & ALL_GUEST);
    }

    @Property
    void noVerdictDeliversAnOffloadTheDriverDidNotAccept(@ForAll("features") long accepted,
                                                         @ForAll int flagsByte, @ForAll int gsoByte,
                                                         @ForAll("ipVersions") int ipVersion) {
        int flags = flagsByte & 0xff;
        int gso = gsoByte & 0xff;
        GuestOffloadRule.Verdict v = GuestOffloadRule.verdict(accepted, flags, gso, ipVersion);
        if (v == REFUSE) {
            return;
        }
        int delivered = v == DELIVER_WITHOUT_FLAGS ? 0 : flags;
        if (!has(accepted, GUEST_CSUM)) {
            assertThat(delivered).as("flags reaching a driver without GUEST_CSUM").isZero();
        }
        if ((gso & GSO_ECN) != 0) {
            assertThat(has(accepted, GUEST_ECN)).isTrue();
        }
        int proto = gso & ~GSO_ECN;
        if (proto != GSO_NONE) {
            long needed = guestFeatureFor(proto, ipVersion);
            assertThat(needed).as("a known type").isNotZero();
            assertThat(accepted & needed).isNotZero();
        }
        // Adding an accepted bit never turns a deliverable frame into a refused one.
        for (int bit : new int[] {GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO, GUEST_USO4, GUEST_USO6}) {
            assertThat(GuestOffloadRule.verdict(accepted | bits(bit), flags, gso, ipVersion).deliverable()).isTrue();
        }
    }

    @Provide
    Arbitrary<Integer> ipVersions() {
        return Arbitraries.of(0, 4, 6);
    }

    // ------------------------------------------------------------------ TX: HeaderCheck.offloadsCarried

    /** gso_type, the HOST_* bit it needs. */
    @ParameterizedTest(name = "TX gso_type {0} needs bit {1}")
    @CsvSource({"1, 11", "4, 12", "3, 14", "5, 56"})
    void eachTransmittedGsoTypeNeedsItsHostBit(int gso, int bit) {
        long csum = bits(CSUM);
        assertThat(HeaderCheck.offloadsCarried(csum | bits(bit), F_NEEDS_CSUM, gso)).isEqualTo(HeaderCheck.Verdict.OK);
        assertThat(HeaderCheck.offloadsCarried(HOST_OFFLOADS & ~bits(bit), F_NEEDS_CSUM, gso))
                .isEqualTo(HeaderCheck.Verdict.GSO_NOT_NEGOTIATED);
        assertThat(HeaderCheck.offloadsCarried(HOST_OFFLOADS & ~bits(HOST_ECN), F_NEEDS_CSUM, gso | GSO_ECN))
                .isEqualTo(HeaderCheck.Verdict.ECN_NOT_NEGOTIATED);
        assertThat(HeaderCheck.offloadsCarried(HOST_OFFLOADS, F_NEEDS_CSUM, gso | GSO_ECN))
                .isEqualTo(HeaderCheck.Verdict.OK);
    }

    @ParameterizedTest(name = "TX gso_type {0}")
    @CsvSource({"2", "6", "127", "128"})
    void unknownTransmittedGsoTypes(int gso) {
        assertThat(HeaderCheck.offloadsCarried(HOST_OFFLOADS, 0, gso)).isEqualTo(HeaderCheck.Verdict.GSO_UNKNOWN);
    }

    @ParameterizedTest(name = "TX features {0}")
    @CsvSource({"0", "2048"})
    void needsCsumNeedsCsum(long features) {
        assertThat(HeaderCheck.offloadsCarried(features, F_NEEDS_CSUM, GSO_NONE))
                .isEqualTo(HeaderCheck.Verdict.CSUM_NOT_NEGOTIATED);
        assertThat(HeaderCheck.offloadsCarried(features | bits(CSUM), F_NEEDS_CSUM, GSO_NONE))
                .isEqualTo(HeaderCheck.Verdict.OK);
        assertThat(HeaderCheck.offloadsCarried(features, 0, GSO_NONE)).isEqualTo(HeaderCheck.Verdict.OK);
    }
}
