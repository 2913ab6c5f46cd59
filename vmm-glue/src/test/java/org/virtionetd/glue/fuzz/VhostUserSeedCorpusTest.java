package org.virtionetd.glue.fuzz;

import org.junit.jupiter.api.Test;
import org.virtionetd.glue.vhostuser.VhostUserRequest;
import org.virtionetd.glue.vhostuser.VhostUserServer;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.fuzz.SeedWriter;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.virtionetd.glue.vhostuser.VhostUserRequest.*;

/**
 * The committed seeds of {@link VhostUserMessageFuzzTest}: sessions as QEMU's vhost-user-net starts them (owner,
 * features, protocol features with REPLY_ACK, a two-region memory table, both rings of a pair set up, kicked and
 * enabled, then stopped with GET_VRING_BASE), the memory-slot, config, log, MTU, RARP and reset requests, and one
 * with the classic hostile values (queue sizes 0, 100 and 65536, ring addresses outside memory, overlapping
 * regions, a region past the end of its file). {@code -Dvnd.fuzz.writeSeeds=true} rewrites the files.
 */
class VhostUserSeedCorpusTest {
    static final long MIB = 1 << 20;
    static final long USER_A = 0x7f10_0000_0000L;
    static final long USER_B = 0x7f20_0000_0000L;
    static final long GPA_B = 0x1_0000_0000L;
    // Control byte bits of the input layout.
    static final int MEMFDS = 0;
    static final int EVENTFDS = 4;
    static final int NEED_REPLY = 0x20;

    /** One message: control byte, request byte, u16 length, payload. */
    static void msg(SeedWriter w, VhostUserRequest r, int fdCount, int fdKind, boolean needReply, byte[] payload) {
        w.u8(fdCount | fdKind | (needReply ? NEED_REPLY : 0)).u8(r.id()).u16(payload.length).bytes(payload);
    }

    static ByteBuffer payload(int size) {
        return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    static byte[] u64(long v) {
        return payload(8).putLong(0, v).array();
    }

    static byte[] state(int index, int num) {
        return payload(8).putInt(0, index).putInt(4, num).array();
    }

    static byte[] address(int q, long desc, long used, long avail) {
        return payload(40).putInt(0, q).putLong(8, desc).putLong(16, used).putLong(24, avail).array();
    }

    static byte[] regions(long[]... r) {
        ByteBuffer b = payload(8 + 32 * r.length).putInt(0, r.length);
        for (int i = 0; i < r.length; i++) {
            for (int k = 0; k < 4; k++) {
                b.putLong(8 + 32 * i + 8 * k, r[i][k]);
            }
        }
        return b.array();
    }

    static byte[] region(long gpa, long size, long user, long offset) {
        return payload(40).putLong(8, gpa).putLong(16, size).putLong(24, user).putLong(32, offset).array();
    }

    static void negotiate(SeedWriter w) {
        msg(w, SET_OWNER, 0, 0, false, new byte[0]);
        msg(w, GET_FEATURES, 0, 0, false, new byte[0]);
        msg(w, GET_PROTOCOL_FEATURES, 0, 0, false, new byte[0]);
        msg(w, SET_PROTOCOL_FEATURES, 0, 0, false, u64(VhostUserServer.DEFAULT_PROTOCOL_FEATURES));
        msg(w, GET_QUEUE_NUM, 0, 0, false, new byte[0]);
        long features = VirtioFeature.bit(VirtioFeature.VERSION_1)
                | VirtioFeature.bit(VirtioFeature.VHOST_USER_F_PROTOCOL_FEATURES)
                | VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX) | 1L /* CSUM */ | (1L << 15) /* MRG_RXBUF */;
        msg(w, SET_FEATURES, 0, 0, true, u64(features));
        msg(w, SET_MEM_TABLE, 2, MEMFDS, true, regions(new long[] {0, MIB, USER_A, 0},
                new long[] {GPA_B, MIB, USER_B, MIB}));
    }

    static void ring(SeedWriter w, int q) {
        long desc = USER_B + q * 0x10000L;
        msg(w, SET_VRING_NUM, 0, 0, true, state(q, 256));
        msg(w, SET_VRING_BASE, 0, 0, true, state(q, 0));
        msg(w, SET_VRING_ADDR, 0, 0, true, address(q, desc, desc + 0x8000, desc + 0x4000));
        msg(w, SET_VRING_KICK, 1, EVENTFDS, true, u64(q));
        msg(w, SET_VRING_CALL, 1, EVENTFDS, true, u64(q));
        msg(w, SET_VRING_ENABLE, 0, 0, true, state(q, 1));
    }

    static Map<String, byte[]> seeds() {
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        SeedWriter w = new SeedWriter();
        negotiate(w);
        ring(w, 0);
        ring(w, 1);
        msg(w, GET_VRING_BASE, 0, 0, false, state(0, 0));
        msg(w, GET_VRING_BASE, 0, 0, false, state(1, 0));
        msg(w, GET_STATUS, 0, 0, false, new byte[0]);
        seeds.put("qemu-session", w.toBytes());

        w = new SeedWriter();
        negotiate(w);
        msg(w, GET_MAX_MEM_SLOTS, 0, 0, false, new byte[0]);
        msg(w, ADD_MEM_REG, 1, MEMFDS, true, region(0x2_0000_0000L, MIB / 2, 0x7f30_0000_0000L, 0));
        msg(w, REM_MEM_REG, 0, 0, true, region(0x2_0000_0000L, MIB / 2, 0x7f30_0000_0000L, 0));
        msg(w, GET_CONFIG, 0, 0, false, payload(12 + 6).putInt(4, 6).array());
        msg(w, SET_LOG_BASE, 1, MEMFDS, false, payload(16).putLong(0, 4096).putLong(8, 0).array());
        msg(w, NET_SET_MTU, 0, 0, true, u64(9000));
        msg(w, SEND_RARP, 0, 0, true, u64(0x5634_1200_5452L));
        msg(w, SET_STATUS, 0, 0, true, u64(0x0f));
        msg(w, RESET_DEVICE, 0, 0, true, new byte[0]);
        seeds.put("slots-config-log-reset", w.toBytes());

        w = new SeedWriter();
        negotiate(w);
        for (int size : new int[] {0, 100, 65536}) {
            msg(w, SET_VRING_NUM, 0, 0, true, state(0, size));
            msg(w, SET_VRING_ADDR, 0, 0, true, address(0, USER_B, USER_B + 0x8000, USER_B + 0x4000));
        }
        msg(w, SET_VRING_NUM, 0, 0, true, state(0, 256));
        msg(w, SET_VRING_ADDR, 0, 0, true, address(0, 0x1234_0000L, USER_B + 0x8000, USER_B + 0x4000));
        msg(w, SET_VRING_ADDR, 0, 0, true, address(0, USER_B + MIB - 64, USER_B + 0x8000, USER_B + 0x4000));
        msg(w, SET_MEM_TABLE, 2, MEMFDS, true, regions(new long[] {0, MIB, USER_A, 0},
                new long[] {MIB / 2, MIB, USER_B, MIB}));
        msg(w, SET_MEM_TABLE, 1, MEMFDS, true, regions(new long[] {0, 4 * MIB, USER_A, 0}));
        msg(w, SET_MEM_TABLE, 1, MEMFDS, true, regions(new long[] {-MIB / 2, MIB, USER_A, 0}));
        msg(w, SET_VRING_KICK, 2, EVENTFDS, false, u64(0)); // one fd too many: closes the connection
        seeds.put("hostile-rings-and-tables", w.toBytes());
        return seeds;
    }

    @Test
    void committedSeedsAreWhatTheBuilderMakes() {
        SeedWriter.writeOrCheck(VhostUserMessageFuzzTest.class, "messages", seeds());
    }
}
