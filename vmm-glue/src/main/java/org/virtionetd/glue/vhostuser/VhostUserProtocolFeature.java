package org.virtionetd.glue.vhostuser;

/** Protocol feature bits (vhost-user.rst, "Protocol features"), negotiated with GET/SET_PROTOCOL_FEATURES. */
public enum VhostUserProtocolFeature {
    MQ(0),
    LOG_SHMFD(1),
    RARP(2),
    REPLY_ACK(3),
    MTU(4),
    BACKEND_REQ(5),
    CROSS_ENDIAN(6),
    CRYPTO_SESSION(7),
    PAGEFAULT(8),
    CONFIG(9),
    BACKEND_SEND_FD(10),
    HOST_NOTIFIER(11),
    INFLIGHT_SHMFD(12),
    RESET_DEVICE(13),
    INBAND_NOTIFICATIONS(14),
    CONFIGURE_MEM_SLOTS(15),
    STATUS(16);

    private final int bit;

    VhostUserProtocolFeature(int bit) {
        this.bit = bit;
    }

    public int bit() {
        return bit;
    }

    public long mask() {
        return 1L << bit;
    }

    public boolean in(long features) {
        return (features & mask()) != 0;
    }

    /** The union of the given features' masks. */
    public static long maskOf(VhostUserProtocolFeature... features) {
        long m = 0;
        for (VhostUserProtocolFeature f : features) {
            m |= f.mask();
        }
        return m;
    }

    /** "MQ|REPLY_ACK|bit 40" : names the bits of a protocol feature word for logs and errors. */
    public static String describe(long features) {
        StringBuilder sb = new StringBuilder();
        for (int b = 0; b < 64; b++) {
            if ((features & (1L << b)) == 0) {
                continue;
            }
            if (sb.length() > 0) {
                sb.append('|');
            }
            String name = "bit " + b;
            for (VhostUserProtocolFeature f : values()) {
                if (f.bit == b) {
                    name = f.name();
                }
            }
            sb.append(name);
        }
        return sb.length() == 0 ? "none" : sb.toString();
    }
}
