package org.virtionetd.virtio.net;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.InMemoryBackend;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.UsedElement;
import org.virtionetd.virtio.testdriver.VirtioNetCtrl;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.virtio.net.CounterDelta.assertChanged;
import static org.virtionetd.virtio.net.VirtioNetFeature.*;

/** The device against the spec-driven driver: negotiation, TX, the three RX modes, control queue, filters. */
class VirtioNetDeviceTest {
    static final byte[] DEVICE_MAC = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    static final long ALL_OFFLOADS = VirtioNetFeature.OFFLOADS;

    static byte[] frame(byte[] dst, int length, long seed) {
        byte[] f = new byte[length];
        new Random(seed).nextBytes(f);
        System.arraycopy(dst, 0, f, 0, 6);
        f[12] = 0x08;
        f[13] = 0x00;
        return f;
    }

    static byte[] mac(int last) {
        return new byte[] {0x52, 0x54, 0x00, 0x00, 0x00, (byte) last};
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void modernNegotiationOffersBackendOffloadsAndUsesTwelveByteHeaders(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            long offered = f.device.offeredFeatures();
            assertThat(offered & FeatureRules.BASE & ~bits(MQ)).isEqualTo(FeatureRules.BASE & ~bits(MQ));
            assertThat(offered & OFFLOADS).isEqualTo(OFFLOADS);
            assertThat(f.device.status() & DeviceStatus.FEATURES_OK).isNotZero();
            assertThat(f.device.ackedFeatures()).isEqualTo(f.driver.negotiatedFeatures());
            assertThat(f.device.headerLength()).isEqualTo(12);
            assertThat(f.backend().configureCalls()).last()
                    .satisfies(c -> assertThat(c.vnetHeaderLength()).isEqualTo(12))
                    .satisfies(c -> assertThat(c.features()).isEqualTo(f.driver.negotiatedFeatures()));
        }
    }

    @Test
    void backendWithoutOffloadsGetsNoneOffered() throws Exception {
        try (NetFixture f = NetFixture.started(0, new VirtioNetDriver.Options())) {
            assertThat(f.device.offeredFeatures() & OFFLOADS).isZero();
        }
    }

    @Test
    void guestTso4WithoutGuestCsumIsRefusedAtFeaturesOk() throws Exception {
        VirtioNetDriver.Options o = new VirtioNetDriver.Options().without(GUEST_CSUM).respectDependencies(false);
        try (NetFixture f = new NetFixture(ALL_OFFLOADS, 1, o)) {
            assertThat(f.driver.negotiate()).as("FEATURES_OK kept").isFalse();
            assertThat(f.device.status() & DeviceStatus.FEATURES_OK).isZero();
        }
    }

    @Test
    void hostTsoWithoutCsumIsRefusedAtFeaturesOk() throws Exception {
        VirtioNetDriver.Options o = new VirtioNetDriver.Options().without(CSUM).respectDependencies(false);
        try (NetFixture f = new NetFixture(ALL_OFFLOADS, 1, o)) {
            assertThat(f.driver.negotiate()).isFalse();
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void transmittedFramesReachTheBackendWithTheirHeaderInEveryShape(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            VirtioNetDriver.TxShape[] shapes = {
                    VirtioNetDriver.TxShape.simple(),
                    VirtioNetDriver.TxShape.simple().headerSeparate(true),
                    VirtioNetDriver.TxShape.simple().framePieces(7),
                    VirtioNetDriver.TxShape.simple().indirect(true).framePieces(3),
                    VirtioNetDriver.TxShape.simple().acrossRegions(true),
            };
            Map<String, Long> before = f.snapshot();
            for (int i = 0; i < shapes.length; i++) {
                byte[] frame = frame(mac(9), 60 + 300 * i, i);
                NetHeaderFields h = NetHeaderFields.partialCsum(34, 16);
                Chain c = f.driver.transmit(0, h, frame, shapes[i]);
                UsedElement used = f.driver.awaitTransmitted(0, c);
                assertThat(used.len()).as("TX used len (device writes nothing)").isZero();
                InMemoryBackend.Sent sent = f.backend().awaitSent(i + 1, Duration.ofSeconds(5)).get(i);
                assertThat(sent.frame()).as("frame of shape %d", i).isEqualTo(frame);
                assertThat(sent.fields().flags()).isEqualTo(NetHeaderFields.F_NEEDS_CSUM);
                assertThat(sent.fields().csumStart()).isEqualTo(34);
                assertThat(sent.fields().csumOffset()).isEqualTo(16);
            }
            assertChanged(before, f.snapshot(), "tx_packets", shapes.length, "tx_bad_header", 0, "invalid_chains", 0);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void gsoFrameKeepsItsMetadataToTheBackend(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            byte[] frame = frame(mac(9), 30_000, 3);
            f.driver.awaitTransmitted(0, f.driver.transmit(0,
                    NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 1448, 66, 34, 16), frame));
            NetHeaderFields got = f.backend().awaitSent(1, Duration.ofSeconds(5)).get(0).fields();
            assertThat(got.gsoType()).isEqualTo(NetHeaderFields.GSO_TCPV4);
            assertThat(got.gsoSize()).isEqualTo(1448);
            assertThat(got.hdrLen()).isEqualTo(66);
            assertThat(got.flags()).isEqualTo(NetHeaderFields.F_NEEDS_CSUM);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void headersBreakingTheNegotiatedRulesAreDroppedAndCounted(RingFormat format) throws Exception {
        // CSUM and HOST_TSO4 not negotiated: NEEDS_CSUM and GSO_TCPV4 are both invalid (5.1.6.2.1).
        VirtioNetDriver.Options o = format.options().without(CSUM, HOST_TSO4, HOST_TSO6, HOST_ECN,
                HOST_UFO, HOST_USO);
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, o)) {
            Map<String, Long> before = f.snapshot();
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.partialCsum(34, 16), frame(mac(9), 100, 1)));
            f.driver.awaitTransmitted(0, f.driver.transmit(0,
                    new NetHeaderFields(0, NetHeaderFields.GSO_TCPV4, 54, 1448, 0, 0, 0), frame(mac(9), 3000, 2)));
            byte[] good = frame(mac(9), 100, 3);
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), good));
            assertThat(f.backend().awaitSent(1, Duration.ofSeconds(5))).hasSize(1);
            assertThat(f.backend().sent().get(0).frame()).isEqualTo(good);
            assertChanged(before, f.snapshot(), "tx_bad_header", 2, "tx_packets", 1);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void gsoWithSizeZeroIsDropped(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            Map<String, Long> before = f.snapshot();
            f.driver.awaitTransmitted(0, f.driver.transmit(0,
                    NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 0, 66, 34, 16), frame(mac(9), 3000, 2)));
            assertChanged(before, f.snapshot(), "tx_bad_header", 1, "tx_packets", 0);
            assertThat(f.backend().sentCount()).isZero();
        }
    }

    @Test
    void legacyDriverWithLegacyLayoutUsesTenByteHeaders() throws Exception {
        VirtioNetDriver.Options o = new VirtioNetDriver.Options().legacy(true).without(MRG_RXBUF);
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, o)) {
            assertThat(f.device.headerLength()).isEqualTo(10);
            assertThat(VirtioFeature.has(f.device.ackedFeatures(), VirtioFeature.VERSION_1)).isFalse();
            byte[] frame = frame(mac(9), 200, 5);
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), frame,
                    VirtioNetDriver.TxShape.simple().headerSeparate(true)));
            assertThat(f.backend().awaitSent(1, Duration.ofSeconds(5)).get(0).frame()).isEqualTo(frame);
            assertThat(f.backend().configureCalls()).last().satisfies(c -> assertThat(c.vnetHeaderLength()).isEqualTo(10));
            byte[] in = frame(DEVICE_MAC, 500, 6);
            f.backend().deliver(in);
            List<ReceivedPacket> got = f.driver.awaitPackets(0, 1);
            assertThat(got.get(0).frame()).isEqualTo(in);
            assertThat(got.get(0).headerBytes()).hasSize(10);
        }
    }

    @Test
    void legacyDriverWithMergeableBuffersUsesTwelveByteHeaders() throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, new VirtioNetDriver.Options().legacy(true))) {
            assertThat(f.device.headerLength()).isEqualTo(12);
            byte[] in = frame(DEVICE_MAC, 4000, 7);
            f.backend().deliver(in);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void mergeableBuffersCarryALargeFrameWithNumBuffers(RingFormat format) throws Exception {
        VirtioNetDriver.Options o = format.options().mergeableBufferSize(1536);
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, o)) {
            assertThat(f.driver.rxMode()).isEqualTo(VirtioNetDriver.RxMode.MERGEABLE);
            byte[] big = frame(DEVICE_MAC, 60_000, 8);
            f.backend().deliver(NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 1448, 66, 34, 16).encode(12), big);
            ReceivedPacket p = f.driver.awaitPackets(0, 1).get(0);
            assertThat(p.frame()).isEqualTo(big);
            assertThat(p.header().numBuffers()).isEqualTo((60_000 + 12 + 1535) / 1536);
            assertThat(p.header().gsoType()).isEqualTo(NetHeaderFields.GSO_TCPV4);
            assertThat(p.header().gsoSize()).isEqualTo(1448);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void bigPacketChainsWithoutMergeableBuffers(RingFormat format) throws Exception {
        VirtioNetDriver.Options o = format.options().without(MRG_RXBUF);
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, o)) {
            assertThat(f.driver.rxMode()).isEqualTo(VirtioNetDriver.RxMode.BIG);
            byte[] big = frame(DEVICE_MAC, 65_000, 9);
            f.backend().deliver(big);
            ReceivedPacket p = f.driver.awaitPackets(0, 1).get(0);
            assertThat(p.frame()).isEqualTo(big);
            assertThat(p.header().numBuffers()).as("num_buffers without MRG_RXBUF").isEqualTo(1);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void smallBuffersDropTooBigFramesButKeepServing(RingFormat format) throws Exception {
        VirtioNetDriver.Options o = format.apply(new VirtioNetDriver.Options().without(MRG_RXBUF)
                .features(VirtioNetDriver.LINUX_FEATURES & ~GUEST_OFFLOADS & ~bits(MRG_RXBUF)));
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, o)) {
            assertThat(f.driver.rxMode()).isEqualTo(VirtioNetDriver.RxMode.SMALL);
            Map<String, Long> before = f.snapshot();
            f.backend().deliver(frame(DEVICE_MAC, 4000, 10));
            byte[] ok = frame(DEVICE_MAC, 1514, 11);
            f.backend().deliver(ok);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(ok);
            assertChanged(before, f.snapshot(), "rx_dropped_too_big", 1, "rx_packets", 1);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void aFrameWaitsForBuffersInsteadOfBeingLost(RingFormat format) throws Exception {
        VirtioNetDriver.Options o = format.options().fillRxOnStart(false);
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, o)) {
            byte[] a = frame(DEVICE_MAC, 3000, 12);
            byte[] b = frame(DEVICE_MAC, 100, 13);
            f.backend().deliver(a);
            f.backend().deliver(b);
            org.virtionetd.virtio.testdriver.Await.until(Duration.ofSeconds(5),
                    () -> f.counters().rxWaitedForBuffers.sum() > 0, "the device to wait for RX buffers",
                    () -> f.snapshot().toString());
            assertThat(f.driver.receive(0)).isEmpty();
            f.driver.fillRx(0, 1); // one 1536-byte buffer: not enough for 3000 bytes yet
            f.driver.fillRx(0);
            List<ReceivedPacket> got = f.driver.awaitPackets(0, 2);
            assertThat(got.get(0).frame()).isEqualTo(a);
            assertThat(got.get(1).frame()).isEqualTo(b);
            assertThat(f.counters().rxDroppedTooBig.sum()).isZero();
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void offloadsTheGuestDidNotAcceptNeverReachIt(RingFormat format) throws Exception {
        VirtioNetDriver.Options o = format.options().without(GUEST_CSUM, GUEST_TSO4, GUEST_TSO6,
                GUEST_ECN, GUEST_UFO, GUEST_USO4, GUEST_USO6);
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, o)) {
            Map<String, Long> before = f.snapshot();
            f.backend().deliver(NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 1448, 66, 34, 16).encode(12),
                    frame(DEVICE_MAC, 5000, 14));
            byte[] plain = frame(DEVICE_MAC, 500, 15);
            f.backend().deliver(plain);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(plain);
            assertChanged(before, f.snapshot(), "rx_bad_offload", 1, "rx_packets", 1);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void rxFilterFollowsTheControlQueue(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            // At reset the device is promiscuous: a frame for another MAC arrives.
            byte[] other = frame(mac(0x77), 100, 20);
            f.backend().deliver(other);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(other);

            assertThat(f.driver.rxMode(VirtioNetCtrl.RX_PROMISC, false)).isEqualTo(VirtioNetCtrl.OK);
            Map<String, Long> before = f.snapshot();
            f.backend().deliver(frame(mac(0x77), 100, 21));
            byte[] mine = frame(DEVICE_MAC, 100, 22);
            f.backend().deliver(mine);
            byte[] bcast = frame(new byte[] {-1, -1, -1, -1, -1, -1}, 100, 23);
            f.backend().deliver(bcast);
            List<ReceivedPacket> got = f.driver.awaitPackets(0, 2);
            assertThat(got.get(0).frame()).isEqualTo(mine);
            assertThat(got.get(1).frame()).isEqualTo(bcast);
            assertChanged(before, f.snapshot(), "rx_filtered", 1, "rx_packets", 2);

            // A unicast table entry lets the other MAC in; NOBCAST keeps broadcasts out.
            assertThat(f.driver.macTableSet(List.of(mac(0x77)), List.of())).isEqualTo(VirtioNetCtrl.OK);
            assertThat(f.driver.rxMode(VirtioNetCtrl.RX_NOBCAST, true)).isEqualTo(VirtioNetCtrl.OK);
            before = f.snapshot();
            f.backend().deliver(bcast);
            byte[] listed = frame(mac(0x77), 100, 24);
            f.backend().deliver(listed);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(listed);
            assertChanged(before, f.snapshot(), "rx_filtered", 1);

            // Multicast: refused unless in the table or ALLMULTI.
            byte[] mcast = frame(new byte[] {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, 100, 25);
            before = f.snapshot();
            f.backend().deliver(mcast);
            awaitFiltered(f, before, 1);
            assertThat(f.driver.rxMode(VirtioNetCtrl.RX_ALLMULTI, true)).isEqualTo(VirtioNetCtrl.OK);
            f.backend().deliver(mcast);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(mcast);
            assertChanged(before, f.snapshot(), "rx_filtered", 1, "rx_packets", 1);

            // A new MAC address (MAC_ADDR_SET) is what "mine" means from now on.
            assertThat(f.driver.macAddrSet(mac(0x42))).isEqualTo(VirtioNetCtrl.OK);
            byte[] renamed = frame(mac(0x42), 100, 26);
            f.backend().deliver(renamed);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(renamed);
            assertThat(f.driver.macAddrSet(new byte[] {1, 0, 0, 0, 0, 1})).as("multicast MAC").isEqualTo(VirtioNetCtrl.ERR);
        }
    }

    /** Waits until the device filtered {@code n} more frames than in {@code before}. */
    static void awaitFiltered(NetFixture f, Map<String, Long> before, long n) {
        org.virtionetd.virtio.testdriver.Await.until(Duration.ofSeconds(5),
                () -> f.counters().rxFiltered.sum() >= before.get("rx_filtered") + n,
                n + " frames filtered", () -> f.snapshot().toString());
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void vlanTableFiltersTaggedFrames(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            assertThat(f.driver.rxMode(VirtioNetCtrl.RX_PROMISC, false)).isEqualTo(VirtioNetCtrl.OK);
            byte[] tagged = frame(DEVICE_MAC, 100, 30);
            tagged[12] = (byte) 0x81;
            tagged[13] = 0x00;
            tagged[14] = 0x00;
            tagged[15] = 0x07; // VLAN 7
            Map<String, Long> before = f.snapshot();
            f.backend().deliver(tagged);
            awaitFiltered(f, before, 1); // the control command must not overtake the frame
            assertThat(f.driver.vlanAdd(7)).isEqualTo(VirtioNetCtrl.OK);
            f.backend().deliver(tagged);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(tagged);
            assertThat(f.driver.vlanDel(7)).isEqualTo(VirtioNetCtrl.OK);
            f.backend().deliver(tagged);
            byte[] untagged = frame(DEVICE_MAC, 100, 31);
            f.backend().deliver(untagged);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(untagged);
            assertChanged(before, f.snapshot(), "rx_filtered", 2, "rx_packets", 2);
            assertThat(f.driver.vlanAdd(4096)).as("VLAN id out of range").isEqualTo(VirtioNetCtrl.ERR);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void controlCommandsAnswerOkOrErrAsTheSpecSays(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            for (int mode = 0; mode <= 5; mode++) {
                assertThat(f.driver.rxMode(mode, true)).as("RX mode %d", mode).isEqualTo(VirtioNetCtrl.OK);
                assertThat(f.driver.rxMode(mode, false)).isEqualTo(VirtioNetCtrl.OK);
            }
            assertThat(f.driver.command(VirtioNetCtrl.CLASS_RX, 6, new byte[] {1})).isEqualTo(VirtioNetCtrl.ERR);
            assertThat(f.driver.announceAck()).isEqualTo(VirtioNetCtrl.OK);
            assertThat(f.driver.mqVqPairsSet(1)).as("MQ not offered with one pair").isEqualTo(VirtioNetCtrl.ERR);
            assertThat(f.driver.command(9, 0)).as("unknown class").isEqualTo(VirtioNetCtrl.ERR);
            assertThat(f.driver.command(VirtioNetCtrl.CLASS_MAC, VirtioNetCtrl.MAC_TABLE_SET,
                    new byte[] {5, 0, 0, 0, 1, 2})).as("MAC table that lies about its length").isEqualTo(VirtioNetCtrl.ERR);
            assertThat(f.counters().controlErr.sum()).isGreaterThanOrEqualTo(4);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void guestOffloadsSetReprogramsTheBackendAndRefusesUnackedBits(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            assertThat(f.driver.guestOffloadsSet(bits(GUEST_CSUM))).isEqualTo(VirtioNetCtrl.OK);
            assertThat(f.backend().guestOffloadCalls()).last().isEqualTo(bits(GUEST_CSUM));
            assertThat(f.device.guestOffloads()).isEqualTo(bits(GUEST_CSUM));
            // TSO4 is no longer accepted: a GSO frame from the backend is kept from the guest.
            f.backend().deliver(NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 1448, 66, 34, 16).encode(12),
                    frame(DEVICE_MAC, 5000, 40));
            byte[] plain = frame(DEVICE_MAC, 64, 41);
            f.backend().deliver(plain);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(plain);
            assertThat(f.driver.guestOffloadsSet(bits(GUEST_TSO4))).as("TSO4 without CSUM").isEqualTo(VirtioNetCtrl.ERR);
            assertThat(f.driver.guestOffloadsSet(1L << 40)).as("a bit never negotiated").isEqualTo(VirtioNetCtrl.ERR);
        }
    }

    @Test
    void configSpaceShowsMacLinkMtuAndSpeed() throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, new VirtioNetDriver.Options())) {
            assertThat(f.driver.configMac()).isEqualTo(DEVICE_MAC);
            assertThat(f.driver.configStatus() & 1).as("VIRTIO_NET_S_LINK_UP").isEqualTo(1);
            assertThat(f.driver.configMtu()).isEqualTo(1500);
            byte[] speed = f.device.readConfig(12, 5);
            assertThat((speed[0] & 0xff) | (speed[1] & 0xff) << 8).isEqualTo(10_000);
            assertThat(speed[4]).as("duplex full").isEqualTo((byte) 1);
            f.device.setLinkUp(false);
            assertThat(f.driver.configStatus() & 1).isZero();
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> f.device.readConfig(20, 8))
                    .hasMessageContaining("outside");
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void eventIdxAndNoInterruptSuppressNotifications(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options()
                .without(org.virtionetd.virtio.device.VirtioFeature.RING_EVENT_IDX))) {
            var tx = f.driver.transmitQueue(0);
            tx.suppressUsedNotifications(true);
            long calls = f.driver.notifier(1).count();
            Map<String, Long> before = f.snapshot();
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), frame(mac(9), 100, 50)));
            assertThat(f.driver.notifier(1).count()).as("notifications with NO_INTERRUPT").isEqualTo(calls);
            assertThat(CounterDelta.delta(before, f.snapshot()).get("notifications_suppressed")).isPositive();
            tx.suppressUsedNotifications(false);
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), frame(mac(9), 100, 51)));
            f.driver.notifier(1).await(calls + 1, Duration.ofSeconds(5));
        }
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            var tx = f.driver.transmitQueue(0);
            long calls = f.driver.notifier(1).count();
            // used_event (packed: RING_EVENT_FLAGS_DESC) far ahead: the device must not notify for this chain
            // (2.7.10, 2.8.10). The chain is placed directly on the ring, because the driver's transmit() moves
            // the event as Linux does.
            tx.notifyOnlyAfter(100);
            byte[] hdrAndFrame = new byte[12 + 100];
            System.arraycopy(frame(mac(9), 100, 52), 0, hdrAndFrame, 12, 100);
            tx.addChain(org.virtionetd.virtio.testdriver.Buffer.readable(hdrAndFrame));
            org.virtionetd.virtio.testdriver.Await.until(Duration.ofSeconds(5), tx::hasUsed,
                    "the device to use the TX chain", tx::describe);
            assertThat(f.driver.notifier(1).count()).as("notifications before used_event is reached").isEqualTo(calls);
            // used_event at the current index: the next used entry crosses it and must be notified.
            f.driver.reapTransmitted(0);
            f.driver.transmit(0, NetHeaderFields.none(), frame(mac(9), 100, 53));
            f.driver.notifier(1).await(calls + 1, Duration.ofSeconds(5));
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void queuesWithoutKickFdsArePolled(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options().kickEventFds(false))) {
            byte[] out = frame(mac(9), 100, 60);
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), out));
            assertThat(f.backend().awaitSent(1, Duration.ofSeconds(5)).get(0).frame()).isEqualTo(out);
            byte[] in = frame(DEVICE_MAC, 100, 61);
            f.backend().deliver(in);
            assertThat(f.driver.awaitPackets(0, 1).get(0).frame()).isEqualTo(in);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void resetStopsTheQueuesAndANewDriverStartsOver(RingFormat format) throws Exception {
        try (NetFixture f = NetFixture.started(ALL_OFFLOADS, format.options())) {
            f.driver.awaitTransmitted(0, f.driver.transmit(0, NetHeaderFields.none(), frame(mac(9), 100, 70)));
            f.device.setStatus(0);
            assertThat(f.device.status()).isZero();
            assertThat(f.device.ackedFeatures()).isZero();
            VirtioNetDriver second = new VirtioNetDriver(f.device, f.driver.allocator(), format.options()
                    .seed(2).timeout(Duration.ofSeconds(10)));
            second.start();
            byte[] out = frame(mac(9), 100, 71);
            second.awaitTransmitted(0, second.transmit(0, NetHeaderFields.none(), out));
            assertThat(f.backend().awaitSent(2, Duration.ofSeconds(5)).get(1).frame()).isEqualTo(out);
        }
    }
}
