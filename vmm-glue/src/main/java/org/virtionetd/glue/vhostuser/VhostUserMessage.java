package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.os.LinuxNative;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A flyweight over one vhost-user message in a reusable direct buffer, plus the fds that came with it
 * (vhost-user.rst, "Message Specification": request u32, flags u32, size u32, then {@code size} payload bytes,
 * all in native byte order).
 *
 * <p>{@link #validate()} checks, once per message, that {@code size} is what the request needs and that the right
 * number of fds came along; the typed getters below assume it passed. Fds are owned by the message until a handler
 * {@link #takeFd(int) takes} one; {@link #closeFds()} closes the rest, so an fd the server did not keep never leaks.
 *
 * <p>The same class encodes replies (and requests, for the test front-end): {@link #header} then the put methods.
 */
public final class VhostUserMessage {
    public static final int REQUEST_OFFSET = 0;
    public static final int FLAGS_OFFSET = 4;
    public static final int SIZE_OFFSET = 8;
    public static final int HEADER_SIZE = 12;

    /** Lower 2 bits of flags: the protocol version, currently 1. */
    public static final int VERSION_MASK = 0x3;
    public static final int VERSION = 0x1;
    /** Bit 2: set on every reply from the back-end. */
    public static final int FLAG_REPLY = 0x4;
    /** Bit 3: the front-end wants a REPLY_ACK answer. */
    public static final int FLAG_NEED_REPLY = 0x8;

    /** At most 8 fds per message ("at most 8 descriptors in each message"; VHOST_MEMORY_BASELINE_NREGIONS). */
    public static final int MAX_FDS = 8;
    /** SET_MEM_TABLE carries at most 8 regions. */
    public static final int MAX_REGIONS = 8;
    public static final int REGION_SIZE = 32;
    /** num regions u32 + padding u32 (table), or padding u64 (single region): regions start at payload byte 8. */
    public static final int REGIONS_OFFSET = 8;
    public static final int VRING_STATE_SIZE = 8;
    public static final int VRING_ADDRESS_SIZE = 40;
    public static final int LOG_SIZE = 16;
    public static final int CONFIG_HEADER_SIZE = 12;
    /** VHOST_USER_MAX_CONFIG_SIZE in QEMU. */
    public static final int MAX_CONFIG_SIZE = 256;
    /**
     * Largest payload we read. Our largest valid payload is a config access (268 bytes); unsupported requests
     * may be bigger, so the buffer leaves room to skip them without losing the stream.
     */
    public static final int MAX_PAYLOAD = 4096;

    /** SET_VRING_KICK/CALL/ERR u64: bits 0-7 are the vring index, bit 8 says "no fd" (poll instead). */
    public static final long VRING_INDEX_MASK = 0xff;
    public static final long VRING_NOFD_MASK = 0x100;
    /** vhost_vring_addr.flags bit 0: log writes to the used ring (VHOST_VRING_F_LOG). */
    public static final int VRING_F_LOG = 0x1;

    private final ByteBuffer buffer =
            ByteBuffer.allocateDirect(HEADER_SIZE + MAX_PAYLOAD).order(ByteOrder.nativeOrder());
    private final int[] fds = new int[MAX_FDS];
    private int fdCount;

    public ByteBuffer buffer() {
        return buffer;
    }

    // ---- header ----

    public int request() {
        return buffer.getInt(REQUEST_OFFSET);
    }

    public int flags() {
        return buffer.getInt(FLAGS_OFFSET);
    }

    /** The payload size as the sender claims it (unsigned; above {@link #MAX_PAYLOAD} is refused on receive). */
    public int size() {
        return buffer.getInt(SIZE_OFFSET);
    }

    public boolean needReply() {
        return (flags() & FLAG_NEED_REPLY) != 0;
    }

    public boolean isReply() {
        return (flags() & FLAG_REPLY) != 0;
    }

    public VhostUserRequest requestType() {
        return VhostUserRequest.of(request());
    }

    /** Writes a header; the payload is then filled with the put methods. */
    public VhostUserMessage header(int request, int flags, int size) {
        buffer.putInt(REQUEST_OFFSET, request).putInt(FLAGS_OFFSET, flags).putInt(SIZE_OFFSET, size);
        return this;
    }

    /** Header plus payload, as sent on the wire. */
    public int frameLength() {
        return HEADER_SIZE + size();
    }

    // ---- fds ----

    public int fdCount() {
        return fdCount;
    }

    /** Records an fd received with this message; returns false (and leaves it to the caller) when full. */
    public boolean addFd(int fd) {
        if (fdCount == MAX_FDS) {
            return false;
        }
        fds[fdCount++] = fd;
        return true;
    }

    /** The receiver takes ownership of fd {@code i}: {@link #closeFds()} will not close it. */
    public int takeFd(int i) {
        int fd = fds[i];
        fds[i] = -1;
        return fd;
    }

    /** Closes every fd not taken, and forgets them all. */
    public void closeFds() {
        for (int i = 0; i < fdCount; i++) {
            if (fds[i] >= 0) {
                LinuxNative.close(fds[i]);
            }
            fds[i] = -1;
        }
        fdCount = 0;
    }

    // ---- validation ----

    /**
     * Checks version, payload size and fd count against what {@link #requestType()} needs. Unknown and unsupported
     * requests pass (their payload is skipped). Throws MALFORMED naming the request, the size and the expected size.
     */
    public void validate() throws VhostUserException {
        int version = flags() & VERSION_MASK;
        if (version != VERSION) {
            throw VhostUserException.malformed(VhostUserRequest.describe(request()) + ": protocol version "
                    + version + " in flags 0x" + Integer.toHexString(flags()) + ", expected " + VERSION);
        }
        VhostUserRequest r = requestType();
        if (r == null) {
            return;
        }
        switch (r.payload()) {
            case NONE:
                expectSize(r, 0, "no payload");
                expectFds(r, r == VhostUserRequest.SET_LOG_FD ? 1 : 0);
                break;
            case U64:
                expectSize(r, 8, "u64");
                if (r == VhostUserRequest.SET_VRING_KICK || r == VhostUserRequest.SET_VRING_CALL
                        || r == VhostUserRequest.SET_VRING_ERR) {
                    long v = u64();
                    if ((v & ~(VRING_INDEX_MASK | VRING_NOFD_MASK)) != 0) {
                        throw VhostUserException.malformed(describe(r) + ": u64 0x" + Long.toHexString(v)
                                + " has bits other than the vring index (0-7) and the no-fd flag (8)");
                    }
                    expectFds(r, (v & VRING_NOFD_MASK) != 0 ? 0 : 1);
                } else {
                    expectFds(r, 0);
                }
                break;
            case VRING_STATE:
                expectSize(r, VRING_STATE_SIZE, "vring state");
                expectFds(r, 0);
                break;
            case VRING_ADDRESS:
                expectSize(r, VRING_ADDRESS_SIZE, "vring address");
                expectFds(r, 0);
                break;
            case MEMORY_TABLE: {
                if (size() < REGIONS_OFFSET) {
                    throw sizeError(r, "at least " + REGIONS_OFFSET + " (memory table header)");
                }
                int n = buffer.getInt(HEADER_SIZE);
                if (n < 0 || n > MAX_REGIONS) {
                    throw VhostUserException.malformed(describe(r) + ": " + Integer.toUnsignedString(n)
                            + " memory regions, at most " + MAX_REGIONS);
                }
                // QEMU and DPDK send only the regions in use; a sender of the whole C struct is accepted too.
                int exact = REGIONS_OFFSET + n * REGION_SIZE;
                int full = REGIONS_OFFSET + MAX_REGIONS * REGION_SIZE;
                if (size() != exact && size() != full) {
                    throw sizeError(r, exact + " (" + n + " regions) or " + full);
                }
                expectFds(r, n);
                break;
            }
            case SINGLE_REGION:
                expectSize(r, REGIONS_OFFSET + REGION_SIZE, "single memory region");
                if (r == VhostUserRequest.ADD_MEM_REG) {
                    expectFds(r, 1);
                } else if (fdCount > 1) {
                    // REM_MEM_REG: "No file descriptors SHOULD be passed ... the back-end MAY accept ... one".
                    throw fdError(r, "0 or 1");
                }
                break;
            case LOG:
                expectSize(r, LOG_SIZE, "log description");
                expectFds(r, 1);
                break;
            case CONFIG: {
                if (size() < CONFIG_HEADER_SIZE) {
                    throw sizeError(r, "at least " + CONFIG_HEADER_SIZE + " (config header)");
                }
                int length = configSize();
                if (length < 0 || length > MAX_CONFIG_SIZE) {
                    throw VhostUserException.malformed(describe(r) + ": config size "
                            + Integer.toUnsignedString(length) + ", at most " + MAX_CONFIG_SIZE);
                }
                expectSize(r, CONFIG_HEADER_SIZE + length, "config header + " + length + " bytes");
                expectFds(r, 0);
                break;
            }
            case UNSUPPORTED:
            default:
                break;
        }
    }

    private static String describe(VhostUserRequest r) {
        return VhostUserRequest.describe(r.id());
    }

    private void expectSize(VhostUserRequest r, int expected, String what) throws VhostUserException {
        if (size() != expected) {
            throw sizeError(r, expected + " (" + what + ")");
        }
    }

    private VhostUserException sizeError(VhostUserRequest r, String expected) {
        return VhostUserException.malformed(describe(r) + ": payload size " + Integer.toUnsignedString(size())
                + ", expected " + expected);
    }

    private void expectFds(VhostUserRequest r, int expected) throws VhostUserException {
        if (fdCount != expected) {
            throw fdError(r, Integer.toString(expected));
        }
    }

    private VhostUserException fdError(VhostUserRequest r, String expected) {
        return VhostUserException.malformed(describe(r) + " (payload size " + size() + "): " + fdCount
                + " file descriptors received, expected " + expected);
    }

    // ---- payload getters (valid after validate()) ----

    public long u64() {
        return buffer.getLong(HEADER_SIZE);
    }

    public int stateIndex() {
        return buffer.getInt(HEADER_SIZE);
    }

    public int stateNum() {
        return buffer.getInt(HEADER_SIZE + 4);
    }

    public int addressIndex() {
        return buffer.getInt(HEADER_SIZE);
    }

    public int addressFlags() {
        return buffer.getInt(HEADER_SIZE + 4);
    }

    public long descriptorAddress() {
        return buffer.getLong(HEADER_SIZE + 8);
    }

    public long usedAddress() {
        return buffer.getLong(HEADER_SIZE + 16);
    }

    public long availableAddress() {
        return buffer.getLong(HEADER_SIZE + 24);
    }

    public long logGuestAddress() {
        return buffer.getLong(HEADER_SIZE + 32);
    }

    public int regionCount() {
        return buffer.getInt(HEADER_SIZE);
    }

    private int region(int i) {
        return HEADER_SIZE + REGIONS_OFFSET + i * REGION_SIZE;
    }

    /** Region {@code i} of a memory table; region 0 is also the single region of ADD/REM_MEM_REG. */
    public long regionGuestAddress(int i) {
        return buffer.getLong(region(i));
    }

    public long regionSize(int i) {
        return buffer.getLong(region(i) + 8);
    }

    public long regionUserAddress(int i) {
        return buffer.getLong(region(i) + 16);
    }

    public long regionMmapOffset(int i) {
        return buffer.getLong(region(i) + 24);
    }

    public long logSize() {
        return buffer.getLong(HEADER_SIZE);
    }

    public long logOffset() {
        return buffer.getLong(HEADER_SIZE + 8);
    }

    public int configOffset() {
        return buffer.getInt(HEADER_SIZE);
    }

    public int configSize() {
        return buffer.getInt(HEADER_SIZE + 4);
    }

    public int configFlags() {
        return buffer.getInt(HEADER_SIZE + 8);
    }

    public byte[] configPayload() {
        byte[] b = new byte[configSize()];
        buffer.get(HEADER_SIZE + CONFIG_HEADER_SIZE, b);
        return b;
    }

    // ---- payload putters (replies, and requests in tests) ----

    public VhostUserMessage putInt(int payloadOffset, int value) {
        buffer.putInt(HEADER_SIZE + payloadOffset, value);
        return this;
    }

    public VhostUserMessage putLong(int payloadOffset, long value) {
        buffer.putLong(HEADER_SIZE + payloadOffset, value);
        return this;
    }

    public VhostUserMessage putBytes(int payloadOffset, byte[] bytes) {
        buffer.put(HEADER_SIZE + payloadOffset, bytes);
        return this;
    }

    /** A back-end reply header: same request, version 1 and the reply flag. */
    public VhostUserMessage reply(int request, int size) {
        return header(request, VERSION | FLAG_REPLY, size);
    }

    public VhostUserMessage replyU64(int request, long value) {
        return reply(request, 8).putLong(0, value);
    }

    public VhostUserMessage replyState(int request, int index, int num) {
        return reply(request, VRING_STATE_SIZE).putInt(0, index).putInt(4, num);
    }

    public VhostUserMessage replyConfig(int request, int offset, int flags, byte[] data) {
        return reply(request, CONFIG_HEADER_SIZE + data.length).putInt(0, offset).putInt(4, data.length)
                .putInt(8, flags).putBytes(CONFIG_HEADER_SIZE, data);
    }
}
