package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.Region;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.LinuxNative;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.NEED_REPLY;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.PLAIN;
import static org.virtionetd.glue.vhostuser.VhostUserTestSupport.*;

/** {@link LifecycleCounters}: what a front-end did to the device, counted as the class comment defines it. */
class VhostUserLifecycleTest {
    static final long PROTOCOL = VhostUserServerTest.PROTOCOL;
    static final long LOG_ALL = VhostUserDirtyLogTest.LOG_ALL;
    static final int LOG_BYTES = VhostUserDirtyLogTest.LOG_BYTES;
    static final long LOG_OFFSET = VhostUserDirtyLogTest.LOG_OFFSET;

    @TempDir
    Path dir;
    FakeVirtioDevice device;
    VhostUserServer server;
    LifecycleCounters counters;
    int memfd;
    int logfd;
    long logMap;

    @BeforeEach
    void start() throws Exception {
        device = new FakeVirtioDevice(2);
        server = new VhostUserServer(dir.resolve("lifecycle.sock"), device,
                VhostUserServer.SUPPORTED_PROTOCOL_FEATURES);
        counters = server.lifecycle();
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

    private void memTable(FakeVhostUserFrontEnd fe) throws Exception {
        fe.sendMemTable(NEED_REPLY, twoRegions(), memfd, memfd);
        assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).isZero();
    }

    private void setLogBase(FakeVhostUserFrontEnd fe, long size, long expectedReply) throws Exception {
        fe.tx.putLong(0, size).putLong(8, LOG_OFFSET);
        fe.send(VhostUserRequest.SET_LOG_BASE.id(), PLAIN, 16, logfd);
        long reply = fe.replyU64(VhostUserRequest.SET_LOG_BASE);
        if (expectedReply == 0) {
            assertThat(reply).isZero();
        } else {
            assertThat(reply).isNotZero();
        }
    }

    private void status(FakeVhostUserFrontEnd fe, long status) throws Exception {
        fe.sendU64(VhostUserRequest.SET_STATUS, NEED_REPLY, status);
        assertThat(fe.replyU64(VhostUserRequest.SET_STATUS)).isZero();
    }

    private void region(FakeVhostUserFrontEnd fe, VhostUserRequest r, Region region, long expectedReply)
            throws Exception {
        if (r == VhostUserRequest.ADD_MEM_REG) {
            fe.sendSingleRegion(r, NEED_REPLY, region, memfd);
        } else {
            fe.sendSingleRegion(r, NEED_REPLY, region);
        }
        long reply = fe.replyU64(r);
        if (expectedReply == 0) {
            assertThat(reply).as("%s %s", r, region).isZero();
        } else {
            assertThat(reply).as("%s %s", r, region).isNotZero();
        }
    }

    @Test
    void connectionsReconnectsAndTheMemoryAFormerFrontEndLeft() throws Exception {
        assertThat(counters.snapshot()).containsEntry("connections", 0L).containsEntry("reconnects", 0L);
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            assertThat(counters.connections()).isEqualTo(1);
            assertThat(counters.reconnects()).isZero();
            assertThat(counters.memoryRegions()).isEqualTo(2);
            assertThat(counters.mappedBytes()).isEqualTo(2 * MIB);
        }
        await(() -> counters.disconnects() == 1, () -> "disconnects " + counters.disconnects());
        assertThat(counters.memoryRegions()).as("a gone front-end's memory is unmapped").isZero();
        assertThat(counters.mappedBytes()).isZero();
        assertThat(device.resets()).as("the device is reset at disconnect").isEqualTo(1);
        assertThat(counters.resets()).as("which counts as a disconnect, not as a reset").isZero();

        for (int n = 2; n <= 3; n++) {
            try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
                assertThat(fe.features()).isNotZero();
                assertThat(counters.connections()).isEqualTo(n);
                assertThat(counters.reconnects()).isEqualTo(n - 1);
            }
            int ended = n;
            await(() -> counters.disconnects() == ended, () -> "disconnects " + counters.disconnects());
        }
        assertThat(counters.snapshot()).containsEntry("connections", 3L).containsEntry("reconnects", 2L)
                .containsEntry("disconnects", 3L).containsEntry("memory_table_changes", 1L);
    }

    @Test
    void memoryTableChangesCountWhatChangedTheDevicesMemory() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            Region[] regions = twoRegions();
            region(fe, VhostUserRequest.ADD_MEM_REG, regions[0], 0);
            region(fe, VhostUserRequest.ADD_MEM_REG, regions[1], 0);
            assertThat(counters.memoryTableChanges()).isEqualTo(2);
            assertThat(counters.memoryRegions()).isEqualTo(2);
            assertThat(counters.mappedBytes()).isEqualTo(2 * MIB);
            // QEMU's second queue pair adds and removes the same region: a reference, no change.
            region(fe, VhostUserRequest.ADD_MEM_REG, regions[1], 0);
            region(fe, VhostUserRequest.REM_MEM_REG, regions[1], 0);
            assertThat(counters.memoryTableChanges()).isEqualTo(2);
            assertThat(counters.memoryRegions()).isEqualTo(2);
            // Hot-unplug of region B, then a removal of nothing: refused, not counted.
            region(fe, VhostUserRequest.REM_MEM_REG, regions[1], 0);
            region(fe, VhostUserRequest.REM_MEM_REG, regions[1], 1);
            assertThat(counters.memoryTableChanges()).isEqualTo(3);
            assertThat(counters.memoryRegions()).isEqualTo(1);
            assertThat(counters.mappedBytes()).isEqualTo(MIB);
            // A whole table again.
            memTable(fe);
            assertThat(counters.memoryTableChanges()).isEqualTo(4);
            assertThat(counters.memoryRegions()).isEqualTo(2);
            assertThat(counters.mappedBytes()).isEqualTo(2 * MIB);
        }
        await(() -> counters.disconnects() == 1, () -> "disconnects " + counters.disconnects());
        assertThat(counters.snapshot()).containsEntry("memory_table_changes", 4L)
                .containsEntry("memory_regions", 0L).containsEntry("mapped_bytes", 0L);
    }

    @Test
    void resetsCountSetStatusZeroAndResetDeviceOfAnInitialisedDevice() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            // Before anything: the device is in its initial state, a reset changes nothing.
            fe.sendNoPayload(VhostUserRequest.SET_OWNER, PLAIN);
            fe.sendU64(VhostUserRequest.SET_STATUS, PLAIN, 0); // no REPLY_ACK yet: a round trip instead
            assertThat(fe.features()).isNotZero();
            assertThat(device.calls()).contains("setStatus 0");
            assertThat(counters.resets()).isZero();

            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            closeBoth(setUpQueue(fe, 0, 0));
            status(fe, 0xf); // ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK, as QEMU's vhost_dev_start adds
            status(fe, 0); // QEMU 7.2's vhost_dev_stop: VM stop, migration, reboot
            assertThat(counters.resets()).isEqualTo(1);
            status(fe, 0);
            assertThat(counters.resets()).as("a second SET_STATUS 0 finds the device reset").isEqualTo(1);

            // Without STATUS the features are what leaves the initial state.
            fe.sendU64(VhostUserRequest.SET_FEATURES, NEED_REPLY, VirtioFeature.bit(VirtioFeature.VERSION_1));
            assertThat(fe.replyU64(VhostUserRequest.SET_FEATURES)).isZero();
            fe.sendNoPayload(VhostUserRequest.RESET_OWNER, PLAIN);
            assertThat(fe.features()).isNotZero();
            assertThat(counters.resets()).as("RESET_OWNER only disables the rings").isEqualTo(1);
            fe.sendNoPayload(VhostUserRequest.RESET_DEVICE, NEED_REPLY);
            assertThat(fe.replyU64(VhostUserRequest.RESET_DEVICE)).isZero();
            assertThat(counters.resets()).isEqualTo(2);
            fe.sendNoPayload(VhostUserRequest.RESET_DEVICE, NEED_REPLY);
            assertThat(fe.replyU64(VhostUserRequest.RESET_DEVICE)).isZero();
            assertThat(counters.resets()).as("RESET_DEVICE of a reset device").isEqualTo(2);
            assertThat(counters.snapshot()).containsEntry("resets", 2L);
        }
    }

    @Test
    void dirtyPagesLoggedAreTheBitsTheDeviceSetWhileALogIsInstalled() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, LOG_ALL);
            memTable(fe);
            GuestMemory memory = device.memory();
            memory.markDirty(0x5000, 0x1000);
            assertThat(counters.dirtyPagesLogged()).as("no log yet").isZero();

            setLogBase(fe, LOG_BYTES, 0);
            assertThat(counters.logBaseChanges()).isEqualTo(1);
            memory = device.memory();
            memory.markDirty(0x5000, 0x2001); // pages 5, 6, 7
            memory.markDirty(0x6000, 0x10); // page 6 again: already set
            memory.markDirty(0x3f000, 0x3000); // pages 63, 64, 65 across a 64-bit word
            assertThat(counters.dirtyPagesLogged()).isEqualTo(6);
            memory.write(0x80ff0, new byte[0x20], 0, 0x20); // the device's copy path: pages 0x80, 0x81
            assertThat(counters.dirtyPagesLogged()).isEqualTo(8);
            assertThat(VhostUserDirtyLogTest.dirtyPages(logMap + LOG_OFFSET)).hasSize(8);
            memory.markDirty(GPA_B, 4096); // beyond the log: nothing set
            assertThat(counters.dirtyPagesLogged()).isEqualTo(8);

            // The front-end syncs (reads and clears) the log: a page written again counts again.
            VhostUserDirtyLogTest.clearLog(logMap + LOG_OFFSET);
            memory.markDirty(0x5000, 1);
            assertThat(counters.dirtyPagesLogged()).isEqualTo(9);

            // A refused log is not a change; a new one is, and the count goes on.
            setLogBase(fe, LOG_BYTES * 4L, 1);
            assertThat(counters.logBaseChanges()).isEqualTo(1);
            setLogBase(fe, LOG_BYTES, 0);
            assertThat(counters.logBaseChanges()).isEqualTo(2);
            VhostUserDirtyLogTest.clearLog(logMap + LOG_OFFSET);
            device.memory().markDirty(0x9000, 1);
            assertThat(counters.dirtyPagesLogged()).isEqualTo(10);

            // VHOST_F_LOG_ALL off: the log stays but nothing is marked, nothing counted.
            fe.sendU64(VhostUserRequest.SET_FEATURES, NEED_REPLY, VirtioFeature.bit(VirtioFeature.VERSION_1)
                    | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES));
            assertThat(fe.replyU64(VhostUserRequest.SET_FEATURES)).isZero();
            device.memory().markDirty(0xa000, 1);
            assertThat(counters.dirtyPagesLogged()).isEqualTo(10);
        }
        await(() -> counters.disconnects() == 1, () -> "disconnects " + counters.disconnects());
        assertThat(counters.snapshot()).containsEntry("dirty_pages_logged", 10L)
                .containsEntry("log_base_changes", 2L);
    }

    @Test
    void concurrentMarksCountEveryPageOnce() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, LOG_ALL);
            memTable(fe);
            setLogBase(fe, LOG_BYTES, 0);
            GuestMemory memory = device.memory();
            Thread[] threads = new Thread[4];
            for (int t = 0; t < threads.length; t++) {
                // Every thread marks every page of the same words, each starting elsewhere: each bit is set once.
                int first = t * 1024;
                threads[t] = new Thread(() -> {
                    for (long i = 0; i < 4096; i++) {
                        memory.markDirty(((first + i) % 4096) * 4096, 1);
                    }
                });
                threads[t].start();
            }
            for (Thread t : threads) {
                t.join();
            }
            assertThat(VhostUserDirtyLogTest.dirtyPages(logMap + LOG_OFFSET)).hasSize(4096);
            assertThat(counters.dirtyPagesLogged()).isEqualTo(4096);
        }
    }

    private static void closeBoth(int[] fds) {
        LinuxNative.close(fds[0]);
        LinuxNative.close(fds[1]);
    }
}
