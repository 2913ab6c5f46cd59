package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.os.LinuxNative;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.NEED_REPLY;
import static org.virtionetd.glue.vhostuser.VhostUserTestSupport.*;

/** vhost-user.rst "Migration": the log as the front-end reads it, written through GuestMemory.markDirty. */
class VhostUserDirtyLogTest {
    static final long PROTOCOL = VhostUserServerTest.PROTOCOL;
    static final long LOG_ALL = VirtioFeature.bit(VirtioFeature.VHOST_F_LOG_ALL);
    /** 4 KiB of log = 32768 pages = 128 MiB of guest-physical space. */
    static final int LOG_BYTES = 4096;
    static final long LOG_OFFSET = 4096 + 8 * 3; // not page aligned, not a multiple of 64 bits in the page

    @TempDir
    Path dir;
    FakeVirtioDevice device;
    VhostUserServer server;
    int memfd;
    int logfd;
    long logMap;

    @BeforeEach
    void start() throws Exception {
        device = new FakeVirtioDevice(2);
        server = new VhostUserServer(dir.resolve("log.sock"), device,
                VhostUserServer.SUPPORTED_PROTOCOL_FEATURES);
        server.start();
        memfd = guestMemfd();
        logfd = LinuxNative.memfdCreate("test-log", LOG_OFFSET + LOG_BYTES);
        logMap = LinuxNative.mmapShared(logfd, 0, LOG_OFFSET + LOG_BYTES);
    }

    @AfterEach
    void stop() throws Exception {
        server.close();
        LinuxNative.munmap(logMap, LOG_OFFSET + LOG_BYTES);
        LinuxNative.close(logfd);
        LinuxNative.close(memfd);
        assertThat(device.violations()).isEmpty();
    }

    List<Long> dirtyPages() {
        return dirtyPages(logMap + LOG_OFFSET);
    }

    /** Pages whose bit is set in the {@link #LOG_BYTES}-byte log at {@code log0}, read as the front-end reads it. */
    static List<Long> dirtyPages(long log0) {
        List<Long> pages = new ArrayList<>();
        com.sun.jna.Pointer log = new com.sun.jna.Pointer(log0);
        for (int i = 0; i < LOG_BYTES; i++) {
            int b = log.getByte(i) & 0xff;
            for (int bit = 0; bit < 8; bit++) {
                if ((b & (1 << bit)) != 0) {
                    pages.add(i * 8L + bit);
                }
            }
        }
        return pages;
    }

    void clearLog() {
        clearLog(logMap + LOG_OFFSET);
    }

    static void clearLog(long log0) {
        new com.sun.jna.Pointer(log0).setMemory(0, LOG_BYTES, (byte) 0);
    }

    FakeVhostUserFrontEnd connectWithLog() throws Exception {
        FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath());
        negotiate(fe, PROTOCOL, LOG_ALL);
        fe.sendMemTable(NEED_REPLY, new FakeVhostUserFrontEnd.Region[] {
            new FakeVhostUserFrontEnd.Region(GPA_A, MIB, USER_A, 0),
            new FakeVhostUserFrontEnd.Region(GPA_B, MIB, USER_B, MIB)}, memfd, memfd);
        assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).isZero();
        fe.tx.putLong(0, LOG_BYTES).putLong(8, LOG_OFFSET);
        fe.send(VhostUserRequest.SET_LOG_BASE.id(), FakeVhostUserFrontEnd.PLAIN, 16, logfd);
        assertThat(fe.replyU64(VhostUserRequest.SET_LOG_BASE)).as("SET_LOG_BASE always replies").isZero();
        return fe;
    }

    @Test
    void marksSetOneBitPerPageAtomicallyAcrossWordBoundaries() throws Exception {
        try (FakeVhostUserFrontEnd fe = connectWithLog()) {
            var memory = device.memory();
            memory.markDirty(0x5000, 0x2001); // pages 5, 6 and 7
            memory.markDirty(0x3f000, 0x3000); // pages 63, 64, 65: crosses a 64-bit word
            memory.markDirty(0x100000, 1); // page 256, one byte
            assertThat(dirtyPages()).containsExactly(5L, 6L, 7L, 63L, 64L, 65L, 256L);
            // A write through GuestMemory (the device's copy path) is logged as well.
            memory.write(0x80ff0, new byte[0x20], 0, 0x20); // pages 0x80 and 0x81
            assertThat(dirtyPages()).contains(0x80L, 0x81L);
            // Beyond the log (gpa 4 GiB = page 1048576 > 32768): nothing written, no crash.
            clearLog();
            memory.markDirty(GPA_B, 4096);
            assertThat(dirtyPages()).isEmpty();
            // The last page the log covers.
            memory.markDirty((LOG_BYTES * 8L - 1) * 4096, 8192);
            assertThat(dirtyPages()).containsExactly(LOG_BYTES * 8L - 1);
            assertThat(fe.features()).as("the session is still up").isNotZero();
        }
    }

    @Test
    void concurrentMarksAreAllKept() throws Exception {
        try (FakeVhostUserFrontEnd fe = connectWithLog()) {
            var memory = device.memory();
            Thread[] threads = new Thread[4];
            for (int t = 0; t < threads.length; t++) {
                int id = t;
                // Every thread marks every 4th page of the same words: lost updates would leave holes.
                threads[t] = new Thread(() -> {
                    for (long p = id; p < 4096; p += 4) {
                        memory.markDirty(p * 4096, 1);
                    }
                });
                threads[t].start();
            }
            for (Thread t : threads) {
                t.join();
            }
            List<Long> pages = dirtyPages();
            assertThat(pages).hasSize(4096);
            assertThat(pages.get(4095)).isEqualTo(4095L);
            assertThat(fe.features()).as("the session is still up").isNotZero();
        }
    }

    @Test
    void usedRingWritesAreLoggedAtLogGuestAddrOnlyWithVringFLog() throws Exception {
        try (FakeVhostUserFrontEnd fe = connectWithLog()) {
            int[] fds = setUpQueue(fe, 0, 0);
            try {
                long usedGpa = device.queue(0).used;
                long logAt = 0x7000;
                fe.sendAddress(NEED_REPLY, 0, VhostUserMessage.VRING_F_LOG, descUser(0), usedUser(0), availUser(0),
                        logAt);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).isZero();
                assertThat(device.queue(0).running).as("a flags-only change keeps the ring running").isTrue();
                device.memory().markDirty(usedGpa + 4, 8);
                assertThat(dirtyPages()).containsExactly(7L);
                clearLog();
                fe.sendAddress(NEED_REPLY, 0, 0, descUser(0), usedUser(0), availUser(0), logAt);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).isZero();
                device.memory().markDirty(usedGpa + 4, 8);
                assertThat(dirtyPages()).as("used ring not logged without VHOST_VRING_F_LOG").isEmpty();
            } finally {
                LinuxNative.close(fds[0]);
                LinuxNative.close(fds[1]);
            }
        }
    }

    @Test
    void loggingFollowsVhostFLogAll() throws Exception {
        try (FakeVhostUserFrontEnd fe = connectWithLog()) {
            fe.sendU64(VhostUserRequest.SET_FEATURES, NEED_REPLY, VirtioFeature.bit(VirtioFeature.VERSION_1)
                    | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES));
            assertThat(fe.replyU64(VhostUserRequest.SET_FEATURES)).isZero();
            device.memory().markDirty(0x1000, 1);
            assertThat(dirtyPages()).isEmpty();
            long setFeatureCalls = device.calls().stream().filter(c -> c.startsWith("setDriverFeatures")).count();
            fe.sendU64(VhostUserRequest.SET_FEATURES, NEED_REPLY, VirtioFeature.bit(VirtioFeature.VERSION_1)
                    | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES) | LOG_ALL);
            assertThat(fe.replyU64(VhostUserRequest.SET_FEATURES)).isZero();
            device.memory().markDirty(0x1000, 1);
            assertThat(dirtyPages()).containsExactly(1L);
            assertThat(device.calls().stream().filter(c -> c.startsWith("setDriverFeatures")).count())
                    .as("toggling LOG_ALL does not renegotiate the device").isEqualTo(setFeatureCalls);
        }
    }

    @Test
    void aLogLargerThanItsFdIsRefused() throws Exception {
        try (FakeVhostUserFrontEnd fe = connectWithLog()) {
            fe.tx.putLong(0, LOG_BYTES * 4L).putLong(8, LOG_OFFSET);
            fe.send(VhostUserRequest.SET_LOG_BASE.id(), FakeVhostUserFrontEnd.PLAIN, 16, logfd);
            assertThat(fe.replyU64(VhostUserRequest.SET_LOG_BASE)).isNotZero();
            // The old log stays in use.
            device.memory().markDirty(0x2000, 1);
            assertThat(dirtyPages()).containsExactly(2L);
        }
    }
}
