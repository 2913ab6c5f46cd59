package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.Region;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.net.NetDeviceConfig;
import org.virtionetd.virtio.net.VirtioNetDevice;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.queue.PackedQueue;
import org.virtionetd.virtio.testdriver.InMemoryBackend;

import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.NEED_REPLY;
import static org.virtionetd.glue.vhostuser.VhostUserTestSupport.*;

/**
 * Packed rings (virtio 1.2, 2.8) through the vhost-user socket to the real VirtioNetDevice: the 32-bit base of
 * vhost-user.rst ("Vring descriptor indices for packed virtqueues": bits 0-14 avail index, 15 avail wrap counter,
 * 16-30 used index, 31 used wrap counter) in SET_VRING_BASE / GET_VRING_BASE, the split ring's 16-bit limit, and
 * the dirty log ("Migration") over what the device writes in a packed ring: used descriptors in the descriptor
 * ring, logged at their guest-physical address, and the device event suppression area (the ring's "used" address
 * of SET_VRING_ADDR), logged at the ring's log_guest_addr.
 */
class VhostUserPackedRingTest {
    static final long PROTOCOL = VhostUserServerTest.PROTOCOL;
    static final long PACKED = VirtioFeature.bit(VirtioFeature.RING_PACKED);
    static final long LOG_ALL = VirtioFeature.bit(VirtioFeature.VHOST_F_LOG_ALL);
    static final int SIZE = 256;
    static final int LOG_BYTES = VhostUserDirtyLogTest.LOG_BYTES;
    /** A frame as the TX path takes it: the 12-byte virtio_net_hdr (VERSION_1) and 60 bytes of Ethernet. */
    static final int TX_LENGTH = 12 + 60;

    @TempDir
    Path dir;
    InMemoryBackend backend;
    VirtioNetDevice device;
    VhostUserServer server;
    int memfd;
    long guestMap;
    ByteBuffer guest;
    final List<EventFd> eventFds = new ArrayList<>();

    @BeforeEach
    void start() throws Exception {
        backend = new InMemoryBackend("mem", 0);
        device = new VirtioNetDevice(NetDeviceConfig.builder().queuePairs(1).mtu(1500).build(), p -> backend);
        server = new VhostUserServer(dir.resolve("packed.sock"), device, VhostUserServer.SUPPORTED_PROTOCOL_FEATURES);
        server.start();
        memfd = guestMemfd();
        guestMap = LinuxNative.mmapShared(memfd, 0, 2 * MIB);
        guest = LinuxNative.directBuffer(guestMap, (int) (2 * MIB)).order(ByteOrder.LITTLE_ENDIAN);
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
            LinuxNative.munmap(guestMap, 2 * MIB);
            LinuxNative.close(memfd);
        }
    }

    // Queue q's areas in region A (guest-physical 0 at memfd offset 0): a 4 KiB descriptor ring (one page), the
    // driver and device event suppression structures, a buffer, each on its own page.
    static long desc(int q) {
        return 0x10000L + q * 0x40000L;
    }

    static long driverEvent(int q) {
        return desc(q) + 0x10000;
    }

    static long deviceEvent(int q) {
        return desc(q) + 0x20000;
    }

    static long buffer(int q) {
        return desc(q) + 0x30000;
    }

    /** Where the front-end asks device-area writes of queue q to be logged: a page nothing else touches. */
    static long logGuestAddr(int q) {
        return 0xc0000L + q * 0x1000L;
    }

    FakeVhostUserFrontEnd connect(long features) throws Exception {
        FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath());
        negotiate(fe, PROTOCOL, features);
        fe.sendMemTable(NEED_REPLY, new Region[] {new Region(GPA_A, MIB, USER_A, 0),
            new Region(GPA_B, MIB, USER_B, MIB)}, memfd, memfd);
        assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).isZero();
        return fe;
    }

    /** NUM, BASE, ADDR (user addresses of region A), KICK, CALL as QEMU sends them; the ring runs after KICK. */
    EventFd setUpRing(FakeVhostUserFrontEnd fe, int q, int base, int ringFlags) throws Exception {
        fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, q, SIZE);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isZero();
        fe.sendState(VhostUserRequest.SET_VRING_BASE, NEED_REPLY, q, base);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).as("SET_VRING_BASE 0x%x", base).isZero();
        // SET_VRING_ADDR's fields keep the split names: avail = driver area, used = device area (2.8.10).
        fe.sendAddress(NEED_REPLY, q, ringFlags, USER_A + desc(q), USER_A + deviceEvent(q), USER_A + driverEvent(q),
                logGuestAddr(q));
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).isZero();
        EventFd kick = eventFd();
        fe.sendU64(VhostUserRequest.SET_VRING_KICK, NEED_REPLY, q, kick.fd());
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_KICK)).isZero();
        fe.sendU64(VhostUserRequest.SET_VRING_CALL, NEED_REPLY, q, eventFd().fd());
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_CALL)).isZero();
        assertThat(device.queueStarted(q)).as("queue %d runs after its kick", q).isTrue();
        return kick;
    }

    EventFd eventFd() throws Exception {
        EventFd e = EventFd.create();
        eventFds.add(e);
        return e;
    }

    int getBase(FakeVhostUserFrontEnd fe, int q) throws Exception {
        fe.sendState(VhostUserRequest.GET_VRING_BASE, FakeVhostUserFrontEnd.PLAIN, q, 0);
        VhostUserMessage r = fe.reply();
        assertThat(r.request()).isEqualTo(VhostUserRequest.GET_VRING_BASE.id());
        assertThat(r.stateIndex()).isEqualTo(q);
        return r.stateNum();
    }

    /**
     * Writes the flags a ring shows with the device at {@code slot} of a lap with wrap counter {@code wrap} and
     * nothing in flight (2.8.1): slots before it used in this lap (AVAIL = USED = wrap), the others used in the lap
     * before (AVAIL = USED = !wrap), so none is available and the device has nothing to take.
     */
    void showPosition(int q, int slot, boolean wrap) {
        for (int i = 0; i < SIZE; i++) {
            boolean w = i < slot == wrap;
            guest.putShort((int) desc(q) + PackedQueue.DESC_SIZE * i + 14,
                    (short) (w ? PackedQueue.DESC_F_AVAIL | PackedQueue.DESC_F_USED : 0));
        }
    }

    @Test
    void packedBaseComesBackFromGetVringBaseWithBothWrapCounters() throws Exception {
        try (FakeVhostUserFrontEnd fe = connect(PACKED)) {
            // Slot 5 with wrap counters 1: bits 15 and 31 set, the value negative as a Java int.
            showPosition(0, 5, true);
            int base = 5 | 0x8000 | (5 | 0x8000) << 16;
            setUpRing(fe, 0, base, 0);
            assertThat(Integer.toHexString(getBase(fe, 0))).as("GET_VRING_BASE after SET_VRING_BASE 0x%x",
                    base).isEqualTo(Integer.toHexString(base));
            assertThat(device.queueStarted(0)).as("GET_VRING_BASE stops the ring").isFalse();

            // Slot 200 with wrap counters 0, on the other ring; then the stop/start QEMU does (GET, SET the value
            // it got, KICK) keeps the position.
            showPosition(1, 200, false);
            int other = 200 | 200 << 16;
            setUpRing(fe, 1, other, 0);
            int got = getBase(fe, 1);
            assertThat(Integer.toHexString(got)).isEqualTo(Integer.toHexString(other));
            fe.sendState(VhostUserRequest.SET_VRING_BASE, NEED_REPLY, 1, got);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).isZero();
            fe.sendU64(VhostUserRequest.SET_VRING_KICK, NEED_REPLY, 1, eventFd().fd());
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_KICK)).isZero();
            assertThat(device.queueStarted(1)).isTrue();
            assertThat(Integer.toHexString(getBase(fe, 1))).as("after stop and start").isEqualTo(
                    Integer.toHexString(other));
        }
    }

    @Test
    void afterABackEndRestartTheResetBaseResumesWhereThePackedRingShowsTheDevice() throws Exception {
        // QEMU reconnecting to a new back-end after the old one was killed sends the base of the driver's start:
        // slot 0, wrap counters 1. The ring shows the device at slot 77 of a lap with wrap counter 0.
        showPosition(0, 77, false);
        try (FakeVhostUserFrontEnd fe = connect(PACKED)) {
            setUpRing(fe, 0, 0x8000_8000, 0);
            assertThat(Integer.toHexString(getBase(fe, 0))).isEqualTo(Integer.toHexString(77 | 77 << 16));
        }
    }

    /**
     * QEMU 7.2 stopping a VM (vhost_dev_stop): SET_STATUS 0, SET_VRING_ENABLE 0, then GET_VRING_BASE per ring; at
     * cont SET_FEATURES and each ring's setup again with the base it got. The answer is where the ring stood
     * before the reset, in each layout, or the ring would restart at its beginning.
     */
    @Test
    void getVringBaseAfterSetStatusZeroAnswersWhereThePackedRingStood() throws Exception {
        showPosition(0, 5, true);
        int base = 5 | 0x8000 | (5 | 0x8000) << 16;
        try (FakeVhostUserFrontEnd fe = connect(PACKED)) {
            setUpRing(fe, 0, base, 0);
            stopAsQemu72Does(fe);
            int got = getBase(fe, 0);
            assertThat(Integer.toHexString(got)).as("GET_VRING_BASE after SET_STATUS 0").isEqualTo(
                    Integer.toHexString(base));
            contAsQemuDoes(fe, PACKED, got);
            assertThat(Integer.toHexString(getBase(fe, 0))).as("after cont").isEqualTo(Integer.toHexString(base));
        }
    }

    @Test
    void getVringBaseAfterSetStatusZeroAnswersWhereTheSplitRingStood() throws Exception {
        // avail.idx and used.idx 7: the driver made 7 buffers available and the device used them.
        guest.putShort((int) driverEvent(0) + 2, (short) 7);
        guest.putShort((int) deviceEvent(0) + 2, (short) 7);
        try (FakeVhostUserFrontEnd fe = connect(0)) {
            setUpRing(fe, 0, 7, 0);
            stopAsQemu72Does(fe);
            int got = getBase(fe, 0);
            assertThat(got).as("GET_VRING_BASE after SET_STATUS 0").isEqualTo(7);
            contAsQemuDoes(fe, 0, got);
            assertThat(getBase(fe, 0)).as("after cont").isEqualTo(7);
        }
    }

    static void stopAsQemu72Does(FakeVhostUserFrontEnd fe) throws Exception {
        fe.sendU64(VhostUserRequest.SET_STATUS, NEED_REPLY, 0);
        assertThat(fe.replyU64(VhostUserRequest.SET_STATUS)).isZero();
        fe.sendState(VhostUserRequest.SET_VRING_ENABLE, NEED_REPLY, 0, 0);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ENABLE)).isZero();
    }

    void contAsQemuDoes(FakeVhostUserFrontEnd fe, long features, int base) throws Exception {
        fe.sendU64(VhostUserRequest.SET_FEATURES, NEED_REPLY, VirtioFeature.bit(VirtioFeature.VERSION_1)
                | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES) | features);
        assertThat(fe.replyU64(VhostUserRequest.SET_FEATURES)).isZero();
        setUpRing(fe, 0, base, 0);
    }

    @Test
    void aSplitRingRefusesABaseBeyondSixteenBits() throws Exception {
        try (FakeVhostUserFrontEnd fe = connect(0)) {
            fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, 0, SIZE);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isZero();
            fe.sendState(VhostUserRequest.SET_VRING_BASE, NEED_REPLY, 0, 7);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).isZero();
            for (int base : new int[] {0x8005_8005, 0x1_0000}) {
                fe.sendState(VhostUserRequest.SET_VRING_BASE, NEED_REPLY, 0, base);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).as("SET_VRING_BASE 0x%x on a split ring",
                        base).isNotZero();
            }
            assertThat(getBase(fe, 0)).as("the refused bases changed nothing").isEqualTo(7);
        }
    }

    @Test
    void usedDescriptorsAreLoggedWhereTheyAreAndTheDeviceEventAreaAtLogGuestAddr() throws Exception {
        int logfd = LinuxNative.memfdCreate("test-log", LOG_BYTES);
        long logMap = LinuxNative.mmapShared(logfd, 0, LOG_BYTES);
        try (FakeVhostUserFrontEnd fe = connect(PACKED | LOG_ALL)) {
            fe.tx.putLong(0, LOG_BYTES).putLong(8, 0);
            fe.send(VhostUserRequest.SET_LOG_BASE.id(), FakeVhostUserFrontEnd.PLAIN, 16, logfd);
            assertThat(fe.replyU64(VhostUserRequest.SET_LOG_BASE)).isZero();
            // Fresh rings (all flags 0: the driver's reset state); one TX chain at slot 0 is written but made
            // available only once the rings run and the log is cleared (a started TX ring is processed also while
            // disabled, vhost-user.rst "Ring states"): one descriptor, buffer ID 3, then AVAIL = 1 and USED = 0
            // for the driver's wrap counter 1.
            int at = (int) desc(1);
            guest.putLong(at, buffer(1)).putInt(at + 8, TX_LENGTH).putShort(at + 12, (short) 3);
            guest.put((int) buffer(1) + 12, new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff,
                (byte) 0xff, (byte) 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06});
            setUpRing(fe, 0, 0x8000, VhostUserMessage.VRING_F_LOG);
            EventFd txKick = setUpRing(fe, 1, 0x8000, VhostUserMessage.VRING_F_LOG);
            for (int q = 0; q < 2; q++) {
                fe.sendState(VhostUserRequest.SET_VRING_ENABLE, NEED_REPLY, q, 1);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ENABLE)).isZero();
            }
            VhostUserDirtyLogTest.clearLog(logMap);
            guest.putShort(at + 14, (short) PackedQueue.DESC_F_AVAIL);
            VarHandle.fullFence();
            txKick.signal();
            backend.awaitSent(1, Duration.ofSeconds(5));
            int usedFlags = PackedQueue.DESC_F_AVAIL | PackedQueue.DESC_F_USED;
            await(() -> (guest.getShort(at + 14) & 0xffff) == usedFlags, () -> "flags at TX slot 0: 0x"
                    + Integer.toHexString(guest.getShort(at + 14) & 0xffff));
            assertThat(guest.getShort(at + 12)).as("used buffer ID").isEqualTo((short) 3);
            // The device marks a page after writing it: the flags may be seen a moment before the mark.
            List<Long> wanted = List.of(desc(1) >> 12, logGuestAddr(1) >> 12);
            await(() -> VhostUserDirtyLogTest.dirtyPages(logMap).containsAll(wanted), () -> "dirty pages " + VhostUserDirtyLogTest.dirtyPages(logMap));
            List<Long> dirty = VhostUserDirtyLogTest.dirtyPages(logMap);
            assertThat(dirty).as("pages marked (used descriptor in the descriptor ring, page 0x%x; TX device event"
                    + " area logged at log_guest_addr, page 0x%x)", desc(1) >> 12, logGuestAddr(1) >> 12)
                    .contains(desc(1) >> 12, logGuestAddr(1) >> 12)
                    .doesNotContain(deviceEvent(1) >> 12, deviceEvent(0) >> 12, buffer(1) >> 12,
                            driverEvent(1) >> 12);
        } finally {
            LinuxNative.munmap(logMap, LOG_BYTES);
            LinuxNative.close(logfd);
        }
    }
}
