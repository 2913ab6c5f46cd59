package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** validate(): size and fd count per request, errors naming the request, the size and the expected size. */
class VhostUserMessageTest {
    private static final int FAKE_FD = 1 << 20; // never opened; closeFds() on it is a harmless EBADF

    private static VhostUserMessage message(VhostUserRequest r, int size, int fds) {
        VhostUserMessage m = new VhostUserMessage();
        m.header(r.id(), VhostUserMessage.VERSION, size);
        for (int i = 0; i < fds; i++) {
            m.addFd(FAKE_FD + i);
        }
        return m;
    }

    private static void assertMalformed(VhostUserMessage m, String... fragments) {
        assertThatThrownBy(m::validate).isInstanceOfSatisfying(VhostUserException.class,
                e -> assertThat(e.kind()).isEqualTo(VhostUserException.Kind.MALFORMED))
                .hasMessageContainingAll(fragments);
    }

    @Test
    void u64RequestsNeedEightBytes() {
        assertMalformed(message(VhostUserRequest.SET_FEATURES, 4, 0), "SET_FEATURES (2)", "payload size 4",
                "expected 8");
        assertMalformed(message(VhostUserRequest.SET_FEATURES, 16, 0), "payload size 16", "expected 8");
        assertThatCode(message(VhostUserRequest.SET_FEATURES, 8, 0)::validate).doesNotThrowAnyException();
        assertMalformed(message(VhostUserRequest.SET_FEATURES, 8, 1), "1 file descriptors received, expected 0");
    }

    @Test
    void requestsWithoutPayloadRefuseOne() {
        assertMalformed(message(VhostUserRequest.GET_FEATURES, 8, 0), "GET_FEATURES (1)", "payload size 8",
                "expected 0");
        assertMalformed(message(VhostUserRequest.SET_OWNER, 0, 1), "SET_OWNER", "expected 0");
        assertMalformed(message(VhostUserRequest.SET_LOG_FD, 0, 0), "SET_LOG_FD", "expected 1");
    }

    @Test
    void kickCallAndErrTakeOneFdUnlessTheNoFdBitIsSet() {
        VhostUserMessage m = message(VhostUserRequest.SET_VRING_KICK, 8, 0);
        m.putLong(0, 1);
        assertMalformed(m, "SET_VRING_KICK (12)", "0 file descriptors received, expected 1");
        m.putLong(0, 0x101);
        assertThatCode(m::validate).doesNotThrowAnyException();
        VhostUserMessage call = message(VhostUserRequest.SET_VRING_CALL, 8, 1);
        call.putLong(0, 0x100);
        assertMalformed(call, "SET_VRING_CALL", "1 file descriptors received, expected 0");
        VhostUserMessage err = message(VhostUserRequest.SET_VRING_ERR, 8, 1);
        err.putLong(0, 0x200);
        assertMalformed(err, "SET_VRING_ERR", "bits other than the vring index");
    }

    @Test
    void memoryTableSizeFollowsItsRegionCountAndSoDoTheFds() {
        VhostUserMessage m = message(VhostUserRequest.SET_MEM_TABLE, 8 + 2 * 32, 2);
        m.putInt(0, 2);
        assertThatCode(m::validate).doesNotThrowAnyException();
        m.header(VhostUserRequest.SET_MEM_TABLE.id(), 1, 8 + 3 * 32);
        assertMalformed(m, "SET_MEM_TABLE (5)", "payload size 104", "expected 72 (2 regions) or 264");
        m.header(VhostUserRequest.SET_MEM_TABLE.id(), 1, 8 + 8 * 32);
        assertThatCode(m::validate).as("the whole C struct").doesNotThrowAnyException();
        m.putInt(0, 9);
        assertMalformed(m, "9 memory regions, at most 8");
        m.putInt(0, -1);
        assertMalformed(m, "4294967295 memory regions");
        VhostUserMessage fewFds = message(VhostUserRequest.SET_MEM_TABLE, 8 + 2 * 32, 1);
        fewFds.putInt(0, 2);
        assertMalformed(fewFds, "1 file descriptors received, expected 2");
        assertMalformed(message(VhostUserRequest.SET_MEM_TABLE, 4, 0), "expected at least 8");
    }

    @Test
    void singleRegionLogVringAndConfigShapes() {
        assertThatCode(message(VhostUserRequest.ADD_MEM_REG, 40, 1)::validate).doesNotThrowAnyException();
        assertMalformed(message(VhostUserRequest.ADD_MEM_REG, 40, 0), "ADD_MEM_REG", "expected 1");
        assertThatCode(message(VhostUserRequest.REM_MEM_REG, 40, 1)::validate).as("MAY accept one fd")
                .doesNotThrowAnyException();
        assertMalformed(message(VhostUserRequest.REM_MEM_REG, 40, 2), "expected 0 or 1");
        assertMalformed(message(VhostUserRequest.SET_LOG_BASE, 8, 1), "SET_LOG_BASE", "payload size 8",
                "expected 16");
        assertMalformed(message(VhostUserRequest.SET_VRING_ADDR, 32, 0), "SET_VRING_ADDR", "expected 40");
        assertMalformed(message(VhostUserRequest.GET_VRING_BASE, 0, 0), "GET_VRING_BASE", "expected 8");
        VhostUserMessage config = message(VhostUserRequest.GET_CONFIG, 12 + 6, 0);
        config.putInt(4, 6);
        assertThatCode(config::validate).doesNotThrowAnyException();
        config.putInt(4, 7);
        assertMalformed(config, "GET_CONFIG", "payload size 18", "expected 19");
        config.putInt(4, 4096);
        assertMalformed(config, "config size 4096, at most 256");
    }

    @Test
    void versionMustBeOneAndUnknownRequestsPass() {
        VhostUserMessage m = message(VhostUserRequest.GET_FEATURES, 0, 0);
        m.header(1, 2, 0);
        assertMalformed(m, "protocol version 2");
        m.header(99, 1, 13);
        assertThatCode(m::validate).doesNotThrowAnyException();
        assertThat(VhostUserRequest.describe(99)).isEqualTo("request 99");
        assertThat(VhostUserRequest.of(37)).isEqualTo(VhostUserRequest.ADD_MEM_REG);
    }

    @Test
    void repliesCarryVersionOneAndTheReplyFlag() {
        VhostUserMessage m = new VhostUserMessage();
        m.replyU64(VhostUserRequest.GET_FEATURES.id(), 0x1234);
        assertThat(m.flags()).isEqualTo(0x5);
        assertThat(m.size()).isEqualTo(8);
        assertThat(m.u64()).isEqualTo(0x1234);
        assertThat(m.frameLength()).isEqualTo(20);
    }
}
