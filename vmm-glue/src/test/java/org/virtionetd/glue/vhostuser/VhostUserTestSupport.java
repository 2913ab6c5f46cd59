package org.virtionetd.glue.vhostuser;

import org.virtionetd.glue.vhostuser.FakeVhostUserFrontEnd.Region;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/** Shared pieces of the vhost-user tests: a memfd guest as QEMU would share it, negotiation, waiting. */
final class VhostUserTestSupport {
    static final long MIB = 1 << 20;
    /** Region A: guest-physical 0, 1 MiB; region B: guest-physical 4 GiB, 1 MiB, at offset 1 MiB of the memfd. */
    static final long GPA_A = 0;
    static final long GPA_B = 0x1_0000_0000L;
    static final long USER_A = 0x7f10_0000_0000L;
    static final long USER_B = 0x7f20_0000_0000L;
    static final int QUEUE_SIZE = 256;

    private VhostUserTestSupport() {
    }

    /** The guest RAM memfd (2 MiB) the front-end shares; closed by the caller. */
    static int guestMemfd() throws IOException {
        return LinuxNative.memfdCreate("test-guest", 2 * MIB);
    }

    static Region[] twoRegions() {
        return new Region[] {new Region(GPA_A, MIB, USER_A, 0), new Region(GPA_B, MIB, USER_B, MIB)};
    }

    /** Ring user addresses of queue q, in region B. */
    static long descUser(int q) {
        return USER_B + q * 0x10000L;
    }

    static long availUser(int q) {
        return USER_B + q * 0x10000L + 0x4000;
    }

    static long usedUser(int q) {
        return USER_B + q * 0x10000L + 0x8000;
    }

    static long gpaOfUserB(long user) {
        return GPA_B + (user - USER_B);
    }

    /** SET_OWNER, GET_FEATURES, protocol features, SET_FEATURES (acked) as QEMU starts a session. */
    static void negotiate(FakeVhostUserFrontEnd fe, long protocol, long extraFeatures) throws IOException {
        fe.sendNoPayload(VhostUserRequest.SET_OWNER, FakeVhostUserFrontEnd.PLAIN);
        long offered = fe.features();
        assertThat(offered & VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES)).isNotZero();
        fe.sendNoPayload(VhostUserRequest.GET_PROTOCOL_FEATURES, FakeVhostUserFrontEnd.PLAIN);
        long offeredProtocol = fe.replyU64(VhostUserRequest.GET_PROTOCOL_FEATURES);
        assertThat(offeredProtocol & protocol).as("offered protocol features").isEqualTo(protocol);
        assertThat(offeredProtocol & ~VhostUserServer.SUPPORTED_PROTOCOL_FEATURES).isZero();
        fe.sendU64(VhostUserRequest.SET_PROTOCOL_FEATURES, FakeVhostUserFrontEnd.PLAIN, protocol);
        long features = VirtioFeature.bit(VirtioFeature.VERSION_1)
                | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES) | extraFeatures;
        fe.sendU64(VhostUserRequest.SET_FEATURES, ackFlags(protocol), features);
        expectAck(fe, protocol, VhostUserRequest.SET_FEATURES, 0);
    }

    static int ackFlags(long protocol) {
        return VhostUserProtocolFeature.REPLY_ACK.in(protocol) ? FakeVhostUserFrontEnd.NEED_REPLY
                : FakeVhostUserFrontEnd.PLAIN;
    }

    static void expectAck(FakeVhostUserFrontEnd fe, long protocol, VhostUserRequest r, long expected)
            throws IOException {
        if (VhostUserProtocolFeature.REPLY_ACK.in(protocol)) {
            long v = fe.replyU64(r);
            if (expected == 0) {
                assertThat(v).as("REPLY_ACK of " + r).isZero();
            } else {
                assertThat(v).as("REPLY_ACK of " + r).isNotZero();
            }
        }
    }

    /** Sets up queue q as QEMU does: NUM, BASE, ADDR, KICK, CALL. Returns {kickFd, callFd} (caller closes). */
    static int[] setUpQueue(FakeVhostUserFrontEnd fe, int q, int base) throws IOException {
        int ack = FakeVhostUserFrontEnd.NEED_REPLY;
        fe.sendState(VhostUserRequest.SET_VRING_NUM, ack, q, QUEUE_SIZE);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_NUM)).isZero();
        fe.sendState(VhostUserRequest.SET_VRING_BASE, ack, q, base);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_BASE)).isZero();
        fe.sendAddress(ack, q, 0, descUser(q), usedUser(q), availUser(q), gpaOfUserB(usedUser(q)));
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_ADDR)).isZero();
        int kick = LinuxNative.eventfd();
        int call = LinuxNative.eventfd();
        fe.sendU64(VhostUserRequest.SET_VRING_KICK, ack, q, kick);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_KICK)).isZero();
        fe.sendU64(VhostUserRequest.SET_VRING_CALL, ack, q, call);
        assertThat(fe.replyU64(VhostUserRequest.SET_VRING_CALL)).isZero();
        return new int[] {kick, call};
    }

    static void await(BooleanSupplier condition, Supplier<String> seen) {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("condition not met within 5 s; seen: " + seen.get());
            }
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        }
    }

    static long openFds() {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    static String fdList() {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            StringBuilder sb = new StringBuilder();
            s.forEach(p -> {
                try {
                    sb.append(p.getFileName()).append("->").append(Files.readSymbolicLink(p)).append(' ');
                } catch (IOException e) {
                    sb.append(p.getFileName()).append("->? ");
                }
            });
            return sb.toString();
        } catch (IOException e) {
            return e.toString();
        }
    }
}
