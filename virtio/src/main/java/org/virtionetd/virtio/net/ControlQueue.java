package org.virtionetd.virtio.net;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.queue.DescriptorChain;
import org.virtionetd.virtio.queue.QueueException;
import org.virtionetd.virtio.queue.Virtqueue;

/**
 * The control virtqueue (5.1.6.5): each chain holds {@code u8 class, u8 command, data...} device-readable and one
 * device-writable {@code u8 ack}. Not a hot path: commands are copied out of guest memory.
 */
final class ControlQueue {
    static final int CLASS_RX = 0;
    static final int CLASS_MAC = 1;
    static final int CLASS_VLAN = 2;
    static final int CLASS_ANNOUNCE = 3;
    static final int CLASS_MQ = 4;
    static final int CLASS_GUEST_OFFLOADS = 5;
    static final int OK = 0;
    static final int ERR = 1;
    /** The largest command we read: a MAC table of a few thousand entries. */
    private static final int MAX_COMMAND = 64 * 1024;

    private final Virtqueue queue;
    private final DescriptorChain chain;
    private final NetCounters counters;
    private final DeviceContext device;
    private final ControlCommands commands;

    ControlQueue(Virtqueue queue, NetCounters counters, DeviceContext device, ControlCommands commands) {
        this.queue = queue;
        this.chain = new DescriptorChain(queue.size());
        this.counters = counters;
        this.device = device;
        this.commands = commands;
    }

    /** Handles every available command; returns false if the ring is unusable (NEEDS_RESET was set). */
    boolean process() {
        boolean any = false;
        boolean ok = true;
        while (true) {
            try {
                if (!queue.pop(chain)) {
                    break;
                }
                queue.addUsed(chain, handle());
            } catch (QueueException e) {
                if (e.kind().fatal()) {
                    counters.needsReset.increment();
                    device.needsReset(queue.index(), e.getMessage());
                    ok = false;
                    break;
                }
                counters.invalidChains.increment();
                device.logOnce().warn("ctrl-chain-" + e.kind(), "control queue: " + e.getMessage());
                queue.addUsed(chain, 0);
            }
            any = true;
        }
        if (any) {
            queue.publishUsedAndNotify(counters);
        }
        return ok;
    }

    /** Executes the command of the chain just popped; returns the used length (1: ack written, 0: malformed). */
    private int handle() {
        int head = chain.head();
        int writable = chain.count() - chain.readableCount();
        long readable = chain.readableBytes();
        if (writable == 0 || readable < 2 || readable > MAX_COMMAND) {
            counters.invalidChains.increment();
            device.logOnce().warn("ctrl-shape", "control queue: chain " + head + " has " + readable
                    + " readable bytes and " + writable + " writable descriptors; expected class, command and an ack");
            return 0;
        }
        GuestMemory memory = queue.memory();
        byte[] cmd = new byte[(int) readable];
        int at = 0;
        try {
            for (int i = 0; i < chain.readableCount(); i++) {
                int len = chain.length(i);
                memory.read(chain.address(i), cmd, at, len);
                at += len;
            }
            boolean ok = execute(cmd);
            (ok ? counters.controlOk : counters.controlErr).increment();
            int ackAt = chain.readableCount();
            memory.write(chain.address(ackAt), new byte[] {(byte) (ok ? OK : ERR)}, 0, 1);
            return 1;
        } catch (GuestMemoryException e) {
            counters.invalidChains.increment();
            device.logOnce().warn("ctrl-memory", "control queue: " + e.getMessage());
            return 0;
        }
    }

    private boolean execute(byte[] c) {
        int cls = c[0] & 0xff;
        int command = c[1] & 0xff;
        int dataLen = c.length - 2;
        long f = device.negotiated();
        switch (cls) {
            case CLASS_RX:
                // 5.1.6.5.1: PROMISC/ALLMULTI need CTRL_RX; ALLUNI/NOMULTI/NOUNI/NOBCAST need CTRL_RX_EXTRA.
                if (dataLen != 1 || command > 5 || !VirtioNetFeature.has(f, VirtioNetFeature.CTRL_RX)
                        || (command >= 2 && !VirtioNetFeature.has(f, VirtioNetFeature.CTRL_RX_EXTRA))) {
                    return reject(cls, command, dataLen);
                }
                return commands.setRxMode(command, c[2] != 0);
            case CLASS_MAC:
                if (command == 0 && VirtioNetFeature.has(f, VirtioNetFeature.CTRL_RX)) {
                    return macTables(c);
                }
                if (command == 1 && dataLen == 6 && VirtioNetFeature.has(f, VirtioNetFeature.CTRL_MAC_ADDR)) {
                    return commands.setMacAddress(java.util.Arrays.copyOfRange(c, 2, 8));
                }
                return reject(cls, command, dataLen);
            case CLASS_VLAN:
                if (command > 1 || dataLen != 2 || !VirtioNetFeature.has(f, VirtioNetFeature.CTRL_VLAN)) {
                    return reject(cls, command, dataLen);
                }
                int vid = (c[2] & 0xff) | (c[3] & 0xff) << 8;
                if (vid >= 4096) {
                    return reject(cls, command, dataLen);
                }
                return commands.setVlan(vid, command == 0);
            case CLASS_ANNOUNCE:
                if (command != 0 || dataLen != 0 || !VirtioNetFeature.has(f, VirtioNetFeature.GUEST_ANNOUNCE)) {
                    return reject(cls, command, dataLen);
                }
                return commands.announceAck();
            case CLASS_MQ:
                if (command != 0 || dataLen != 2 || !VirtioNetFeature.has(f, VirtioNetFeature.MQ)) {
                    return reject(cls, command, dataLen);
                }
                return commands.setQueuePairs((c[2] & 0xff) | (c[3] & 0xff) << 8);
            case CLASS_GUEST_OFFLOADS:
                if (command != 0 || dataLen != 8 || !VirtioNetFeature.has(f, VirtioNetFeature.CTRL_GUEST_OFFLOADS)) {
                    return reject(cls, command, dataLen);
                }
                long v = 0;
                for (int i = 7; i >= 0; i--) {
                    v = (v << 8) | (c[2 + i] & 0xff);
                }
                return commands.setGuestOffloads(v);
            default:
                return reject(cls, command, dataLen);
        }
    }

    /** 5.1.6.5.2: two tables, unicast then multicast, each {@code le32 entries; u8 macs[entries][6]}. */
    private boolean macTables(byte[] c) {
        int at = 2;
        long[][] tables = new long[2][];
        for (int t = 0; t < 2; t++) {
            if (c.length - at < 4) {
                return reject(CLASS_MAC, 0, c.length - 2);
            }
            long entries = (c[at] & 0xff) | (c[at + 1] & 0xff) << 8 | (c[at + 2] & 0xff) << 16
                    | (long) (c[at + 3] & 0xff) << 24;
            at += 4;
            if (entries * 6 > c.length - at) {
                return reject(CLASS_MAC, 0, c.length - 2);
            }
            tables[t] = new long[(int) entries];
            for (int i = 0; i < entries; i++) {
                tables[t][i] = RxFilter.macToLong(c, at);
                at += 6;
            }
        }
        if (at != c.length) {
            return reject(CLASS_MAC, 0, c.length - 2);
        }
        return commands.setMacTables(tables[0], tables[1]);
    }

    private boolean reject(int cls, int command, int dataLen) {
        device.logOnce().warn("ctrl-" + cls + "-" + command, "control queue: refused class " + cls + " command "
                + command + " with " + dataLen + " data bytes (unknown, malformed or not negotiated)");
        return false;
    }
}
