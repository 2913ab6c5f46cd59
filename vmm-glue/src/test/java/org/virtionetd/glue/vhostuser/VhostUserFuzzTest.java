package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.Region;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.NEED_REPLY;
import static org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.PLAIN;
import static org.virtionetd.glue.vhostuser.VhostUserTestSupport.*;

/**
 * Hostile front-ends: lying sizes, wrong fd counts, unknown requests, bad memory tables, bad rings. Each ends in an
 * error reply or a closed connection; the server keeps serving the next front-end and no fd is left open.
 */
class VhostUserFuzzTest {
    static final long PROTOCOL = VhostUserServerTest.PROTOCOL;
    static final int SESSIONS = 40;

    @TempDir
    Path dir;
    FakeVirtioDevice device;
    VhostUserServer server;
    int memfd;
    long fdsBefore;

    @BeforeEach
    void start() throws Exception {
        device = new FakeVirtioDevice(2);
        server = new VhostUserServer(dir.resolve("fuzz.sock"), device,
                VhostUserServer.SUPPORTED_PROTOCOL_FEATURES);
        server.start();
        memfd = guestMemfd();
        // Warm up: one full session so that lazily opened JVM files (jars, JNA) are open before counting.
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            fe.sendMemTable(NEED_REPLY, twoRegions(), memfd, memfd);
            fe.replyU64(VhostUserRequest.SET_MEM_TABLE);
            int[] fds = setUpQueue(fe, 0, 0);
            LinuxNative.close(fds[0]);
            LinuxNative.close(fds[1]);
        }
        awaitDisconnects(1);
        fdsBefore = openFds();
    }

    @AfterEach
    void stop() {
        try {
            // Every session has ended: all fds the server received are closed again.
            await(() -> openFds() == fdsBefore, () -> "open fds " + openFds() + ", before " + fdsBefore + ": "
                    + fdList());
            assertThat(device.violations()).isEmpty();
        } finally {
            server.close();
            LinuxNative.close(memfd);
        }
    }

    void awaitDisconnects(long n) {
        await(() -> server.disconnects() == n, () -> "disconnects " + server.disconnects() + ", expected " + n);
    }

    /** The connection was closed by the server, and a new front-end is served normally. */
    void assertClosedAndServerStillServes(FakeVhostUserFrontEnd fe) throws IOException {
        assertThat(fe.closedByPeer()).isTrue();
        fe.close();
        long disconnects = server.disconnects();
        try (FakeVhostUserFrontEnd next = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(next, PROTOCOL, 0);
        }
        awaitDisconnects(disconnects + 1);
    }

    @Test
    void lyingSizesCloseTheConnection() throws Exception {
        FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath());
        fe.sendRaw(VhostUserRequest.SET_FEATURES.id(), PLAIN, 4, new byte[4], new int[0]);
        assertClosedAndServerStillServes(fe);

        fe = FakeVhostUserFrontEnd.connect(server.socketPath());
        fe.sendRaw(VhostUserRequest.SET_VRING_ADDR.id(), PLAIN, 48, new byte[48], new int[0]);
        assertClosedAndServerStillServes(fe);

        // A size far beyond any message: refused before reading the payload.
        fe = FakeVhostUserFrontEnd.connect(server.socketPath());
        fe.sendRaw(VhostUserRequest.SET_MEM_TABLE.id(), PLAIN, 0x7fff_0000, new byte[64], new int[0]);
        assertClosedAndServerStillServes(fe);

        // A header cut short by the front-end going away.
        fe = FakeVhostUserFrontEnd.connect(server.socketPath());
        fe.tx.header(1, 1, 0);
        fe.send(VhostUserRequest.GET_FEATURES.id(), PLAIN, 0);
        fe.replyU64(VhostUserRequest.GET_FEATURES);
        fe.sendRaw(VhostUserRequest.SET_FEATURES.id(), PLAIN, 8, new byte[4], new int[0]);
        fe.close();
    }

    @Test
    void wrongFdCountsCloseTheConnectionAndTheFdsAreClosed() throws Exception {
        int e1 = LinuxNative.eventfd();
        int e2 = LinuxNative.eventfd();
        try {
            FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath());
            fe.sendU64(VhostUserRequest.SET_VRING_KICK, PLAIN, 0, e1, e2);
            assertClosedAndServerStillServes(fe);

            fe = FakeVhostUserFrontEnd.connect(server.socketPath());
            fe.sendU64(VhostUserRequest.SET_VRING_CALL, PLAIN, 0);
            assertClosedAndServerStillServes(fe);

            fe = FakeVhostUserFrontEnd.connect(server.socketPath());
            fe.sendNoPayload(VhostUserRequest.SET_OWNER, PLAIN, e1);
            assertClosedAndServerStillServes(fe);

            fe = FakeVhostUserFrontEnd.connect(server.socketPath());
            fe.sendMemTable(PLAIN, twoRegions(), memfd);
            assertClosedAndServerStillServes(fe);

            // More fds than any message may carry: the kernel truncates, the rest are closed.
            fe = FakeVhostUserFrontEnd.connect(server.socketPath());
            int[] many = new int[12];
            java.util.Arrays.fill(many, e1);
            fe.sendRaw(VhostUserRequest.SET_OWNER.id(), PLAIN, 0, new byte[0], many);
            assertClosedAndServerStillServes(fe);
        } finally {
            LinuxNative.close(e1);
            LinuxNative.close(e2);
        }
    }

    @Test
    void unknownAndUnsupportedRequestsGetAnErrorReplyAndTheConnectionGoesOn() throws Exception {
        int e1 = LinuxNative.eventfd();
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            fe.sendRaw(99, NEED_REPLY, 5, new byte[5], new int[0]);
            VhostUserMessage r = fe.reply();
            assertThat(r.request()).isEqualTo(99);
            assertThat(r.u64()).isNotZero();
            fe.sendRaw(99, PLAIN, 3, new byte[3], new int[] {e1});
            fe.sendRaw(VhostUserRequest.IOTLB_MSG.id(), NEED_REPLY, 32, new byte[32], new int[0]);
            assertThat(fe.replyU64(VhostUserRequest.IOTLB_MSG)).isNotZero();
            fe.sendRaw(VhostUserRequest.SET_BACKEND_REQ_FD.id(), PLAIN, 0, new byte[0], new int[] {e1});
            assertThat(fe.features()).isNotZero();
            // Version other than 1 is malformed.
            fe.sendRaw(VhostUserRequest.GET_FEATURES.id(), 2, 0, new byte[0], new int[0]);
            assertClosedAndServerStillServes(fe);
        } finally {
            LinuxNative.close(e1);
        }
    }

    @Test
    void badMemoryTablesAreRefusedAndTheOldTableStays() throws Exception {
        int small = LinuxNative.memfdCreate("small", 64 * 1024);
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            fe.sendMemTable(NEED_REPLY, twoRegions(), memfd, memfd);
            assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).isZero();
            var good = device.memory();
            Region[][] bad = {
                // overlapping guest-physical ranges
                {new Region(0, MIB, USER_A, 0), new Region(MIB / 2, MIB, USER_B, MIB)},
                // overlapping user ranges
                {new Region(0, MIB, USER_A, 0), new Region(GPA_B, MIB, USER_A + 4096, MIB)},
                // wrapping guest-physical range
                {new Region(-MIB / 2, MIB, USER_A, 0)},
                // wrapping user range
                {new Region(0, MIB, -4096, 0)},
                // beyond the end of the memfd (2 MiB)
                {new Region(0, 4 * MIB, USER_A, 0)},
                {new Region(0, MIB, USER_A, 1536 * 1024)},
                // zero and negative sizes, negative offset
                {new Region(0, 0, USER_A, 0)},
                {new Region(0, -MIB, USER_A, 0)},
                {new Region(0, MIB, USER_A, -4096)},
            };
            for (Region[] table : bad) {
                int[] fds = new int[table.length];
                java.util.Arrays.fill(fds, memfd);
                fe.sendMemTable(NEED_REPLY, table, fds);
                assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).as(java.util.Arrays.toString(table))
                        .isNotZero();
                assertThat(device.memory()).isSameAs(good);
            }
            // A region larger than its (small) fd, through ADD_MEM_REG.
            fe.sendSingleRegion(VhostUserRequest.ADD_MEM_REG, NEED_REPLY, new Region(0x8000_0000L, MIB, 0x10000, 0),
                    small);
            assertThat(fe.replyU64(VhostUserRequest.ADD_MEM_REG)).isNotZero();
            // An eventfd is no memory.
            int e = LinuxNative.eventfd();
            fe.sendSingleRegion(VhostUserRequest.ADD_MEM_REG, NEED_REPLY, new Region(0x8000_0000L, 4096, 0x10000, 0), e);
            LinuxNative.close(e);
            assertThat(fe.replyU64(VhostUserRequest.ADD_MEM_REG)).isNotZero();
            assertThat(device.memory()).isSameAs(good);
            assertThat(server.connections()).as("refusals keep the connection").isEqualTo(2);
        } finally {
            LinuxNative.close(small);
        }
    }

    @Test
    void badRingsAreRefused() throws Exception {
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
            // Ring addresses before any memory table.
            fe.sendAddress(NEED_REPLY, 0, 0, descUser(0), usedUser(0), availUser(0), 0);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).isNotZero();
            fe.sendMemTable(NEED_REPLY, twoRegions(), memfd, memfd);
            assertThat(fe.replyU64(VhostUserRequest.SET_MEM_TABLE)).isZero();
            // Sizes the device refuses (2.7): 0, not a power of two, above 32768.
            for (int size : new int[] {0, 100, 65536, -1}) {
                fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, 0, size);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isZero();
                fe.sendAddress(NEED_REPLY, 0, 0, descUser(0), usedUser(0), availUser(0), 0);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).as("size " + size).isNotZero();
            }
            fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, 0, 256);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isZero();
            // Addresses in no region, a ring running off the end of a region, unaligned.
            long[][] addresses = {
                {0x1234_0000L, usedUser(0), availUser(0)},
                {descUser(0), 0x7f30_0000_0000L, availUser(0)},
                {USER_B + MIB - 64, usedUser(0), availUser(0)},
                {descUser(0) + 8, usedUser(0), availUser(0)},
            };
            for (long[] a : addresses) {
                fe.sendAddress(NEED_REPLY, 0, 0, a[0], a[1], a[2], 0);
                assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).isNotZero();
            }
            // A kick now does not start the ring: it was never accepted.
            int kick = LinuxNative.eventfd();
            fe.sendU64(VhostUserRequest.SET_VRING_KICK, NEED_REPLY, 0, kick);
            LinuxNative.close(kick);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_KICK)).isZero();
            assertThat(device.queue(0).running).isFalse();
            // The good address then starts it (the kick was already there).
            fe.sendAddress(NEED_REPLY, 0, 0, descUser(0), usedUser(0), availUser(0), 0);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).isZero();
            assertThat(device.queue(0).running).isTrue();
            // Changes refused on a running ring; queue index out of range.
            fe.sendState(VhostUserRequest.SET_VRING_NUM, NEED_REPLY, 0, 128);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isNotZero();
            fe.sendState(VhostUserRequest.SET_VRING_BASE, NEED_REPLY, 0, 1);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).isNotZero();
            fe.sendState(VhostUserRequest.SET_VRING_ENABLE, NEED_REPLY, 0, 2);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ENABLE)).isNotZero();
            int e = LinuxNative.eventfd();
            fe.sendU64(VhostUserRequest.SET_VRING_CALL, NEED_REPLY, 200, e);
            LinuxNative.close(e);
            assertThat(fe.replyU64(VhostUserRequest.SET_VRING_CALL)).isNotZero();
            // GET_VRING_BASE of a queue that does not exist cannot be answered: the connection ends.
            fe.sendState(VhostUserRequest.GET_VRING_BASE, PLAIN, 7, 0);
            assertClosedAndServerStillServes(fe);
        }
    }

    @Test
    void randomMessagesNeverBreakTheServer() throws Exception {
        Random random = new Random(0x5eed);
        int e1 = LinuxNative.eventfd();
        try {
            for (int session = 0; session < SESSIONS; session++) {
                boolean open = true;
                try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
                negotiate(fe, PROTOCOL, 0);
                fe.sendMemTable(NEED_REPLY, twoRegions(), memfd, memfd);
                fe.replyU64(VhostUserRequest.SET_MEM_TABLE);
                for (int i = 0; i < 100 && open; i++) {
                    int request = random.nextInt(10) == 0 ? random.nextInt() : 1 + random.nextInt(42);
                    int flags = random.nextInt(8) == 0 ? random.nextInt() : 1 | (random.nextBoolean() ? 8 : 0);
                    boolean wellFormed = random.nextBoolean();
                    int size = wellFormed ? rightSize(request, random)
                            : random.nextInt(4) == 0 ? random.nextInt(300) : new int[] {0, 8, 16, 40, 72}[random.nextInt(5)];
                    byte[] payload = new byte[Math.max(size, 12)];
                    random.nextBytes(payload);
                    if (size >= 8 && random.nextBoolean()) {
                        payload[0] &= 1; // small queue indexes and region counts now and then
                        for (int k = 1; k < 4; k++) {
                            payload[k] = 0;
                        }
                    }
                    if (wellFormed && request == VhostUserRequest.GET_CONFIG.id()
                            || request == VhostUserRequest.SET_CONFIG.id()) {
                        java.nio.ByteBuffer.wrap(payload).order(java.nio.ByteOrder.nativeOrder()).putInt(4, size - 12);
                    }
                    if (wellFormed && request == VhostUserRequest.SET_MEM_TABLE.id()) {
                        java.nio.ByteBuffer.wrap(payload).order(java.nio.ByteOrder.nativeOrder())
                                .putInt(0, (size - 8) / 32);
                    }
                    payload = java.util.Arrays.copyOf(payload, size);
                    int fdCount = wellFormed ? rightFds(request, payload, size) : random.nextInt(4) == 0
                            ? random.nextInt(3) : 0;
                    int[] fds = new int[fdCount];
                    for (int k = 0; k < fds.length; k++) {
                        fds[k] = random.nextBoolean() ? e1 : memfd;
                    }
                    try {
                        fe.sendRaw(request, flags, size, payload, fds);
                        // Round trip: either every earlier message was handled, or the connection is gone.
                        fe.sendNoPayload(VhostUserRequest.GET_FEATURES, PLAIN);
                    } catch (IOException e) {
                        // EPIPE/ECONNRESET: the server closed the connection on this (malformed) message.
                        assertThat(e.getMessage()).containsAnyOf("EPIPE", "ECONNRESET");
                        open = false;
                        continue;
                    }
                    open = drainUntilFeatures(fe);
                }
                }
                awaitDisconnects(session + 2);
                assertThat(device.anyRunning()).isFalse();
            }
        } finally {
            LinuxNative.close(e1);
        }
        // And a proper session still works afterwards.
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(server.socketPath())) {
            negotiate(fe, PROTOCOL, 0);
        }
        awaitDisconnects(SESSIONS + 2);
    }

    /** The payload size {@code request} needs (random where it may vary). */
    private static int rightSize(int request, Random random) {
        VhostUserRequest r = VhostUserRequest.of(request);
        if (r == null) {
            return random.nextInt(64);
        }
        switch (r.payload()) {
            case NONE: return 0;
            case U64: case VRING_STATE: return 8;
            case VRING_ADDRESS: case SINGLE_REGION: return 40;
            case LOG: return 16;
            case MEMORY_TABLE: return 8 + 32 * random.nextInt(3);
            case CONFIG: return 12 + random.nextInt(16);
            default: return random.nextInt(64);
        }
    }

    /** The fd count {@code request} needs with this payload. */
    private static int rightFds(int request, byte[] payload, int size) {
        VhostUserRequest r = VhostUserRequest.of(request);
        if (r == null) {
            return 0;
        }
        switch (r) {
            case SET_VRING_KICK: case SET_VRING_CALL: case SET_VRING_ERR:
                return (payload[1] & 1) != 0 ? 0 : 1;
            case SET_MEM_TABLE: return (size - 8) / 32;
            case ADD_MEM_REG: case SET_LOG_BASE: case SET_LOG_FD: return 1;
            default: return 0;
        }
    }

    /** Reads replies until the GET_FEATURES one; false if the server closed the connection. */
    private static boolean drainUntilFeatures(FakeVhostUserFrontEnd fe) throws IOException {
        for (int n = 0; n < 4; n++) {
            VhostUserMessage r;
            try {
                r = fe.reply();
            } catch (IOException e) {
                if (e.getMessage().contains("closed the connection")) {
                    return false;
                }
                throw e;
            }
            if (r.request() == VhostUserRequest.GET_FEATURES.id()) {
                return true;
            }
        }
        throw new AssertionError("no GET_FEATURES reply among the next 4 replies");
    }
}
