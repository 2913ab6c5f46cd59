package org.virtionetd.virtio.net;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.DirtyLog;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.Buffer;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.PackedQueueDriver;
import org.virtionetd.virtio.testdriver.Placed;
import org.virtionetd.virtio.testdriver.QueueDriver;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.VirtioNetCtrl;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.GuestMemorySnapshot;
import org.virtionetd.virtio.testsupport.GuestMemorySnapshot.ChangedPage;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The dirty log covers every guest byte the device changes (vhost-user.rst, "Migration": the front-end copies
 * only the pages the log names, so a page the device changed without marking it reaches the destination stale).
 * Judged against guest memory, not against the device's write calls: the driver posts its RX buffers, TX packets
 * and control commands with every queue stopped; guest memory is copied; then only the device works (RX on both
 * pairs, TX on both pairs, the control queue) until it is stopped again, and the memory is copied once more.
 * Every byte that differs must lie in a page the log marked, and, stricter than the log needs, in a range the
 * device marked: a write path that forgets its mark is caught even where a neighbour's mark on the same page
 * would hide it in the log.
 */
class DirtyLogCoverageTest {
    private static final long PAGE = GuestMemorySnapshot.PAGE;
    private static final int PAIRS = 2;
    private static final byte[] OTHER_MAC = {0x52, 0x54, 0x00, 0x65, 0x43, 0x21};

    /** The ranges the device marked, byte by byte, over guest-physical [0, bytes). */
    static final class MarkedBytes implements DirtyLog {
        private final BitSet bytes = new BitSet();
        private final long limit;
        private final List<String> outside = new ArrayList<>();

        MarkedBytes(long limit) {
            this.limit = limit;
        }

        @Override
        public synchronized void mark(long gpa, long length) {
            if (gpa < 0 || length < 0 || gpa + length > limit) {
                outside.add("0x" + Long.toHexString(gpa) + "+" + length);
                return;
            }
            bytes.set((int) gpa, (int) (gpa + length));
        }

        synchronized boolean byteMarked(long gpa) {
            return bytes.get((int) gpa);
        }

        synchronized boolean pageMarked(long page) {
            int from = (int) (page * PAGE);
            int next = bytes.nextSetBit(from);
            return next >= 0 && next < from + PAGE;
        }

        synchronized List<String> outside() {
            return List.copyOf(outside);
        }
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (RingFormat format : RingFormat.values()) {
            for (boolean mergeable : new boolean[] {true, false}) {
                for (boolean eventIdx : new boolean[] {true, false}) {
                    out.add(Arguments.of(format, mergeable, eventIdx));
                }
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} mergeable={1} event_idx={2}")
    @MethodSource("cases")
    void everyByteTheDeviceChangesIsInAPageTheLogMarked(RingFormat format, boolean mergeable, boolean eventIdx)
            throws Exception {
        VirtioNetDriver.Options options = format.options().mergeableBufferSize(1024).autoRefill(false);
        if (!mergeable) {
            options.without(VirtioNetFeature.MRG_RXBUF);
        }
        if (!eventIdx) {
            options.without(VirtioFeature.RING_EVENT_IDX);
        }
        try (NetFixture f = NetFixture.builder().pairs(PAIRS).options(options).start()) {
            VirtioNetDriver d = f.driver;
            assertThat(d.queuePairs()).isEqualTo(PAIRS);
            assertThat(d.mqVqPairsSet(PAIRS)).as("MQ_VQ_PAIRS_SET before the test").isEqualTo(VirtioNetCtrl.OK);
            // Promiscuous after reset (as QEMU): off, so that a frame for another MAC is dropped by the filter.
            assertThat(d.rxMode(VirtioNetCtrl.RX_PROMISC, false)).isEqualTo(VirtioNetCtrl.OK);
            long commandsBefore = f.device.counters(0).controlOk.sum();
            int ctrl = d.controlQueueIndex();
            int queues = ctrl + 1;

            // The driver's part, with the device stopped: nothing of it can be mistaken for the device's.
            for (int q = 0; q < queues; q++) {
                f.device.stopQueue(q);
            }
            List<byte[]> tx = List.of(VirtioNetDeviceTest.frame(OTHER_MAC, 60, 1),
                    VirtioNetDeviceTest.frame(OTHER_MAC, 1514, 2), VirtioNetDeviceTest.frame(OTHER_MAC, 300, 3));
            for (int p = 0; p < PAIRS; p++) {
                d.transmitBatch(p, NetHeaderFields.none(), tx);
            }
            List<Chain> commands = placeCommands(d.controlQueue());
            int commandsOk = commands.size() - 1;

            MarkedBytes log = new MarkedBytes(NetFixture.REGION * 2);
            f.memory.setDirtyLog(log);
            GuestMemorySnapshot before = GuestMemorySnapshot.of(f.memory);

            // The device's part: frames from the backends, the TX packets, the commands.
            List<List<byte[]>> rx = new ArrayList<>();
            for (int p = 0; p < PAIRS; p++) {
                List<byte[]> frames = rxFrames(mergeable, 10 * p);
                rx.add(frames);
                // Dropped by the filter after the backend wrote it into buffers that stay the driver's.
                f.backends.get(p).deliver(NetHeaderFields.none().encode(12),
                        VirtioNetDeviceTest.frame(OTHER_MAC, 1500, 100 + p));
                for (byte[] frame : frames) {
                    f.backends.get(p).deliver(NetHeaderFields.none().encode(12), frame);
                }
            }
            for (int q = 0; q < queues; q++) {
                f.device.startQueue(q, d.kick(q), d.notifier(q));
            }
            Await.until(Duration.ofSeconds(10), () -> deviceDone(f, tx.size(), rx, commandsBefore + commands.size()),
                    "the device to send, receive and answer everything", () -> f.device.counters(0).snapshot()
                            + " / " + f.device.counters(1).snapshot());
            for (int q = 0; q < queues; q++) {
                f.device.stopQueue(q); // the device is quiet: every write it made is in memory and marked
            }
            GuestMemorySnapshot after = GuestMemorySnapshot.of(f.memory);
            f.memory.setDirtyLog(null);

            assertThat(log.outside()).as("marks outside guest memory").isEmpty();
            List<ChangedPage> pages = before.changedPages(after, log::byteMarked);
            List<String> unlogged = new ArrayList<>();
            List<String> unmarked = new ArrayList<>();
            for (ChangedPage c : pages) {
                if (!log.pageMarked(c.page())) {
                    unlogged.add(describe(d, c.firstChanged(), c.changed() + " bytes changed in its page"));
                }
                if (c.unmarked() > 0) {
                    unmarked.add(describe(d, c.firstUnmarked(), c.unmarked() + " unmarked bytes changed in its page"));
                }
            }
            assertThat(pages).as("pages the device changed").isNotEmpty();
            assertThat(unlogged).as("changed guest bytes in pages the dirty log does not name (the first changed"
                    + " byte of each page)").isEmpty();
            assertThat(unmarked).as("changed guest bytes outside every range the device marked").isEmpty();

            // What the device wrote is what it had to write: the test covered each area.
            assertThat(f.device.counters(0).controlOk.sum() - commandsBefore).isEqualTo(commandsOk);
            assertThat(f.device.counters(0).controlErr.sum()).isEqualTo(1);
            for (int i = 0; i < commands.size(); i++) {
                Placed ack = commands.get(i).elements().get(commands.get(i).elements().size() - 1);
                byte[] b = new byte[1];
                f.memory.read(ack.address(), b, 0, 1);
                assertThat(b[0]).as("ack of command %d", i)
                        .isEqualTo((byte) (i < commandsOk ? VirtioNetCtrl.OK : VirtioNetCtrl.ERR));
            }
            for (int p = 0; p < PAIRS; p++) {
                assertThat(f.backends.get(p).sentCount()).isEqualTo(tx.size());
                assertThat(f.device.counters(p).rxFiltered.sum()).as("the foreign frame on pair %d", p)
                        .isEqualTo(1);
                List<ReceivedPacket> got = d.awaitPackets(p, rx.get(p).size());
                for (int i = 0; i < got.size(); i++) {
                    assertThat(got.get(i).frame()).isEqualTo(rx.get(p).get(i));
                }
                if (mergeable) {
                    assertThat(got.get(got.size() - 1).buffers()).as("num_buffers > 1").hasSizeGreaterThan(1);
                }
            }
            for (int q = 0; q < queues; q++) {
                QueueDriver qd = d.queue(q);
                if (format.packed()) {
                    assertThat(before.changedIn(after, qd.descAddress(), 16L * qd.size()))
                            .as("used descriptors of %s", qd.name()).isTrue();
                } else {
                    assertThat(before.changedIn(after, qd.deviceAreaAddress(), 4 + 8L * qd.size()))
                            .as("used ring of %s", qd.name()).isTrue();
                }
            }
            if (eventIdx) {
                // TX rings: consumed, then kicks asked for at the new position (avail_event, or the packed device
                // event suppression's offset).
                for (int p = 0; p < PAIRS; p++) {
                    QueueDriver qd = d.transmitQueue(p);
                    long at = format.packed() ? qd.deviceAreaAddress() : qd.deviceAreaAddress() + 4 + 8L * qd.size();
                    assertThat(before.changedIn(after, at, 2)).as("avail event of %s", qd.name())
                            .isTrue();
                }
            }
        }
    }

    private static List<byte[]> rxFrames(boolean mergeable, long seed) {
        List<byte[]> frames = new ArrayList<>();
        frames.add(VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 60, seed + 1));
        frames.add(VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 1514, seed + 2));
        frames.add(VirtioNetDeviceTest.frame(new byte[] {-1, -1, -1, -1, -1, -1}, 400, seed + 3));
        if (mergeable) {
            frames.add(VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 3000, seed + 4));
        }
        return frames;
    }

    /**
     * Control commands as the driver's {@code command} lays them out (class and command, data, one writable ack
     * byte), placed and published without waiting; none changes what the RX filter accepts of the test's frames.
     * The last one is refused (ERR).
     */
    private static List<Chain> placeCommands(QueueDriver q) {
        byte[][][] commands = {
            {{VirtioNetCtrl.CLASS_MAC, VirtioNetCtrl.MAC_ADDR_SET}, VirtioNetDeviceTest.DEVICE_MAC},
            {{VirtioNetCtrl.CLASS_RX, VirtioNetCtrl.RX_ALLMULTI}, {1}},
            {{VirtioNetCtrl.CLASS_MAC, VirtioNetCtrl.MAC_TABLE_SET}, VirtioNetDriver.macTable(List.of()),
                VirtioNetDriver.macTable(List.of(new byte[] {0x33, 0x33, 0, 0, 0, 1}))},
            {{VirtioNetCtrl.CLASS_VLAN, VirtioNetCtrl.VLAN_ADD}, {5, 0}},
            {{VirtioNetCtrl.CLASS_MQ, VirtioNetCtrl.MQ_VQ_PAIRS_SET}, {PAIRS, 0}},
            {{VirtioNetCtrl.CLASS_GUEST_OFFLOADS, VirtioNetCtrl.GUEST_OFFLOADS_SET}, new byte[8]},
            {{VirtioNetCtrl.CLASS_ANNOUNCE, VirtioNetCtrl.ANNOUNCE_ACK}},
            {{VirtioNetCtrl.CLASS_MQ, VirtioNetCtrl.MQ_VQ_PAIRS_SET}, {0, 0}},
        };
        List<Chain> chains = new ArrayList<>();
        for (byte[][] c : commands) {
            List<Buffer> bufs = new ArrayList<>();
            for (byte[] part : c) {
                bufs.add(Buffer.readable(part));
            }
            bufs.add(Buffer.writable(1));
            chains.add(q.placeChain(bufs, List.of()));
        }
        q.publish();
        return chains;
    }

    /** Read-only: the driver must not write while the device works. Counted before each burst is published. */
    private static boolean deviceDone(NetFixture f, int txPerPair, List<List<byte[]>> rx, long commands) {
        NetCounters c0 = f.device.counters(0);
        if (c0.controlOk.sum() + c0.controlErr.sum() < commands) {
            return false;
        }
        for (int p = 0; p < PAIRS; p++) {
            NetCounters c = f.device.counters(p);
            if (c.txPackets.sum() < txPerPair || c.rxPackets.sum() < rx.get(p).size()) {
                return false;
            }
        }
        return true;
    }

    /** What the driver has at {@code gpa}: a ring area of a queue, or an element of a chain it made available. */
    private static String describe(VirtioNetDriver d, long gpa, String what) {
        String where = "nothing the driver placed";
        int queues = d.controlQueueIndex() + 1;
        for (int q = 0; q < queues; q++) {
            QueueDriver qd = d.queue(q);
            boolean packed = qd instanceof PackedQueueDriver;
            long[][] areas = {
                {qd.descAddress(), 16L * qd.size()},
                {qd.driverAreaAddress(), packed ? 4 : 6 + 2L * qd.size()},
                {qd.deviceAreaAddress(), packed ? 4 : 6 + 8L * qd.size()}};
            String[] names = {packed ? "descriptor ring" : "descriptor table", packed ? "driver event suppression"
                    : "available ring", packed ? "device event suppression" : "used ring"};
            for (int i = 0; i < areas.length; i++) {
                if (gpa >= areas[i][0] && gpa < areas[i][0] + areas[i][1]) {
                    return String.format("0x%x (%s): %s of %s, offset %d", gpa, what, names[i], qd.name(),
                            gpa - areas[i][0]);
                }
            }
            for (Chain c : qd.outstanding().values()) {
                for (Placed p : c.elements()) {
                    if (gpa >= p.address() && gpa < p.address() + p.length()) {
                        where = "buffer " + p + " of chain " + c.head() + " on " + qd.name() + ", offset "
                                + (gpa - p.address());
                    }
                }
            }
        }
        return String.format("0x%x (%s): %s", gpa, what, where);
    }
}
