package org.virtionetd.virtio.testdriver;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemfdGuestMemory;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.queue.Notifier;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.virtionetd.virtio.net.VirtioNetFeature.*;

/**
 * The net driver against a scripted stand-in that records what the driver asks of a {@link VirtioDevice} and
 * lets the test play the device's side of the rings by hand with {@link TinyWalker}.
 */
class VirtioNetDriverTest {
    private static final long BASE = 0x100_0000;
    private static final long SIZE = 16 << 20;

    /** Records the transport calls; processes nothing. */
    static final class ScriptedDevice implements VirtioDevice {
        final List<Integer> statuses = new ArrayList<>();
        final Map<Integer, long[]> queues = new TreeMap<>();
        final Map<Integer, EventFd> kicks = new TreeMap<>();
        final Map<Integer, Notifier> notifiers = new TreeMap<>();
        final long offered;
        final byte[] config = new byte[16];
        long refuseIfAcked;
        long acked;
        int status;
        GuestMemory memory;

        ScriptedDevice(long offered, int maxPairs) {
            this.offered = offered;
            System.arraycopy(new byte[] {0x52, 0x54, 0, 1, 2, 3}, 0, config, 0, 6);
            config[6] = 1;
            config[8] = (byte) maxPairs;
            config[10] = (byte) 1500;
            config[11] = (byte) (1500 >> 8);
        }

        @Override
        public int deviceType() {
            return 1;
        }

        @Override
        public int queueCount() {
            return 2 * config[8] + 1;
        }

        @Override
        public int maxQueueSize() {
            return 1024;
        }

        @Override
        public long offeredFeatures() {
            return offered;
        }

        @Override
        public long ackedFeatures() {
            return acked;
        }

        @Override
        public void setDriverFeatures(long features) throws VirtioException {
            if ((features & ~offered) != 0) {
                throw new VirtioException(VirtioException.Kind.FEATURES, "not offered: " + names(features & ~offered));
            }
            acked = features;
        }

        @Override
        public void setMemory(GuestMemory memory) {
            this.memory = memory;
        }

        @Override
        public void setQueue(int index, int size, long desc, long avail, long used) {
            queues.put(index, new long[] {size, desc, avail, used});
        }

        final List<String> calls = new ArrayList<>();

        @Override
        public void setQueueBase(int index, int base) {
            calls.add("setQueueBase(" + index + ", " + base + ")");
        }

        @Override
        public void startQueue(int index, EventFd kick, Notifier notifier) {
            kicks.put(index, kick);
            notifiers.put(index, notifier);
        }

        @Override
        public void setNotifier(int index, Notifier notifier) {
        }

        @Override
        public void setQueueEnabled(int index, boolean enabled) {
        }

        @Override
        public int stopQueue(int index) {
            calls.add("stopQueue(" + index + ")");
            return 7;
        }

        @Override
        public boolean queueStarted(int index) {
            return false;
        }

        @Override
        public int queueBase(int index) {
            return 7;
        }

        @Override
        public byte[] readConfig(int offset, int length) {
            return Arrays.copyOfRange(config, offset, offset + length);
        }

        @Override
        public void writeConfig(int offset, byte[] data) {
        }

        @Override
        public int status() {
            return status;
        }

        @Override
        public void setStatus(int s) {
            statuses.add(s);
            if ((s & DeviceStatus.FEATURES_OK) != 0 && (acked & refuseIfAcked) != 0) {
                s &= ~DeviceStatus.FEATURES_OK;
            }
            status = s;
        }

        @Override
        public void sendRarp(byte[] mac) {
        }

        @Override
        public void setMtu(int mtu) {
        }

        @Override
        public void reset() {
            status = 0;
        }

        @Override
        public void close() {
        }

        RingLayout layout(int index) {
            long[] q = queues.get(index);
            return new RingLayout((int) q[0], q[1], q[2], q[3]);
        }
    }

    private GuestMemory mem;

    @BeforeEach
    void setUp() throws Exception {
        mem = MemfdGuestMemory.create(new long[] {BASE, BASE + SIZE}, new long[] {SIZE, SIZE});
    }

    @AfterEach
    void tearDown() {
        mem.close();
    }

    private static final long OFFER = VirtioNetDriver.LINUX_FEATURES & ~bits(GUEST_USO4, GUEST_USO6, HOST_USO);

    @Test
    void modernStartupFollowsTheStatusSequenceAndNumbersQueues() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 2);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(64))) {
            d.start();
            int ad = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER;
            assertThat(dev.statuses).containsExactly(0, DeviceStatus.ACKNOWLEDGE, ad, ad | DeviceStatus.FEATURES_OK,
                    ad | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK);
            assertThat(dev.acked).isEqualTo(OFFER);
            assertThat(d.headerLength()).isEqualTo(12);
            assertThat(d.rxMode()).isEqualTo(VirtioNetDriver.RxMode.MERGEABLE);
            assertThat(d.maxQueuePairs()).isEqualTo(2);
            assertThat(d.controlQueueIndex()).isEqualTo(4);
            assertThat(d.queueName(4)).isEqualTo("controlq");
            assertThat(d.queueName(3)).isEqualTo("transmitq2");
            assertThat(dev.queues.keySet()).containsExactly(0, 1, 2, 3, 4);
            assertThat(dev.kicks.values()).doesNotContainNull();
            assertThat(dev.memory).isSameAs(mem);
            for (int i = 0; i < 5; i++) {
                RingLayout l = dev.layout(i);
                assertThat(l.descTable() % 16).isZero();
                assertThat(l.usedRing() % 4).isZero();
                assertThat(d.queue(i).eventIdx()).isTrue();
            }
            // Receive queues were filled: 64 mergeable buffers of one descriptor each, and kicked.
            TinyWalker rx = new TinyWalker(mem, dev.layout(0));
            assertThat(rx.availIdx()).isEqualTo(64);
            assertThat(dev.kicks.get(0).drain()).isEqualTo(1);
            assertThat(new TinyWalker(mem, dev.layout(2)).availIdx()).isEqualTo(64);
            assertThat(d.configMac()).containsExactly(0x52, 0x54, 0, 1, 2, 3);
            assertThat(d.configMtu()).isEqualTo(1500);
        }
        assertThat(dev.statuses).endsWith(0);
    }

    @Test
    void legacyDriverSkipsFeaturesOkUsesTheLegacyLayoutAndTenByteHeaders() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER | VirtioFeature.bit(VirtioFeature.ANY_LAYOUT), 1);
        VirtioNetDriver.Options o = new VirtioNetDriver.Options().legacy(true).without(MRG_RXBUF, GUEST_TSO4,
                GUEST_TSO6, GUEST_UFO).queueSize(128);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, o)) {
            d.start();
            int ad = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER;
            assertThat(dev.statuses).containsExactly(0, DeviceStatus.ACKNOWLEDGE, ad, ad | DeviceStatus.DRIVER_OK);
            assertThat(VirtioFeature.has(dev.acked, VirtioFeature.VERSION_1)).isFalse();
            assertThat(VirtioFeature.has(dev.acked, VirtioFeature.ANY_LAYOUT)).isTrue();
            assertThat(has(dev.acked, GUEST_ECN)).as("GUEST_ECN dropped: no GUEST_TSO4/6 (5.1.3.1)").isFalse();
            assertThat(d.headerLength()).isEqualTo(10);
            assertThat(d.rxMode()).isEqualTo(VirtioNetDriver.RxMode.SMALL);
            assertThat(dev.queues.keySet()).containsExactly(0, 1, 2);
            RingLayout l = dev.layout(1);
            assertThat(l.descTable() % 4096).isZero();
            assertThat(l.availRing()).isEqualTo(l.descTable() + 16 * 128);
            assertThat(l.usedRing()).isEqualTo(l.descTable() + 4096);

            // Small buffers: one descriptor of 10 + 1514 bytes.
            TinyWalker rx = new TinyWalker(mem, dev.layout(0));
            List<TinyWalker.Element> buf = rx.walk(rx.popHead());
            assertThat(buf).singleElement().extracting(TinyWalker.Element::len).isEqualTo(1524L);

            // Transmit: 10-byte header in its own descriptor, then the frame in 3 pieces.
            byte[] frame = frame(300);
            Chain c = d.transmit(0, NetHeaderFields.partialCsum(34, 16), frame,
                    VirtioNetDriver.TxShape.simple().framePieces(3));
            TinyWalker tx = new TinyWalker(mem, dev.layout(1));
            int head = tx.popHead();
            assertThat(head).isEqualTo(c.head());
            List<TinyWalker.Element> chain = tx.walk(head);
            assertThat(chain).hasSize(4);
            assertThat(chain.get(0).len()).isEqualTo(10);
            byte[] all = tx.readable(chain);
            assertThat(NetHeaderFields.decode(Arrays.copyOf(all, 10))).isEqualTo(
                    NetHeaderFields.partialCsum(34, 16));
            assertThat(Arrays.copyOfRange(all, 10, all.length)).isEqualTo(frame);
            tx.use(head, 0);
            assertThat(d.awaitTransmitted(0, c).len()).isZero();
        }
    }

    @Test
    void legacyWithoutAnyLayoutPutsTheReceiveHeaderInItsOwnDescriptor() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER & ~bits(MRG_RXBUF), 1);
        VirtioNetDriver.Options o = new VirtioNetDriver.Options().legacy(true).without(GUEST_CSUM).queueSize(8);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, o)) {
            d.start();
            assertThat(VirtioFeature.has(dev.acked, VirtioFeature.ANY_LAYOUT)).as("not offered").isFalse();
            assertThat(d.rxMode()).isEqualTo(VirtioNetDriver.RxMode.SMALL);
            TinyWalker rx = new TinyWalker(mem, dev.layout(0));
            assertThat(rx.availIdx()).as("8 slots, 2 per buffer").isEqualTo(4);
            assertThat(rx.walk(rx.popHead())).extracting(TinyWalker.Element::len).containsExactly(10L, 1514L);
        }
    }

    @Test
    void refusedFeaturesOkFailsStartAndSetsFailed() {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 1);
        dev.refuseIfAcked = bits(HOST_UFO);
        VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options());
        assertThatThrownBy(d::start).isInstanceOf(VirtioException.class)
                .hasMessageContaining("device refused FEATURES_OK").hasMessageContaining("VIRTIO_NET_F_HOST_UFO");
        assertThat(dev.status & DeviceStatus.FAILED).isNotZero();
        assertThat(d.featuresAccepted()).isFalse();
    }

    @Test
    void dependenciesOfFiveOneThreeOneAreRespected() {
        long f = VirtioNetDriver.withDependencies(bits(GUEST_TSO4, GUEST_ECN, HOST_TSO6, CSUM, CTRL_RX,
                CTRL_RX_EXTRA, MQ));
        assertThat(names(f)).containsExactlyInAnyOrder("VIRTIO_NET_F_CSUM", "VIRTIO_NET_F_HOST_TSO6");
        long g = VirtioNetDriver.withDependencies(bits(GUEST_CSUM, GUEST_TSO4, GUEST_ECN, CTRL_VQ, CTRL_RX_EXTRA));
        assertThat(g).isEqualTo(bits(GUEST_CSUM, GUEST_TSO4, GUEST_ECN, CTRL_VQ));
    }

    @Test
    void transmitShapesCarryTheSameBytes() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 1);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(32)
                .fillRxOnStart(false))) {
            d.start();
            TinyWalker tx = new TinyWalker(mem, dev.layout(1));
            NetHeaderFields h = NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 1448, 54, 34, 16);
            byte[] frame = frame(9000);
            List<VirtioNetDriver.TxShape> shapes = List.of(VirtioNetDriver.TxShape.simple(),
                    VirtioNetDriver.TxShape.simple().headerSeparate(false),
                    VirtioNetDriver.TxShape.simple().framePieces(7),
                    VirtioNetDriver.TxShape.simple().indirect(true).framePieces(4),
                    VirtioNetDriver.TxShape.simple().headerSeparate(false).acrossRegions(true));
            for (VirtioNetDriver.TxShape shape : shapes) {
                Chain c = d.transmit(0, h, frame, shape);
                int head = tx.popHead();
                assertThat(head).isEqualTo(c.head());
                byte[] all = tx.readable(tx.walk(head));
                assertThat(NetHeaderFields.decode(Arrays.copyOf(all, 12))).isEqualTo(h);
                assertThat(Arrays.copyOfRange(all, 12, all.length)).isEqualTo(frame);
                tx.use(head, 0);
            }
            d.reapTransmitted(0);
            assertThat(d.transmitQueue(0).outstanding()).isEmpty();
            assertThat(d.transmitQueue(0).freeSlotCount()).isEqualTo(32);
            assertThat(d.transmitQueue(0).notificationsSent()).as("avail_event 0: only the first kick")
                    .isEqualTo(1);
        }
    }

    @Test
    void mergeableBuffersAreReassembledFromNumBuffers() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 1);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(16)
                .mergeableBufferSize(512))) {
            d.start();
            TinyWalker rx = new TinyWalker(mem, dev.layout(0));
            byte[] frame = frame(1200);
            byte[] packet = concat(NetHeaderFields.none().withNumBuffers(3).encode(12), frame);
            int written = 0;
            for (int i = 0; i < 3; i++) {
                int head = rx.popHead();
                List<TinyWalker.Element> buf = rx.walk(head);
                int n = rx.fill(buf, Arrays.copyOfRange(packet, written, Math.min(packet.length, written + 512)));
                written += n;
                rx.use(head, n);
                if (i == 0) {
                    assertThat(d.receive(0)).as("1 of 3 buffers: not complete").isEmpty();
                }
            }
            List<ReceivedPacket> got = d.awaitPackets(0, 1);
            assertThat(got).hasSize(1);
            assertThat(got.get(0).frame()).isEqualTo(frame);
            assertThat(got.get(0).header().numBuffers()).isEqualTo(3);
            assertThat(got.get(0).buffers()).hasSize(3);
            assertThat(rx.availIdx()).as("3 buffers re-posted").isEqualTo(16 + 3);
            assertThat(d.splitQueue(VirtioNetDriver.receiveQueueIndex(0)).usedEvent()).as("used_event follows the reader").isEqualTo(3);
        }
    }

    @Test
    void aShortMergedBufferBeforeTheLastIsADeviceBug() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 1);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(8)
                .mergeableBufferSize(256))) {
            d.start();
            TinyWalker rx = new TinyWalker(mem, dev.layout(0));
            int h1 = rx.popHead();
            rx.fill(rx.walk(h1), NetHeaderFields.none().withNumBuffers(2).encode(12));
            rx.use(h1, 100);
            int h2 = rx.popHead();
            rx.use(h2, 10);
            assertThatThrownBy(() -> d.receive(0)).isInstanceOf(AssertionError.class)
                    .hasMessageContaining("used 100 of 256 bytes");
        }
    }

    @Test
    void bigPacketChainsAreSplitOverPages() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 1);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(64)
                .without(MRG_RXBUF))) {
            d.start();
            assertThat(d.rxMode()).isEqualTo(VirtioNetDriver.RxMode.BIG);
            TinyWalker rx = new TinyWalker(mem, dev.layout(0));
            assertThat(rx.availIdx()).as("64 slots / 18 descriptors per chain").isEqualTo(3);
            int head = rx.popHead();
            List<TinyWalker.Element> chain = rx.walk(head);
            assertThat(chain).hasSize(18);
            assertThat(chain.get(0).len()).isEqualTo(12);
            assertThat(chain.stream().mapToLong(TinyWalker.Element::len).sum()).isEqualTo(65562);
            byte[] frame = frame(60000);
            NetHeaderFields h = NetHeaderFields.gso(NetHeaderFields.GSO_TCPV4, 1448, 66, 34, 16).withNumBuffers(1);
            byte[] packet = concat(h.encode(12), frame);
            rx.use(head, rx.fill(chain, packet));
            List<ReceivedPacket> got = d.awaitPackets(0, 1);
            assertThat(got.get(0).header()).isEqualTo(h);
            assertThat(got.get(0).frame()).isEqualTo(frame);
        }
    }

    @Test
    void controlCommandsHaveTheSpecLayoutAndReturnTheAck() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 2);
        List<CompletableFuture<Integer>> pending = new ArrayList<>();
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(16)
                .timeout(Duration.ofSeconds(5)))) {
            d.start();
            TinyWalker ctrl = new TinyWalker(mem, dev.layout(4));
            byte[] m1 = {0x02, 0, 0, 0, 0, 1};
            byte[] m2 = {0x01, 0, 0x5e, 0, 0, 1};
            Object[][] cases = {
                {(Runnable) null, new byte[] {0, 0, 1}, 0},                               // RX PROMISC on
                {null, new byte[] {1, 0, 1, 0, 0, 0, 0x02, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0x01, 0, 0x5e, 0, 0, 1}, 1},
                {null, new byte[] {1, 1, 0x02, 0, 0, 0, 0, 1}, 0},                         // MAC_ADDR_SET
                {null, new byte[] {2, 0, (byte) 0xe8, 0x03}, 1},                           // VLAN_ADD 1000
                {null, new byte[] {2, 1, (byte) 0xe8, 0x03}, 0},                           // VLAN_DEL 1000
                {null, new byte[] {3, 0}, 0},                                              // ANNOUNCE_ACK
                {null, new byte[] {4, 0, 2, 0}, 0},                                        // MQ_VQ_PAIRS_SET 2
                {null, new byte[] {5, 0, (byte) 0x82, 0, 0, 0, 0, 0, 0, 0}, 1},             // GUEST_OFFLOADS_SET
                {null, new byte[] {0, 5, 0}, 0},                                           // RX NOBCAST off
            };
            List<java.util.function.IntSupplier> commands = List.of(
                    () -> d.rxMode(VirtioNetCtrl.RX_PROMISC, true),
                    () -> d.macTableSet(List.of(m1), List.of(m2)),
                    () -> d.macAddrSet(m1),
                    () -> d.vlanAdd(1000),
                    () -> d.vlanDel(1000),
                    d::announceAck,
                    () -> d.mqVqPairsSet(2),
                    () -> d.guestOffloadsSet(bits(GUEST_CSUM, GUEST_TSO4)),
                    () -> d.rxMode(VirtioNetCtrl.RX_NOBCAST, false));
            for (int i = 0; i < cases.length; i++) {
                byte[] expected = (byte[]) cases[i][1];
                int ack = (int) cases[i][2];
                CompletableFuture<Integer> result = CompletableFuture.supplyAsync(commands.get(i)::getAsInt);
                pending.add(result);
                int[] head = {-1};
                Await.until(Duration.ofSeconds(10), () -> {
                    try {
                        head[0] = ctrl.popHead();
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                    return head[0] >= 0;
                }, "control command " + i, () -> "nothing in the control queue");
                List<TinyWalker.Element> chain = ctrl.walk(head[0]);
                assertThat(ctrl.readable(chain)).as("command %d bytes", i).isEqualTo(expected);
                TinyWalker.Element last = chain.get(chain.size() - 1);
                assertThat(last.writable()).isTrue();
                assertThat(last.len()).isEqualTo(1);
                assertThat(chain.subList(0, chain.size() - 1)).noneMatch(TinyWalker.Element::writable);
                ctrl.fill(chain, new byte[] {(byte) ack});
                ctrl.use(head[0], 1);
                assertThat(result.get(10, TimeUnit.SECONDS)).as("ack of command %d", i).isEqualTo(ack);
            }
            // A device that returns the command with len 0 did not ack (2.7.8: nothing past len is valid).
            CompletableFuture<Integer> result = CompletableFuture.supplyAsync(d::announceAck);
            pending.add(result);
            Await.until(Duration.ofSeconds(10), () -> {
                try {
                    return ctrl.availIdx() == cases.length + 1;
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
            }, "the last command", () -> "");
            ctrl.use(ctrl.popHead(), 0);
            assertThat(result.get(10, TimeUnit.SECONDS)).isEqualTo(VirtioNetCtrl.NO_ACK);
        } finally {
            // A command still waiting polls guest memory: let it time out before the memory is unmapped.
            for (CompletableFuture<Integer> f : pending) {
                try {
                    f.get(10, TimeUnit.SECONDS);
                } catch (Exception ignored) {
                    // its failure is not this test's verdict; the assertion above is
                }
            }
        }
    }

    @Test
    void waitingForADeviceThatNeverAnswersFailsWithTheRing() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 1);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(8)
                .timeout(Duration.ofMillis(200)))) {
            d.start();
            assertThatThrownBy(() -> d.awaitPackets(0, 1)).isInstanceOf(AssertionError.class)
                    .hasMessageContaining("timed out after 200 ms waiting for 1 packets on receiveq1")
                    .hasMessageContaining("avail idx 8").hasMessageContaining("used idx 0");
        }
    }

    @Test
    void withoutKickFdsTheQueuesStartWithNull() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 1);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(8)
                .kickEventFds(false).without(VirtioFeature.RING_EVENT_IDX))) {
            d.start();
            assertThat(dev.kicks).containsOnlyKeys(0, 1, 2);
            assertThat(dev.kicks.values()).containsOnlyNulls();
            assertThat(d.queue(0).eventIdx()).isFalse();
            dev.notifiers.get(0).notifyUsed();
            assertThat(d.notifier(0).count()).isEqualTo(1);
        }
    }

    @Test
    void restartingAQueueResumesAtTheIndexTheDeviceReported() throws Exception {
        ScriptedDevice dev = new ScriptedDevice(OFFER, 1);
        try (VirtioNetDriver d = new VirtioNetDriver(dev, mem, new VirtioNetDriver.Options().queueSize(8))) {
            d.start();
            long[] before = dev.queues.get(1).clone();
            EventFd kick = dev.kicks.get(1);
            assertThat(d.restartQueue(1)).isEqualTo(7);
            assertThat(dev.calls).containsExactly("stopQueue(1)", "setQueueBase(1, 7)");
            assertThat(dev.queues.get(1)).containsExactly(before);
            assertThat(dev.kicks.get(1)).isSameAs(kick);
        }
    }

    private static byte[] frame(int n) {
        byte[] f = new byte[n];
        for (int i = 0; i < n; i++) {
            f[i] = (byte) (i * 31 + 7);
        }
        return f;
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    @SuppressWarnings("unused")
    private static byte[] le64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, v).array();
    }
}
