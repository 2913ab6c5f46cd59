package org.virtionetd.glue.vhostuser;

/**
 * Front-end message types (vhost-user.rst, "Front-end message types"), with their request ids.
 *
 * <p>{@link #payload} says what the request carries, {@link #replies} whether the back-end always answers with a
 * body (the list in "Communication"); those requests get no extra REPLY_ACK answer.
 */
public enum VhostUserRequest {
    GET_FEATURES(1, Payload.NONE, true),
    SET_FEATURES(2, Payload.U64, false),
    SET_OWNER(3, Payload.NONE, false),
    RESET_OWNER(4, Payload.NONE, false),
    SET_MEM_TABLE(5, Payload.MEMORY_TABLE, false),
    /** Replies when LOG_SHMFD is negotiated, which is the only form we accept. */
    SET_LOG_BASE(6, Payload.LOG, true),
    SET_LOG_FD(7, Payload.NONE, false),
    SET_VRING_NUM(8, Payload.VRING_STATE, false),
    SET_VRING_ADDR(9, Payload.VRING_ADDRESS, false),
    SET_VRING_BASE(10, Payload.VRING_STATE, false),
    GET_VRING_BASE(11, Payload.VRING_STATE, true),
    SET_VRING_KICK(12, Payload.U64, false),
    SET_VRING_CALL(13, Payload.U64, false),
    SET_VRING_ERR(14, Payload.U64, false),
    GET_PROTOCOL_FEATURES(15, Payload.NONE, true),
    SET_PROTOCOL_FEATURES(16, Payload.U64, false),
    GET_QUEUE_NUM(17, Payload.NONE, true),
    SET_VRING_ENABLE(18, Payload.VRING_STATE, false),
    SEND_RARP(19, Payload.U64, false),
    NET_SET_MTU(20, Payload.U64, false),
    SET_BACKEND_REQ_FD(21, Payload.UNSUPPORTED, false),
    IOTLB_MSG(22, Payload.UNSUPPORTED, true),
    SET_VRING_ENDIAN(23, Payload.UNSUPPORTED, false),
    GET_CONFIG(24, Payload.CONFIG, true),
    SET_CONFIG(25, Payload.CONFIG, false),
    CREATE_CRYPTO_SESSION(26, Payload.UNSUPPORTED, true),
    CLOSE_CRYPTO_SESSION(27, Payload.UNSUPPORTED, false),
    POSTCOPY_ADVISE(28, Payload.UNSUPPORTED, true),
    POSTCOPY_LISTEN(29, Payload.UNSUPPORTED, false),
    POSTCOPY_END(30, Payload.UNSUPPORTED, true),
    GET_INFLIGHT_FD(31, Payload.UNSUPPORTED, true),
    SET_INFLIGHT_FD(32, Payload.UNSUPPORTED, false),
    GPU_SET_SOCKET(33, Payload.UNSUPPORTED, false),
    RESET_DEVICE(34, Payload.NONE, false),
    VRING_KICK(35, Payload.UNSUPPORTED, false),
    GET_MAX_MEM_SLOTS(36, Payload.NONE, true),
    ADD_MEM_REG(37, Payload.SINGLE_REGION, false),
    REM_MEM_REG(38, Payload.SINGLE_REGION, false),
    SET_STATUS(39, Payload.U64, false),
    GET_STATUS(40, Payload.NONE, true);

    /** Payload shapes of "Message Specification / Payload". */
    public enum Payload {
        NONE,
        /** A single 64-bit integer. */
        U64,
        /** index u32, num u32. */
        VRING_STATE,
        /** struct vhost_vring_addr: index, flags, desc, used, avail, log (40 bytes). */
        VRING_ADDRESS,
        /** num regions u32, padding u32, up to 8 regions of 32 bytes. */
        MEMORY_TABLE,
        /** padding u64, one region of 32 bytes. */
        SINGLE_REGION,
        /** log size u64, log offset u64. */
        LOG,
        /** offset u32, size u32, flags u32, size bytes. */
        CONFIG,
        /** A request we do not implement: the payload is skipped, fds closed. */
        UNSUPPORTED
    }

    private static final VhostUserRequest[] BY_ID = new VhostUserRequest[64];

    static {
        for (VhostUserRequest r : values()) {
            BY_ID[r.id] = r;
        }
    }

    private final int id;
    private final Payload payload;
    private final boolean replies;

    VhostUserRequest(int id, Payload payload, boolean replies) {
        this.id = id;
        this.payload = payload;
        this.replies = replies;
    }

    public int id() {
        return id;
    }

    public Payload payload() {
        return payload;
    }

    /** True if the request always has an explicit reply body (no REPLY_ACK answer on top). */
    public boolean replies() {
        return replies;
    }

    /** The request with id {@code id}, or null for a number the protocol does not define (to us). */
    public static VhostUserRequest of(int id) {
        return id > 0 && id < BY_ID.length ? BY_ID[id] : null;
    }

    /** "SET_VRING_NUM (8)" or "request 99" for an unknown number: for error messages. */
    public static String describe(int id) {
        VhostUserRequest r = of(id);
        return r == null ? "request " + Integer.toUnsignedString(id) : r.name() + " (" + id + ")";
    }
}
