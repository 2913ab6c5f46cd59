package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.Region;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemoryRegion;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;

import java.nio.file.Path;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.NEED_REPLY;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.PLAIN;
import static org.virtionetd.glue.vhostuser.VhostUserTestSupport.*;

class VhostUserServerTest {
    static final long PROTOCOL = VhostUserProtocolFeature.maskOf(VhostUserProtocolFeature.MQ,
            VhostUserProtocolFeature.REPLY_ACK, VhostUserProtocolFeature.LOG_SHMFD, VhostUserProtocolFeature.CONFIG,
            VhostUserProtocolFeature.MTU, VhostUserProtocolFeature.RARP, VhostUserProtocolFeature.STATUS,
            VhostUserProtocolFeature.RESET_DEVICE, VhostUserProtocolFeature.CONFIGURE_MEM_SLOTS);

    @TempDir
    Path dir;
    FakeVirtioDevice device;
    VhostUserServer server;
    int memfd = -1;

    @BeforeEach
    void start() throws Exception {
        device = new FakeVirtioDevice(2);
        server = new VhostUserServer(dir.resolve("vhost.sock"), device,
                VhostUserServer.SUPPORTED_PROTOCOL_FEATURES);
        server.start();
        memfd = guestMemfd();
    }

    @AfterEach
    void stop() {
        server.close();
        LinuxNative.close(memfd);
        assertThat(device.violations()).as("order violations seen by the device").isEmpty();
    }

    private void memTable(FakeVhostUserFrontEnd fe) throws Exception {
        fe.sendMemTable(NEED_REPLY, twoRegions(), memfd, memfd);
        assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).isZero();
    }

    @Test
    void qemuLikeSequenceReachesTheDeviceWithGuestPhysicalAddresses() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            assertThat(fe.features()).isEqualTo(FakeVirtioDevice.OFFERED
                    | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES)
                    | VirtioFeature.bit(VirtioFeature.VHOST_F_LOG_ALL));
            negotiate(fe, PROTOCOL, VirtioFeature.bit(0));
            fe.sendNoPayload(VhostUserRequest.GET_QUEUE_NUM, PLAIN);
            assertThat(fe.replyU64(VhostUserRequest.GET_QUEUE_NUM)).as("queue pairs").isEqualTo(1);
            memTable(fe);
            int[] q0 = setUpQueue(fe, 0, 7);
            int[] q1 = setUpQueue(fe, 1, 0);
            try {
                // Started, but disabled until SET_VRING_ENABLE (PROTOCOL_FEATURES negotiated).
                assertThat(device.queue(0).running).isTrue();
                assertThat(device.queue(0).enabled).isFalse();
                fe.sendState(VhostUserRequest.SET_VRING_ENABLE, NEED_REPLY, 0, 1);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ENABLE)).isZero();
                fe.sendState(VhostUserRequest.SET_VRING_ENABLE, NEED_REPLY, 1, 1);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ENABLE)).isZero();

                assertThat(device.ackedFeatures()).isEqualTo(
                        VirtioFeature.bit(VirtioFeature.VERSION_1) | VirtioFeature.bit(0));
                GuestMemory memory = device.memory();
                assertThat(memory.regions()).extracting(MemoryRegion::guestAddress).containsExactly(GPA_A, GPA_B);
                assertThat(memory.regions()).extracting(MemoryRegion::userAddress).containsExactly(USER_A, USER_B);
                for (int q = 0; q < 2; q++) {
                    FakeVirtioDevice.Queue queue = device.queue(q);
                    assertThat(queue.size).isEqualTo(QUEUE_SIZE);
                    assertThat(queue.desc).isEqualTo(gpaOfUserB(descUser(q)));
                    assertThat(queue.avail).isEqualTo(gpaOfUserB(availUser(q)));
                    assertThat(queue.used).isEqualTo(gpaOfUserB(usedUser(q)));
                    assertThat(queue.running).isTrue();
                    assertThat(queue.enabled).isTrue();
                    assertThat(queue.kick).isNotNull();
                }
                assertThat(device.queue(0).nextAvail).isEqualTo(7);

                // The region maps the memfd at its mmap offset: bytes written by the front-end are seen at gpa.
                long hostB = LinuxNative.mmapShared(memfd, 0, 2 * MIB);
                try {
                    new com.sun.jna.Pointer(hostB).setLong(MIB + 0x123 * 8, 0x1122334455667788L);
                    byte[] b = new byte[8];
                    memory.read(GPA_B + 0x123 * 8, b, 0, 8);
                    assertThat(java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong())
                            .isEqualTo(0x1122334455667788L);
                } finally {
                    LinuxNative.munmap(hostB, 2 * MIB);
                }

                // The kick eventfd the device got is the front-end's; the notifier signals the front-end's call.
                EventFd frontKick = EventFd.adopt(LinuxNative.dup(q0[0]));
                EventFd frontCall = EventFd.adopt(LinuxNative.dup(q0[1]));
                try {
                    frontKick.signal();
                    assertThat(device.queue(0).kick.drain()).isEqualTo(1);
                    device.queue(0).notifier.notifyUsed();
                    assertThat(frontCall.drain()).isEqualTo(1);
                } finally {
                    frontKick.close();
                    frontCall.close();
                }

                List<String> calls = device.calls();
                assertThat(calls.indexOf("setMemory 2")).isLessThan(calls.indexOf(
                        "setQueue 0 256 0x" + Long.toHexString(gpaOfUserB(descUser(0))) + " 0x"
                                + Long.toHexString(gpaOfUserB(availUser(0))) + " 0x"
                                + Long.toHexString(gpaOfUserB(usedUser(0)))));
                assertThat(calls).containsSubsequence("setQueueBase 0 7", "startQueue 0 kick",
                        "setQueueEnabled 0 false", "setNotifier 0 call", "setQueueEnabled 0 true");
            } finally {
                for (int fd : new int[] {q0[0], q0[1], q1[0], q1[1]}) {
                    LinuxNative.close(fd);
                }
            }
        }
    }

    /** The front-end's own copies of a ring's kick and call fds; the server has its own. */
    private static void closeBoth(int[] fds) {
        LinuxNative.close(fds[0]);
        LinuxNative.close(fds[1]);
    }

    /**
     * The transport keeps no copy of a queue's base or enabled state: after SET_STATUS 0 (a device reset, 2.1.2) a
     * ring is initialized again, disabled until SET_VRING_ENABLE when PROTOCOL_FEATURES was negotiated whatever it
     * was before, and its base is the one given since.
     */
    @Test
    void aDeviceResetInitializesTheRingsAgain() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            closeBoth(setUpQueue(fe, 0, 7));
            fe.sendState(VhostUserRequest.SET_VRING_ENABLE, NEED_REPLY, 0, 1);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ENABLE)).isZero();
            assertThat(device.queue(0).enabled).isTrue();
            fe.sendU64(VhostUserRequest.SET_STATUS, NEED_REPLY, 0);
            assertThat(fe.replyU64(VhostUserRequest.SET_STATUS)).isZero();
            assertThat(device.queue(0).running).isFalse();

            closeBoth(setUpQueue(fe, 0, 3));
            assertThat(device.queue(0).running).isTrue();
            assertThat(device.queue(0).enabled).as("enabled state after the reset").isFalse();
            fe.sendState(VhostUserRequest.GET_VRING_BASE, PLAIN, 0, 0);
            assertThat(fe.reply().stateNum()).isEqualTo(3);
        }
    }

    @Test
    void getVringBaseStopsTheRingAndReturnsTheDevicesNextAvailIndex() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            int[] fds = setUpQueue(fe, 0, 100);
            try {
                device.advance(0, 42);
                fe.sendState(VhostUserRequest.GET_VRING_BASE, PLAIN, 0, 0);
                VhostUserMessage r = fe.reply();
                assertThat(r.request()).isEqualTo(VhostUserRequest.GET_VRING_BASE.id());
                assertThat(r.size()).isEqualTo(8);
                assertThat(r.stateIndex()).isZero();
                assertThat(r.stateNum()).isEqualTo(142);
                assertThat(device.queue(0).running).isFalse();
                assertThat(device.calls()).as("stopped, not paused").contains("stopQueue 0")
                        .doesNotContain("pauseQueue 0");

                // Restart with a new kick (QEMU's restart after stop): the device resumes at the given base.
                fe.sendState(VhostUserRequest.SET_VRING_BASE, NEED_REPLY, 0, 142);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).isZero();
                int kick = LinuxNative.eventfd();
                fe.sendU64(VhostUserRequest.SET_VRING_KICK, NEED_REPLY, 0, kick);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_KICK)).isZero();
                LinuxNative.close(kick);
                assertThat(device.queue(0).running).isTrue();
                assertThat(device.queue(0).nextAvail).isEqualTo(142);

                // A stopped ring that never ran answers with the base it was given.
                fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, 1, 64);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isZero();
                fe.sendState(VhostUserRequest.SET_VRING_BASE, NEED_REPLY, 1, 9);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).isZero();
                fe.sendState(VhostUserRequest.GET_VRING_BASE, NEED_REPLY, 1, 0);
                r = fe.reply();
                assertThat(r.stateIndex()).isEqualTo(1);
                assertThat(r.stateNum()).isEqualTo(9);
                // No REPLY_ACK on top of an explicit reply: the next reply answers the next request.
                assertThat(fe.features()).isNotZero();
            } finally {
                LinuxNative.close(fds[0]);
                LinuxNative.close(fds[1]);
            }
        }
    }

    @Test
    void replyAckAnswersZeroOnSuccessAndNonZeroOnFailureOnlyWhenNegotiated() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            // Without REPLY_ACK, NEED_REPLY on a request without reply body gets nothing.
            negotiate(fe, VhostUserProtocolFeature.MQ.mask(), 0);
            fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, 0, 256);
            assertThat(fe.features()).as("the next reply is GET_FEATURES'").isNotZero();

            fe.sendU64(VhostUserRequest.SET_PROTOCOL_FEATURES, PLAIN, PROTOCOL);
            fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, 0, 256);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isZero();
            fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, 5, 256);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).as("queue 5 of 2").isNotZero();
            fe.sendU64(VhostUserRequest.SET_FEATURES, NEED_REPLY, 1L << 60);
            assertThat(fe.replyU64(VhostUserRequest.SET_FEATURES)).as("feature not offered").isNotZero();
            fe.sendU64(VhostUserRequest.SET_PROTOCOL_FEATURES, NEED_REPLY, 1L << 40);
            assertThat(fe.replyU64(VhostUserRequest.SET_PROTOCOL_FEATURES)).isNotZero();
            // Without NEED_REPLY, a refused request answers nothing and the connection goes on.
            fe.sendState(VhostUserRequest.SET_VRING_NUM, PLAIN, 5, 256);
            assertThat(fe.features()).isNotZero();
            assertThat(server.connections()).isEqualTo(1);
        }
    }

    @Test
    void ringsStartEnabledWhenProtocolFeaturesWereNotNegotiated() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            fe.sendNoPayload(VhostUserRequest.SET_OWNER, PLAIN);
            fe.sendU64(VhostUserRequest.SET_FEATURES, PLAIN, VirtioFeature.bit(VirtioFeature.VERSION_1));
            fe.sendMemTable(PLAIN, twoRegions(), memfd, memfd);
            fe.sendState(VhostUserRequest.SET_VRING_NUM, PLAIN, 0, 128);
            fe.sendState(VhostUserRequest.SET_VRING_BASE, PLAIN, 0, 0);
            fe.sendAddress(PLAIN, 0, 0, descUser(0), usedUser(0), availUser(0), 0);
            // No fd: the device polls the ring (bit 8 of the u64).
            fe.sendU64(VhostUserRequest.SET_VRING_KICK, PLAIN, 0x100);
            fe.sendU64(VhostUserRequest.SET_VRING_CALL, PLAIN, 0x100);
            fe.features();
            FakeVirtioDevice.Queue q = device.queue(0);
            assertThat(q.running).isTrue();
            assertThat(q.enabled).isTrue();
            assertThat(q.kick).as("polling: no kick fd").isNull();
            assertThat(device.calls()).contains("startQueue 0 poll", "setNotifier 0 none");
        }
    }

    /** Found by the vhost-user fuzzer: a memfd as the kick fd could not be polled and the pair's loop never ran. */
    @Test
    void aKickFdThatIsNotAnEventfdIsRefusedAndTheQueueStaysStopped() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            fe.sendState(VhostUserRequest.SET_VRING_NUM, PLAIN, 0, 128);
            fe.sendState(VhostUserRequest.SET_VRING_BASE, PLAIN, 0, 0);
            fe.sendAddress(PLAIN, 0, 0, descUser(0), usedUser(0), availUser(0), 0);
            fe.sendU64(VhostUserRequest.SET_VRING_KICK, NEED_REPLY, 0, memfd);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_KICK)).as("a memfd kick").isNotZero();
            assertThat(device.queue(0).running).isFalse();
            EventFd kick = EventFd.create();
            try {
                fe.sendU64(VhostUserRequest.SET_VRING_KICK, NEED_REPLY, 0, kick.fd());
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_KICK)).as("an eventfd kick").isZero();
                assertThat(device.queue(0).running).isTrue();
            } finally {
                kick.close();
            }
        }
    }

    @Test
    void callFdIsReplacedUnderARunningQueueAndTheNotifierSignalsTheNewOne() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            int[] fds = setUpQueue(fe, 0, 0);
            EventFd oldCall = EventFd.adopt(fds[1]);
            EventFd newCall = EventFd.create();
            try {
                var notifier = device.queue(0).notifier;
                fe.sendU64(VhostUserRequest.SET_VRING_CALL, NEED_REPLY, 0, newCall.fd());
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_CALL)).isZero();
                // Even the notifier the device held before the change reaches the new eventfd.
                notifier.notifyUsed();
                assertThat(newCall.drain()).isEqualTo(1);
                assertThat(oldCall.drain()).isZero();
                assertThat(device.queue(0).running).as("call changes do not stop the ring").isTrue();
                // "no fd": notifications off.
                fe.sendU64(VhostUserRequest.SET_VRING_CALL, NEED_REPLY, 0x100);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_CALL)).isZero();
                device.queue(0).notifier.notifyUsed();
                assertThat(newCall.drain()).isZero();
            } finally {
                LinuxNative.close(fds[0]);
                oldCall.close();
                newCall.close();
            }
        }
    }

    @Test
    void disconnectStopsQueuesResetsTheDeviceAndTheNextFrontEndIsServed() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            int[] fds = setUpQueue(fe, 0, 0);
            LinuxNative.close(fds[0]);
            LinuxNative.close(fds[1]);
            assertThat(server.connected()).isTrue();
        }
        await(() -> server.disconnects() == 1, () -> "disconnects " + server.disconnects());
        assertThat(device.resets()).isEqualTo(1);
        assertThat(device.anyRunning()).isFalse();
        assertThat(device.calls()).containsSubsequence("stopQueue 0", "reset", "setMemory 0");
        assertThat(server.connected()).isFalse();

        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            int[] fds = setUpQueue(fe, 1, 3);
            LinuxNative.close(fds[0]);
            LinuxNative.close(fds[1]);
            assertThat(device.queue(1).running).isTrue();
            assertThat(server.connections()).isEqualTo(2);
        }
        await(() -> server.disconnects() == 2, () -> "disconnects " + server.disconnects());
    }

    @Test
    void aFaultInsideTheDeviceFailsTheRequestAndTheSocketKeepsServing() throws Exception {
        device.rarpFault = new IllegalStateException("header length mismatch (a bug of the device)");
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            fe.tx.putBytes(0, new byte[] {0x52, 0x54, 0, 1, 2, 3, 0, 0});
            fe.send(VhostUserRequest.SEND_RARP.id(), NEED_REPLY, 8);
            assertThat(fe.replyU64(VhostUserRequest.SEND_RARP)).as("REPLY_ACK of the failed request").isNotZero();
            fe.sendNoPayload(VhostUserRequest.GET_MAX_MEM_SLOTS, PLAIN);
            assertThat(fe.replyU64(VhostUserRequest.GET_MAX_MEM_SLOTS)).as("the connection still serves")
                    .isEqualTo(VhostUserServer.MAX_MEM_SLOTS);
        }
        device.rarpFault = null;
        await(() -> server.disconnects() == 1, () -> "disconnects " + server.disconnects());
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            fe.sendNoPayload(VhostUserRequest.GET_MAX_MEM_SLOTS, PLAIN);
            assertThat(fe.replyU64(VhostUserRequest.GET_MAX_MEM_SLOTS)).as("the socket serves a new front-end")
                    .isEqualTo(VhostUserServer.MAX_MEM_SLOTS);
        }
    }

    @Test
    void configStatusMtuAndRarp() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            fe.tx.putInt(0, 0).putInt(4, 6).putInt(8, 0);
            fe.send(VhostUserRequest.GET_CONFIG.id(), PLAIN, 12 + 6);
            VhostUserMessage r = fe.reply();
            assertThat(r.size()).isEqualTo(18);
            assertThat(r.configSize()).isEqualTo(6);
            assertThat(r.configPayload()).containsExactly(0x52, 0x54, 0, 0x12, 0x34, 0x56);
            // Beyond the config space: zero-length payload is the error.
            fe.tx.putInt(0, 8).putInt(4, 16).putInt(8, 0);
            fe.send(VhostUserRequest.GET_CONFIG.id(), PLAIN, 12 + 16);
            assertThat(fe.reply().size()).isZero();
            // SET_CONFIG of the mac, then read back.
            fe.tx.putInt(0, 0).putInt(4, 2).putInt(8, 0).putBytes(12, new byte[] {0x02, 0x11});
            fe.send(VhostUserRequest.SET_CONFIG.id(), NEED_REPLY, 14);
            assertThat(fe.replyU64(VhostUserRequest.SET_CONFIG)).isZero();
            fe.tx.putInt(0, 8).putInt(4, 2).putInt(8, 0).putBytes(12, new byte[] {1, 1});
            fe.send(VhostUserRequest.SET_CONFIG.id(), NEED_REPLY, 14);
            assertThat(fe.replyU64(VhostUserRequest.SET_CONFIG)).as("read-only field").isNotZero();

            fe.sendU64(VhostUserRequest.NET_SET_MTU, NEED_REPLY, 9000);
            assertThat(fe.replyU64(VhostUserRequest.NET_SET_MTU)).isZero();
            assertThat(device.mtu()).isEqualTo(9000);
            fe.sendU64(VhostUserRequest.NET_SET_MTU, NEED_REPLY, 10);
            assertThat(fe.replyU64(VhostUserRequest.NET_SET_MTU)).isNotZero();

            fe.tx.putBytes(0, new byte[] {0x52, 0x54, 0, 1, 2, 3, 0, 0});
            fe.send(VhostUserRequest.SEND_RARP.id(), NEED_REPLY, 8);
            assertThat(fe.replyU64(VhostUserRequest.SEND_RARP)).isZero();
            assertThat(device.rarp()).containsExactly(0x52, 0x54, 0, 1, 2, 3);

            fe.sendU64(VhostUserRequest.SET_STATUS, NEED_REPLY, 0xf);
            assertThat(fe.replyU64(VhostUserRequest.SET_STATUS)).isZero();
            fe.sendNoPayload(VhostUserRequest.GET_STATUS, PLAIN);
            assertThat(fe.replyU64(VhostUserRequest.GET_STATUS)).isEqualTo(0xf);
            fe.sendNoPayload(VhostUserRequest.GET_MAX_MEM_SLOTS, PLAIN);
            assertThat(fe.replyU64(VhostUserRequest.GET_MAX_MEM_SLOTS)).isEqualTo(VhostUserServer.MAX_MEM_SLOTS);
        }
    }

    @Test
    void memoryChangesUnderRunningQueuesStopRetranslateAndRestartThem() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            // CONFIGURE_MEM_SLOTS: QEMU adds regions one by one.
            Region[] regions = twoRegions();
            fe.sendSingleRegion(VhostUserRequest.ADD_MEM_REG, NEED_REPLY, regions[0], memfd);
            assertThat(fe.replyU64(VhostUserRequest.ADD_MEM_REG)).isZero();
            fe.sendSingleRegion(VhostUserRequest.ADD_MEM_REG, NEED_REPLY, regions[1], memfd);
            assertThat(fe.replyU64(VhostUserRequest.ADD_MEM_REG)).isZero();
            assertThat(device.memory().regions()).hasSize(2);
            int[] fds = setUpQueue(fe, 0, 0);
            try {
                device.advance(0, 5);
                // Region B moves to another guest-physical address (same user address): the ring moves too.
                fe.sendSingleRegion(VhostUserRequest.REM_MEM_REG, NEED_REPLY, regions[1]);
                assertThat(fe.replyU64(VhostUserRequest.REM_MEM_REG)).isZero();
                assertThat(device.memory().regions()).hasSize(1);
                assertThat(device.queue(0).running).as("its ring left guest memory").isFalse();
                long newGpa = 0x2_0000_0000L;
                fe.sendSingleRegion(VhostUserRequest.ADD_MEM_REG, NEED_REPLY,
                        new Region(newGpa, MIB, USER_B, MIB), memfd);
                assertThat(fe.replyU64(VhostUserRequest.ADD_MEM_REG)).isZero();
                FakeVirtioDevice.Queue q = device.queue(0);
                assertThat(q.running).isTrue();
                assertThat(q.desc).isEqualTo(newGpa + (descUser(0) - USER_B));
                assertThat(q.nextAvail).as("resumed where it stopped").isEqualTo(5);
                // Unknown region: refused.
                fe.sendSingleRegion(VhostUserRequest.REM_MEM_REG, NEED_REPLY, new Region(0x9000_0000L, MIB, 0, 0));
                assertThat(fe.replyU64(VhostUserRequest.REM_MEM_REG)).isNotZero();
                // A whole new table while running.
                fe.sendMemTable(NEED_REPLY, twoRegions(), memfd, memfd);
                assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).isZero();
                assertThat(device.queue(0).running).isTrue();
                assertThat(device.queue(0).desc).isEqualTo(gpaOfUserB(descUser(0)));
                // Paused, not stopped: the driver runs on, so the device keeps what its backend queued meanwhile.
                assertThat(device.calls()).contains("pauseQueue 0").doesNotContain("stopQueue 0");
            } finally {
                LinuxNative.close(fds[0]);
                LinuxNative.close(fds[1]);
            }
        }
    }

    @Test
    void eachQueuePairsVhostDeviceMayAddAndRemoveTheSameRegions() throws Exception {
        // QEMU with queues=2 keeps one vhost device per pair on the connection, each with its own shadow of the
        // memory table: every region is added twice and removed twice. The second add is one more reference.
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            Region[] regions = twoRegions();
            for (int pair = 0; pair < 2; pair++) {
                for (Region r : regions) {
                    fe.sendSingleRegion(VhostUserRequest.ADD_MEM_REG, NEED_REPLY, r, memfd);
                    assertThat(fe.replyU64(VhostUserRequest.ADD_MEM_REG)).as("pair %d adds %s", pair, r).isZero();
                }
            }
            assertThat(device.memory().regions()).hasSize(2);
            int[] fds = setUpQueue(fe, 0, 0);
            try {
                fe.sendSingleRegion(VhostUserRequest.REM_MEM_REG, NEED_REPLY, regions[1]);
                assertThat(fe.replyU64(VhostUserRequest.REM_MEM_REG)).isZero();
                assertThat(device.memory().regions()).as("the other pair still has region B").hasSize(2);
                assertThat(device.queue(0).running).as("nothing changed for the ring").isTrue();
                fe.sendSingleRegion(VhostUserRequest.REM_MEM_REG, NEED_REPLY, regions[1]);
                assertThat(fe.replyU64(VhostUserRequest.REM_MEM_REG)).isZero();
                assertThat(device.memory().regions()).as("last reference to B gone").hasSize(1);
                fe.sendSingleRegion(VhostUserRequest.REM_MEM_REG, NEED_REPLY, regions[1]);
                assertThat(fe.replyU64(VhostUserRequest.REM_MEM_REG)).as("a third removal").isNotZero();
            } finally {
                LinuxNative.close(fds[0]);
                LinuxNative.close(fds[1]);
            }
        }
    }

    @Test
    void resetDeviceStopsRingsAndClearsFeaturesButKeepsTheSession() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            memTable(fe);
            int[] fds = setUpQueue(fe, 0, 0);
            LinuxNative.close(fds[0]);
            LinuxNative.close(fds[1]);
            fe.sendNoPayload(VhostUserRequest.RESET_DEVICE, NEED_REPLY);
            assertThat(fe.replyU64(VhostUserRequest.RESET_DEVICE)).isZero();
            assertThat(device.anyRunning()).isFalse();
            assertThat(device.resets()).isEqualTo(1);
            assertThat(device.memory()).as("memory given back after the reset").isNotNull();
            // The front-end sets the rings up again on the same connection.
            fe.sendU64(VhostUserRequest.SET_FEATURES, NEED_REPLY, VirtioFeature.bit(VirtioFeature.VERSION_1));
            assertThat(fe.replyU64(VhostUserRequest.SET_FEATURES)).isZero();
            fds = setUpQueue(fe, 0, 0);
            LinuxNative.close(fds[0]);
            LinuxNative.close(fds[1]);
            assertThat(device.queue(0).running).isTrue();
        }
    }
}
