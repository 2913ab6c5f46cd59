package org.virtionetd.virtio.net;

import java.util.Arrays;

/**
 * What the user configured for one network device: MAC, MTU, number of queue pairs, queue size limit, link speed.
 * Immutable; build with {@link #builder()}.
 */
public final class NetDeviceConfig {
    /** 5.1.4: max_virtqueue_pairs is between 1 and 0x8000. */
    public static final int MAX_QUEUE_PAIRS = 0x8000;
    /**
     * A wake-up through a kick costs the driver a system call and the device a few tens of microseconds of
     * scheduling; a driver that keeps a ring busy (DPDK, a fast guest) fills it meanwhile and waits. 50 us of
     * polling covers that latency and costs little when traffic stops.
     */
    public static final int DEFAULT_BUSY_POLL_MICROS = 50;
    public static final int MAX_BUSY_POLL_MICROS = 1_000_000;

    private final byte[] mac;
    private final int mtu;
    private final int queuePairs;
    private final int maxQueueSize;
    private final int speedMbps;
    private final boolean fullDuplex;
    private final int busyPollMicros;

    private NetDeviceConfig(Builder b) {
        this.mac = b.mac.clone();
        this.mtu = b.mtu;
        this.queuePairs = b.queuePairs;
        this.maxQueueSize = b.maxQueueSize;
        this.speedMbps = b.speedMbps;
        this.fullDuplex = b.fullDuplex;
        this.busyPollMicros = b.busyPollMicros;
    }

    public static Builder builder() {
        return new Builder();
    }

    public byte[] mac() {
        return mac.clone();
    }

    public int mtu() {
        return mtu;
    }

    public int queuePairs() {
        return queuePairs;
    }

    public int maxQueueSize() {
        return maxQueueSize;
    }

    /** Link speed in Mbit/s, -1 for unknown (5.1.4: 0xffffffff). */
    public int speedMbps() {
        return speedMbps;
    }

    public boolean fullDuplex() {
        return fullDuplex;
    }

    /**
     * How long a queue pair's thread keeps polling its rings after a busy round before it asks for kicks and
     * sleeps (0: never polls). See {@code QueuePairLoop}.
     */
    public int busyPollMicros() {
        return busyPollMicros;
    }

    /** Builder with the defaults a QEMU user expects: 52:54:00:12:34:56, MTU 1500, 1 pair, queues up to 1024. */
    public static final class Builder {
        private byte[] mac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
        private int mtu = 1500;
        private int queuePairs = 1;
        private int maxQueueSize = 1024;
        private int speedMbps = 10_000;
        private boolean fullDuplex = true;
        private int busyPollMicros = DEFAULT_BUSY_POLL_MICROS;

        public Builder mac(byte[] v) {
            if (v == null || v.length != 6) {
                throw new IllegalArgumentException("mac must be 6 bytes, got "
                        + (v == null ? "null" : Arrays.toString(v)));
            }
            this.mac = v.clone();
            return this;
        }

        public Builder mtu(int v) {
            // 5.1.4.1: the device MUST set mtu between 68 and 65535.
            if (v < 68 || v > 65535) {
                throw new IllegalArgumentException("mtu " + v + " is outside 68..65535");
            }
            this.mtu = v;
            return this;
        }

        public Builder queuePairs(int v) {
            if (v < 1 || v > MAX_QUEUE_PAIRS) {
                throw new IllegalArgumentException("queue pairs " + v + " is outside 1.." + MAX_QUEUE_PAIRS);
            }
            this.queuePairs = v;
            return this;
        }

        public Builder maxQueueSize(int v) {
            if (v < 1 || v > 32768 || Integer.bitCount(v) != 1) {
                throw new IllegalArgumentException("max queue size " + v + " must be a power of two in 1..32768");
            }
            this.maxQueueSize = v;
            return this;
        }

        public Builder speedMbps(int v) {
            this.speedMbps = v;
            return this;
        }

        public Builder fullDuplex(boolean v) {
            this.fullDuplex = v;
            return this;
        }

        public Builder busyPollMicros(int v) {
            if (v < 0 || v > MAX_BUSY_POLL_MICROS) {
                throw new IllegalArgumentException("busy poll " + v + " us is outside 0.." + MAX_BUSY_POLL_MICROS);
            }
            this.busyPollMicros = v;
            return this;
        }

        public NetDeviceConfig build() {
            return new NetDeviceConfig(this);
        }
    }
}
