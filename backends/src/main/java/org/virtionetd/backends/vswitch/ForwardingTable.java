package org.virtionetd.backends.vswitch;

/**
 * The learning table of a {@link VirtualSwitch} (IEEE 802.1Q "filtering database"): which port a MAC address was
 * last seen on, per VLAN, so that the same MAC on two VLANs is two entries. Fixed size, open addressing with linear
 * probing over primitive arrays: no allocation per lookup. Entries age out after {@code agingNanos} without a frame
 * from that address (802.1Q's default ageing time is 300 s); an aged or removed entry stays as a tombstone that the
 * next insertion on its probe path reuses, so probe chains are never cut.
 *
 * <p>Every port's thread learns and looks up: methods are synchronized (one short critical section per frame).
 */
final class ForwardingTable {
    static final long DEFAULT_AGING_NANOS = 300_000_000_000L;
    private static final long EMPTY = -1;

    private final long[] keys;
    private final int[] ports;
    private final long[] lastSeen;
    private final int mask;
    private final long agingNanos;
    private int live;
    private long full;

    ForwardingTable(int capacityPowerOfTwo, long agingNanos) {
        if (Integer.bitCount(capacityPowerOfTwo) != 1) {
            throw new IllegalArgumentException("forwarding table size " + capacityPowerOfTwo + " is not a power of two");
        }
        this.keys = new long[capacityPowerOfTwo];
        this.ports = new int[capacityPowerOfTwo];
        this.lastSeen = new long[capacityPowerOfTwo];
        this.mask = capacityPowerOfTwo - 1;
        this.agingNanos = agingNanos;
        java.util.Arrays.fill(keys, EMPTY);
    }

    /** The key of a 48-bit MAC on a 12-bit VLAN id. */
    static long key(long mac, int vid) {
        return (mac << 12) | (vid & 0xfff);
    }

    private static int hash(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h >>> 40);
    }

    /** Records that {@code key} was seen on {@code port} at {@code now}. */
    synchronized void learn(long key, int port, long now) {
        int i = hash(key) & mask;
        int reuse = -1;
        for (int probes = 0; probes <= mask; probes++, i = (i + 1) & mask) {
            long k = keys[i];
            if (k == key) {
                if (ports[i] < 0) {
                    live++;
                }
                ports[i] = port;
                lastSeen[i] = now;
                return;
            }
            if (k == EMPTY) {
                break;
            }
            if (reuse < 0 && (ports[i] < 0 || now - lastSeen[i] > agingNanos)) {
                reuse = i;
            }
        }
        int at = reuse >= 0 ? reuse : (keys[i] == EMPTY ? i : -1);
        if (at < 0) {
            full++;
            return;
        }
        if (reuse >= 0 && ports[at] >= 0) {
            live--; // an aged entry gives way
        }
        keys[at] = key;
        ports[at] = port;
        lastSeen[at] = now;
        live++;
    }

    /** The port {@code key} was last seen on, or -1 if unknown or aged out. */
    synchronized int lookup(long key, long now) {
        int i = hash(key) & mask;
        for (int probes = 0; probes <= mask; probes++, i = (i + 1) & mask) {
            long k = keys[i];
            if (k == key) {
                return ports[i] >= 0 && now - lastSeen[i] <= agingNanos ? ports[i] : -1;
            }
            if (k == EMPTY) {
                return -1;
            }
        }
        return -1;
    }

    /** Forgets every address learned on {@code port} (it left the switch). */
    synchronized void forgetPort(int port) {
        for (int i = 0; i <= mask; i++) {
            if (keys[i] != EMPTY && ports[i] == port) {
                ports[i] = -1;
                live--;
            }
        }
    }

    /** Entries that were learned and not forgotten (aged ones included until reused). */
    synchronized int size() {
        return live;
    }

    /** Addresses not learned because every slot on their probe path was live. */
    synchronized long fullCount() {
        return full;
    }
}
