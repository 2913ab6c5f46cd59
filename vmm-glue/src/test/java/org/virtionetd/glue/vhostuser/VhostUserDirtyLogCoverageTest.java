package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.Region;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemoryRegion;
import org.virtionetd.virtio.net.NetCounters;
import org.virtionetd.virtio.net.NetDeviceConfig;
import org.virtionetd.virtio.net.VirtioNetDevice;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.testdriver.Buffer;
import org.virtionetd.virtio.testdriver.GuestAllocator;
import org.virtionetd.virtio.testdriver.InMemoryBackend;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.PackedQueueDriver;
import org.virtionetd.virtio.testdriver.QueueDriver;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.SplitQueueDriver;
import org.virtionetd.virtio.testsupport.GuestMemorySnapshot;
import org.virtionetd.virtio.testsupport.GuestMemorySnapshot.ChangedPage;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.NEED_REPLY;
import static org.virtionetd.glue.vhostuser.VhostUserTestSupport.*;

/**
 * The log a front-end reads names every page the device changed (vhost-user.rst, "Migration"), the real
 * VirtioNetDevice behind the vhost-user socket with two queue pairs: the used rings logged at their
 * log_guest_addr with VHOST_VRING_F_LOG (QEMU gives the used ring's own guest-physical address), the rest, RX
 * buffers and packed used descriptors, where they are. Judged against guest memory: the driver's rings are filled
 * before the rings start, memory is copied, the device alone works until GET_VRING_BASE stops every ring, memory
 * is copied again, and every page that differs must have its bit set in the log.
 */
class VhostUserDirtyLogCoverageTest {
    static final long PROTOCOL = VhostUserServerTest.PROTOCOL;
    static final int PAIRS = 2;
    static final int SIZE = 64;
    static final int LOG_BYTES = VhostUserDirtyLogTest.LOG_BYTES;
    /** Guest-physical 0 and 1 MiB, adjacent: both inside the pages the log covers (LOG_BYTES * 8). */
    static final Region[] REGIONS = {new Region(0, MIB, USER_A, 0), new Region(MIB, MIB, USER_B, MIB)};

    @TempDir
    Path dir;
    final List<InMemoryBackend> backends = new ArrayList<>();
    final List<EventFd> eventFds = new ArrayList<>();
    VirtioNetDevice device;
    VhostUserServer server;
    int memfd;
    /** The test driver's view of the guest: the same memfd, mapped again. */
    GuestMemory guest;
    int logfd;
    long logMap;

    @BeforeEach
    void start() throws Exception {
        for (int p = 0; p < PAIRS; p++) {
            backends.add(new InMemoryBackend("mem" + p, 0));
        }
        device = new VirtioNetDevice(NetDeviceConfig.builder().queuePairs(PAIRS).mtu(1500).build(), backends::get);
        server = new VhostUserServer(dir.resolve("coverage.sock"), device, VhostUserServer.SUPPORTED_PROTOCOL_FEATURES);
        server.start();
        memfd = guestMemfd();
        List<MemoryRegion> regions = new ArrayList<>();
        for (Region r : REGIONS) {
            regions.add(MemoryRegion.map(r.guest(), r.size(), r.user(), LinuxNative.dup(memfd), r.offset()));
        }
        guest = GuestMemory.of(regions);
        logfd = LinuxNative.memfdCreate("test-log", LOG_BYTES);
        logMap = LinuxNative.mmapShared(logfd, 0, LOG_BYTES);
    }

    @AfterEach
    void stop() throws Exception {
        try {
            server.close();
            device.close();
        } finally {
            for (EventFd e : eventFds) {
                e.close();
            }
            guest.close();
            LinuxNative.munmap(logMap, LOG_BYTES);
            LinuxNative.close(logfd);
            LinuxNative.close(memfd);
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void everyPageTheDeviceChangesIsInTheLogTheFrontEndReads(RingFormat format) throws Exception {
        long features = VirtioFeature.bit(VirtioFeature.VHOST_F_LOG_ALL)
                | VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX) | VirtioFeature.bit(VirtioNetFeature.MRG_RXBUF)
                | (format.packed() ? VirtioFeature.bit(VirtioFeature.RING_PACKED) : 0)
                | (format.inOrder() ? VirtioFeature.bit(VirtioFeature.IN_ORDER) : 0);
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, features);
            fe.sendMemTable(NEED_REPLY, REGIONS, memfd, memfd);
            assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).isZero();
            fe.tx.putLong(0, LOG_BYTES).putLong(8, 0);
            fe.send(VhostUserRequest.SET_LOG_BASE.id(), FakeVhostUserFrontEnd.PLAIN, 16, logfd);
            assertThat(fe.replyU64(VhostUserRequest.SET_LOG_BASE)).isZero();

            // The driver's part, before any ring runs: RX rings full of 1536-byte buffers, three packets per TX ring.
            GuestAllocator allocator = new GuestAllocator(guest, 1, 512);
            QueueDriver[] rings = new QueueDriver[2 * PAIRS];
            EventFd[] kicks = new EventFd[rings.length];
            List<List<byte[]>> rx = new ArrayList<>();
            for (int q = 0; q < rings.length; q++) {
                String name = (q % 2 == 0 ? "receiveq" : "transmitq") + (q / 2 + 1);
                rings[q] = format.packed() ? PackedQueueDriver.create(allocator, SIZE, name)
                        : SplitQueueDriver.modern(allocator, SIZE, name);
                rings[q].setEventIdx(true);
                if (rings[q] instanceof PackedQueueDriver p) {
                    p.setInOrder(format.inOrder());
                } else {
                    ((SplitQueueDriver) rings[q]).setInOrder(format.inOrder());
                }
                kicks[q] = eventFd();
                rings[q].setKick(kicks[q]);
            }
            for (int p = 0; p < PAIRS; p++) {
                QueueDriver rxRing = rings[2 * p];
                while (rxRing.freeSlotCount() > 0) {
                    rxRing.placeChain(List.of(Buffer.writable(1536)), List.of());
                }
                rxRing.publish();
                QueueDriver txRing = rings[2 * p + 1];
                for (int i = 0; i < 3; i++) {
                    txRing.placeChain(List.of(Buffer.readable(new byte[12]),
                            Buffer.readable(frame(60 + 700 * i, 10L * p + i))), List.of());
                }
                txRing.publish();
                List<byte[]> frames = List.of(frame(60, 100L + p), frame(1514, 200L + p), frame(4000, 300L + p));
                rx.add(frames);
                for (byte[] f : frames) {
                    backends.get(p).deliver(NetHeaderFields.none().encode(12), f);
                }
            }
            VhostUserDirtyLogTest.clearLog(logMap);
            GuestMemorySnapshot before = GuestMemorySnapshot.of(guest);

            // The device's part: the rings set up as QEMU does, with VHOST_VRING_F_LOG, and enabled.
            for (int q = 0; q < rings.length; q++) {
                setUpRing(fe, q, format.packed() ? 0x8000 : 0, rings[q], kicks[q]);
            }
            await(() -> done(rx), () -> device.counters(0).snapshot() + " / " + device.counters(1).snapshot());
            for (int q = 0; q < rings.length; q++) {
                fe.sendState(VhostUserRequest.GET_VRING_BASE, FakeVhostUserFrontEnd.PLAIN, q, 0);
                assertThat(fe.reply().request()).isEqualTo(VhostUserRequest.GET_VRING_BASE.id());
            }
            GuestMemorySnapshot after = GuestMemorySnapshot.of(guest);

            Set<Long> logged = new HashSet<>(VhostUserDirtyLogTest.dirtyPages(logMap));
            List<ChangedPage> changed = before.changedPages(after,
                    gpa -> logged.contains(gpa / GuestMemorySnapshot.PAGE));
            List<String> missing = new ArrayList<>();
            for (ChangedPage c : changed) {
                if (c.unmarked() > 0) {
                    missing.add(describe(rings, c));
                }
            }
            assertThat(changed).as("pages the device changed").isNotEmpty();
            assertThat(missing).as("pages the device changed whose bit the front-end finds clear").isEmpty();
            for (int q = 0; q < rings.length; q++) {
                QueueDriver r = rings[q];
                long at = format.packed() ? r.descAddress() : r.deviceAreaAddress();
                assertThat(before.changedIn(after, at, format.packed() ? 16L * SIZE : 4 + 8L * SIZE))
                        .as("used entries of %s", r.name()).isTrue();
            }
            for (int p = 0; p < PAIRS; p++) {
                assertThat(backends.get(p).sentCount()).isEqualTo(3);
            }
        }
    }

    private boolean done(List<List<byte[]>> rx) {
        for (int p = 0; p < PAIRS; p++) {
            NetCounters c = device.counters(p);
            if (c.txPackets.sum() < 3 || c.rxPackets.sum() < rx.get(p).size()) {
                return false;
            }
        }
        return true;
    }

    /**
     * NUM, BASE, ADDR (VHOST_VRING_F_LOG, log_guest_addr the used ring's guest-physical address, as QEMU gives
     * it), KICK, CALL, ENABLE.
     */
    private void setUpRing(FakeVhostUserFrontEnd fe, int q, int base, QueueDriver ring, EventFd kick)
            throws Exception {
        fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, q, SIZE);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isZero();
        fe.sendState(VhostUserRequest.SET_VRING_BASE, NEED_REPLY, q, base);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).isZero();
        fe.sendAddress(NEED_REPLY, q, VhostUserMessage.VRING_F_LOG, user(ring.descAddress()),
                user(ring.deviceAreaAddress()), user(ring.driverAreaAddress()), ring.deviceAreaAddress());
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).isZero();
        fe.sendU64(VhostUserRequest.SET_VRING_KICK, NEED_REPLY, q, kick.fd());
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_KICK)).isZero();
        fe.sendU64(VhostUserRequest.SET_VRING_CALL, NEED_REPLY, q, eventFd().fd());
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_CALL)).isZero();
        fe.sendState(VhostUserRequest.SET_VRING_ENABLE, NEED_REPLY, q, 1);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ENABLE)).isZero();
        assertThat(device.queueStarted(q)).as("queue %d runs after its kick", q).isTrue();
    }

    private static long user(long gpa) {
        for (Region r : REGIONS) {
            if (gpa >= r.guest() && gpa < r.guest() + r.size()) {
                return r.user() + (gpa - r.guest());
            }
        }
        throw new IllegalArgumentException("guest address 0x" + Long.toHexString(gpa) + " is in no region");
    }

    private EventFd eventFd() throws Exception {
        EventFd e = EventFd.create();
        eventFds.add(e);
        return e;
    }

    private static byte[] frame(int length, long seed) {
        byte[] f = new byte[length];
        new Random(seed).nextBytes(f);
        System.arraycopy(new byte[] {0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, 0, f, 0, 6);
        f[12] = 0x08;
        f[13] = 0x00;
        return f;
    }

    private static String describe(QueueDriver[] rings, ChangedPage c) {
        long gpa = c.firstUnmarked();
        for (QueueDriver r : rings) {
            boolean packed = r instanceof PackedQueueDriver;
            long[][] areas = {{r.descAddress(), 16L * SIZE}, {r.driverAreaAddress(), packed ? 4 : 6 + 2L * SIZE},
                {r.deviceAreaAddress(), packed ? 4 : 6 + 8L * SIZE}};
            String[] names = {"descriptor area", "driver area", "device area"};
            for (int i = 0; i < areas.length; i++) {
                if (gpa >= areas[i][0] && gpa < areas[i][0] + areas[i][1]) {
                    return String.format("page 0x%x (%d bytes changed): %s of %s", c.page(), c.changed(), names[i],
                            r.name());
                }
            }
        }
        return String.format("page 0x%x (%d bytes changed, first at 0x%x): a buffer", c.page(), c.changed(), gpa);
    }
}
