package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.device.VirtioDevice;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.queue.Notifier;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A VirtioDevice that records what the transport asks, checks the order the interface demands (memory before
 * queues, queues stopped before memory changes, setQueue before start) and applies the spec's queue rules like
 * the real device: size 0, above 32768 or not a power of two is refused (2.7), addresses must be aligned and
 * inside guest memory. Every method is synchronized: the server calls from its thread, tests read from theirs.
 */
final class FakeVirtioDevice implements VirtioDevice {
    static final long OFFERED = VirtioFeature.bit(VirtioFeature.VERSION_1) | VirtioFeature.bit(0) /* CSUM */
            | VirtioFeature.bit(5) /* MAC */ | VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX);

    static final class Queue {
        int size;
        long desc;
        long avail;
        long used;
        boolean configured;
        int nextAvail;
        boolean running;
        EventFd kick;
        Notifier notifier = Notifier.NONE;
        Boolean enabled;
    }

    private final Queue[] queues;
    private final List<String> calls = new ArrayList<>();
    private final List<String> violations = new ArrayList<>();
    private GuestMemory memory;
    private long acked;
    private int status;
    private final byte[] config = {0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0, 1, 0, (byte) 0xdc, 0x05};
    private int mtu;
    private byte[] rarp;
    private int resets;

    FakeVirtioDevice(int queueCount) {
        queues = new Queue[queueCount];
        for (int i = 0; i < queueCount; i++) {
            queues[i] = new Queue();
        }
    }

    // ---- what tests read ----

    synchronized List<String> calls() {
        return new ArrayList<>(calls);
    }

    synchronized List<String> violations() {
        return new ArrayList<>(violations);
    }

    synchronized Queue queue(int i) {
        Queue q = queues[i];
        Queue copy = new Queue();
        copy.size = q.size;
        copy.desc = q.desc;
        copy.avail = q.avail;
        copy.used = q.used;
        copy.configured = q.configured;
        copy.nextAvail = q.nextAvail;
        copy.running = q.running;
        copy.kick = q.kick;
        copy.notifier = q.notifier;
        copy.enabled = q.enabled;
        return copy;
    }

    synchronized GuestMemory memory() {
        return memory;
    }

    synchronized int resets() {
        return resets;
    }

    synchronized int mtu() {
        return mtu;
    }

    synchronized byte[] rarp() {
        return rarp;
    }

    /** The data path consumed {@code n} more available buffers. */
    synchronized void advance(int index, int n) {
        queues[index].nextAvail = (queues[index].nextAvail + n) & 0xffff;
    }

    synchronized boolean anyRunning() {
        return Arrays.stream(queues).anyMatch(q -> q.running);
    }

    private void call(String s) {
        calls.add(s);
    }

    private Queue checkedQueue(int index) throws VirtioException {
        if (index < 0 || index >= queues.length) {
            throw new VirtioException(VirtioException.Kind.QUEUE_INDEX, "queue " + index + " of " + queues.length);
        }
        return queues[index];
    }

    // ---- VirtioDevice ----

    @Override
    public int deviceType() {
        return 1;
    }

    @Override
    public synchronized int queueCount() {
        return queues.length;
    }

    @Override
    public int maxQueueSize() {
        return 32768;
    }

    @Override
    public long offeredFeatures() {
        return OFFERED;
    }

    @Override
    public synchronized long ackedFeatures() {
        return acked;
    }

    @Override
    public synchronized void setDriverFeatures(long features) throws VirtioException {
        call("setDriverFeatures 0x" + Long.toHexString(features));
        if ((features & ~OFFERED) != 0) {
            throw new VirtioException(VirtioException.Kind.FEATURES, "feature bits 0x"
                    + Long.toHexString(features & ~OFFERED) + " were not offered");
        }
        acked = features;
    }

    @Override
    public synchronized void setMemory(GuestMemory memory) {
        call("setMemory " + memory.regions().size());
        for (int i = 0; i < queues.length; i++) {
            if (queues[i].running) {
                violations.add("setMemory while queue " + i + " runs");
            }
        }
        this.memory = memory;
    }

    @Override
    public synchronized void setQueue(int index, int size, long desc, long avail, long used) throws VirtioException {
        call("setQueue " + index + " " + size + " 0x" + Long.toHexString(desc) + " 0x" + Long.toHexString(avail)
                + " 0x" + Long.toHexString(used));
        Queue q = checkedQueue(index);
        if (q.running) {
            violations.add("setQueue on running queue " + index);
        }
        if (size == 0 || size > 32768 || Integer.bitCount(size) != 1) {
            throw new VirtioException(VirtioException.Kind.QUEUE_SIZE, "queue " + index + " size "
                    + Integer.toUnsignedString(size) + " is 0, above 32768 or not a power of two");
        }
        if (memory == null) {
            throw new VirtioException(VirtioException.Kind.STATE, "no guest memory");
        }
        if ((desc & 15) != 0 || (avail & 1) != 0 || (used & 3) != 0) {
            throw new VirtioException(VirtioException.Kind.QUEUE_ADDRESS, "ring address unaligned");
        }
        if (!memory.contains(desc, 16L * size) || !memory.contains(avail, 6 + 2L * size)
                || !memory.contains(used, 6 + 8L * size)) {
            throw new VirtioException(VirtioException.Kind.QUEUE_ADDRESS, "ring outside guest memory");
        }
        q.size = size;
        q.desc = desc;
        q.avail = avail;
        q.used = used;
        q.configured = true;
    }

    @Override
    public synchronized void setQueueBase(int index, int base) throws VirtioException {
        call("setQueueBase " + index + " " + base);
        Queue q = checkedQueue(index);
        if (q.running) {
            violations.add("setQueueBase on running queue " + index);
        }
        q.nextAvail = base;
    }

    @Override
    public synchronized void startQueue(int index, EventFd kick, Notifier notifier) throws VirtioException {
        call("startQueue " + index + (kick == null ? " poll" : " kick"));
        Queue q = checkedQueue(index);
        if (!q.configured || memory == null) {
            throw new VirtioException(VirtioException.Kind.STATE, "queue " + index + " not set up");
        }
        if (q.running) {
            violations.add("startQueue on running queue " + index);
        }
        q.running = true;
        q.kick = kick;
        q.notifier = notifier;
    }

    @Override
    public synchronized void setNotifier(int index, Notifier notifier) {
        call("setNotifier " + index + (notifier == Notifier.NONE ? " none" : " call"));
        queues[index].notifier = notifier;
    }

    @Override
    public synchronized void setQueueEnabled(int index, boolean enabled) {
        call("setQueueEnabled " + index + " " + enabled);
        queues[index].enabled = enabled;
    }

    @Override
    public synchronized int stopQueue(int index) {
        call("stopQueue " + index);
        return stop(index);
    }

    @Override
    public synchronized int pauseQueue(int index) {
        call("pauseQueue " + index);
        return stop(index);
    }

    private int stop(int index) {
        Queue q = queues[index];
        q.running = false;
        q.kick = null;
        return q.nextAvail;
    }

    @Override
    public synchronized boolean queueStarted(int index) {
        return index >= 0 && index < queues.length && queues[index].running;
    }

    @Override
    public synchronized int queueBase(int index) {
        return index >= 0 && index < queues.length ? queues[index].nextAvail : 0;
    }

    @Override
    public synchronized byte[] readConfig(int offset, int length) throws VirtioException {
        if (offset < 0 || length < 0 || offset + length > config.length) {
            throw new VirtioException(VirtioException.Kind.CONFIG, "config " + offset + "+" + length
                    + " beyond " + config.length + " bytes");
        }
        return Arrays.copyOfRange(config, offset, offset + length);
    }

    @Override
    public synchronized void writeConfig(int offset, byte[] data) throws VirtioException {
        if (offset < 0 || offset + data.length > 6) {
            throw new VirtioException(VirtioException.Kind.CONFIG, "only mac is writable");
        }
        System.arraycopy(data, 0, config, offset, data.length);
    }

    @Override
    public synchronized int status() {
        return status;
    }

    @Override
    public synchronized void setStatus(int status) {
        call("setStatus " + status);
        if (status == 0) {
            reset();
            return;
        }
        this.status = status;
    }

    /** When set, {@link #sendRarp} throws it: a fault inside the device, not the front-end's. */
    volatile RuntimeException rarpFault;

    @Override
    public synchronized void sendRarp(byte[] mac) {
        call("sendRarp");
        if (rarpFault != null) {
            throw rarpFault;
        }
        rarp = mac.clone();
    }

    @Override
    public synchronized void setMtu(int mtu) throws VirtioException {
        if (mtu < 68 || mtu > 65535) {
            throw new VirtioException(VirtioException.Kind.CONFIG, "MTU " + mtu + " out of 68..65535");
        }
        this.mtu = mtu;
    }

    @Override
    public synchronized void reset() {
        call("reset");
        resets++;
        for (Queue q : queues) {
            q.running = false;
            q.configured = false;
            q.kick = null;
            q.notifier = Notifier.NONE;
            q.enabled = null;
            q.nextAvail = 0;
        }
        acked = 0;
        status = 0;
        memory = null;
    }

    @Override
    public void close() {
    }
}
