package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.os.EventFd;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The driver side of one split virtqueue (virtio 1.2, 2.7), written from the spec alone: it owns a descriptor
 * table, an available ring and a used ring in real guest memory, places descriptor chains whose buffers are
 * scattered by a {@link GuestAllocator}, publishes them with the barriers of 2.7.13, and reads the used ring back.
 * It checks what the device wrote (used ids, lengths, index jumps) and fails with an {@link AssertionError} that
 * names the wrong value, so that a device bug surfaces in the test that caused it.
 *
 * <p>Little-endian absolute access on {@link GuestMemory#slice} buffers only; nothing of the device is used.
 * One thread drives a queue; the device reads concurrently.
 */
public final class SplitQueueDriver implements QueueDriver {
    public static final int VIRTQ_DESC_F_NEXT = 1;
    public static final int VIRTQ_DESC_F_WRITE = 2;
    public static final int VIRTQ_DESC_F_INDIRECT = 4;
    public static final int VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
    public static final int VIRTQ_USED_F_NO_NOTIFY = 1;
    /** What writable buffers are filled with before the device sees them: bytes the device did not write show. */
    public static final byte WRITABLE_FILL = (byte) 0xA5;

    private static final VarHandle LE16 = MethodHandles.byteBufferViewVarHandle(short[].class,
            ByteOrder.LITTLE_ENDIAN);

    private final GuestMemory memory;
    private final GuestAllocator allocator;
    private final RingLayout layout;
    private final String name;
    private final int size;
    private final ByteBuffer desc;
    private final ByteBuffer avail;
    private final ByteBuffer used;
    private final ArrayDeque<Integer> freeSlots = new ArrayDeque<>();
    private final Map<Integer, Chain> outstanding = new TreeMap<>();
    /** Outstanding chains in the order they were made available (IN_ORDER: the order they come back). */
    private final AvailOrder availOrder = new AvailOrder();
    /** The last used elements read, for failure messages. */
    private final ArrayDeque<UsedElement> recentUsed = new ArrayDeque<>();
    private int availIdx;
    private int pending;
    private int lastSeenUsed;
    private boolean eventIdx;
    private boolean inOrder;
    private EventFd kick;
    private long notifications;
    private long suppressedNotifications;

    private SplitQueueDriver(GuestAllocator allocator, RingLayout layout, String name) {
        this.memory = allocator.memory();
        this.allocator = allocator;
        this.layout = layout;
        this.name = name;
        this.size = layout.size();
        try {
            this.desc = memory.slice(layout.descTable(), RingLayout.descTableBytes(size));
            this.avail = memory.slice(layout.availRing(), RingLayout.availRingBytes(size));
            this.used = memory.slice(layout.usedRing(), RingLayout.usedRingBytes(size));
        } catch (GuestMemoryException e) {
            throw new IllegalArgumentException("queue " + name + ": " + layout + " is not inside guest memory: "
                    + e.getMessage(), e);
        }
        // 2.7.10: the driver MUST initialize flags in the used ring to 0 when allocating it; fresh rings are zero.
        zero(desc);
        zero(avail);
        zero(used);
        List<Integer> slots = new ArrayList<>();
        for (int i = 0; i < size; i++) {
            slots.add(i);
        }
        // Chains use descriptors in a random order, so that a device that follows "next" wrongly reads garbage.
        Collections.shuffle(slots, allocator.random());
        freeSlots.addAll(slots);
    }

    /** Modern layout: three separate allocations with the minimum alignments 16 / 2 / 4, scattered. */
    public static SplitQueueDriver modern(GuestAllocator allocator, int size, String name) {
        RingLayout.checkSize(size);
        long d = allocator.allocate(RingLayout.descTableBytes(size), RingLayout.DESC_ALIGN, false);
        long a = allocator.allocate(RingLayout.availRingBytes(size), RingLayout.AVAIL_ALIGN, false);
        long u = allocator.allocate(RingLayout.usedRingBytes(size), RingLayout.USED_ALIGN, false);
        return new SplitQueueDriver(allocator, new RingLayout(size, d, a, u), name);
    }

    /** Legacy layout: one area, used ring at the next 4096 boundary after the available ring. */
    public static SplitQueueDriver legacy(GuestAllocator allocator, int size, String name) {
        RingLayout.checkSize(size);
        long base = allocator.allocate(RingLayout.legacyBytes(size), RingLayout.LEGACY_QUEUE_ALIGN, false);
        return new SplitQueueDriver(allocator, RingLayout.legacy(base, size), name);
    }

    /** Rings at addresses the caller chose (they must not be handed out by the allocator). */
    public static SplitQueueDriver at(GuestAllocator allocator, RingLayout layout, String name) {
        return new SplitQueueDriver(allocator, layout, name);
    }

    public String name() {
        return name;
    }

    public int size() {
        return size;
    }

    public RingLayout layout() {
        return layout;
    }

    public long descTableAddress() {
        return layout.descTable();
    }

    public long availRingAddress() {
        return layout.availRing();
    }

    public long usedRingAddress() {
        return layout.usedRing();
    }

    @Override
    public long descAddress() {
        return layout.descTable();
    }

    @Override
    public long driverAreaAddress() {
        return layout.availRing();
    }

    @Override
    public long deviceAreaAddress() {
        return layout.usedRing();
    }

    public GuestMemory memory() {
        return memory;
    }

    public GuestAllocator allocator() {
        return allocator;
    }

    /** Whether VIRTIO_F_EVENT_IDX was negotiated: it changes both notification suppression rules (2.7.7, 2.7.10). */
    public void setEventIdx(boolean negotiated) {
        this.eventIdx = negotiated;
    }

    public boolean eventIdx() {
        return eventIdx;
    }

    /** Whether VIRTIO_F_IN_ORDER was negotiated: one used element may then return a whole batch (2.7.9). */
    public void setInOrder(boolean negotiated) {
        inOrder = negotiated;
    }

    /** Where {@link #publish()} sends available buffer notifications; null: the device polls. */
    public void setKick(EventFd kick) {
        this.kick = kick;
    }

    /** Available buffer notifications the driver sent (or would have sent, without a kick fd). */
    public long notificationsSent() {
        return notifications;
    }

    /** Publishes after which the device's flags / avail_event said no notification was needed. */
    public long notificationsSuppressed() {
        return suppressedNotifications;
    }

    public int freeSlotCount() {
        return freeSlots.size();
    }

    /** Heads made available and not yet returned by the device. */
    public Map<Integer, Chain> outstanding() {
        return Collections.unmodifiableMap(new LinkedHashMap<>(outstanding));
    }

    // ---- adding chains (2.7.13) ----

    /** Places a chain of direct descriptors and publishes it; returns the chain (its head is {@link Chain#head()}). */
    public Chain addChain(Buffer... buffers) {
        Chain c = placeChain(List.of(buffers), List.of());
        publish();
        return c;
    }

    /** Places one descriptor with VIRTQ_DESC_F_INDIRECT pointing at a table of {@code buffers} and publishes it. */
    public Chain addIndirectChain(Buffer... buffers) {
        Chain c = placeChain(List.of(), List.of(buffers));
        publish();
        return c;
    }

    /**
     * Places (without publishing) zero or more direct descriptors followed by, if {@code indirect} is not empty,
     * one descriptor referring to an indirect table of them: 2.7.5.3.2 says the device MUST handle that mix.
     * Writable elements must come after readable ones (2.7.4.2); use {@link HostileChains} to break that rule.
     */
    public Chain placeChain(List<Buffer> direct, List<Buffer> indirect) {
        List<Buffer> all = new ArrayList<>(direct);
        all.addAll(indirect);
        QueueDriver.requireReadableFirst(name, all);
        int slotsNeeded = direct.size() + (indirect.isEmpty() ? 0 : 1);
        requireSlots(slotsNeeded);
        List<Placed> placed = new ArrayList<>();
        for (Buffer b : all) {
            placed.add(place(b));
        }
        List<Integer> slots = takeSlots(slotsNeeded);
        for (int i = 0; i < direct.size(); i++) {
            Placed p = placed.get(i);
            boolean more = i + 1 < slotsNeeded;
            writeDescriptor(slots.get(i), p.address(), p.length(),
                    (p.writable() ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0),
                    more ? slots.get(i + 1) : 0);
        }
        long table = -1;
        int tableBytes = 0;
        if (!indirect.isEmpty()) {
            tableBytes = 16 * indirect.size();
            table = allocator.allocate(tableBytes, 16, false);
            for (int i = 0; i < indirect.size(); i++) {
                Placed p = placed.get(direct.size() + i);
                boolean more = i + 1 < indirect.size();
                writeIndirectEntry(table, i, p.address(), p.length(),
                        (p.writable() ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0), more ? i + 1 : 0);
            }
            writeDescriptor(slots.get(slotsNeeded - 1), table, tableBytes, VIRTQ_DESC_F_INDIRECT, 0);
        }
        Chain c = new Chain(slots.get(0), slots, placed, table, tableBytes, indirect.isEmpty() ? "chain"
                : direct.isEmpty() ? "indirect chain" : "mixed chain");
        placeHead(c);
        return c;
    }

    /**
     * Makes the placed heads visible: a release store of avail idx after the ring entries and descriptors
     * (2.7.13.3.1), then a full fence before reading the device's suppression fields (2.7.13.4.1), then a kick
     * if they ask for one. Returns whether a notification was due.
     */
    public boolean publish() {
        if (pending == 0) {
            return false;
        }
        int old = availIdx;
        int now = (availIdx + pending) & 0xffff;
        LE16.setRelease(avail, 2, (short) now);
        availIdx = now;
        pending = 0;
        VarHandle.fullFence();
        boolean needed = eventIdx
                ? needEvent(availEvent(), now, old)
                : (usedFlags() & VIRTQ_USED_F_NO_NOTIFY) == 0;
        if (needed) {
            notifications++;
            if (kick != null) {
                kick.signal();
            }
        } else {
            suppressedNotifications++;
        }
        return needed;
    }

    // ---- notification suppression (2.7.7, 2.7.10) ----

    /**
     * vring_need_event: true if moving an index from {@code oldIdx} to {@code newIdx} passed {@code eventIdx},
     * i.e. the entry at {@code eventIdx} was written in this step. All arithmetic is modulo 2^16.
     */
    public static boolean needEvent(int eventIdx, int newIdx, int oldIdx) {
        return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
    }

    /** Sets or clears VIRTQ_AVAIL_F_NO_INTERRUPT (only meaningful without EVENT_IDX: 2.7.7.1). */
    public void setNoInterrupt(boolean suppress) {
        LE16.setRelease(avail, 0, (short) (suppress ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0));
        VarHandle.fullFence();
    }

    /** Writes avail flags raw (hostile tests: with EVENT_IDX the device must ignore the low bit). */
    public void writeAvailFlags(int flags) {
        LE16.setRelease(avail, 0, (short) flags);
        VarHandle.fullFence();
    }

    public int availFlags() {
        return (short) LE16.getAcquire(avail, 0) & 0xffff;
    }

    /** used_event: "interrupt me when the used ring entry with this index is written" (2.7.7). */
    public void setUsedEvent(int usedEvent) {
        LE16.setRelease(avail, 4 + 2 * size, (short) usedEvent);
        VarHandle.fullFence();
    }

    public int usedEvent() {
        return (short) LE16.getAcquire(avail, 4 + 2 * size) & 0xffff;
    }

    /** avail_event as the device wrote it (meaningful only with EVENT_IDX). */
    public int availEvent() {
        return (short) LE16.getAcquire(used, 4 + 8 * size) & 0xffff;
    }

    public int usedFlags() {
        return (short) LE16.getAcquire(used, 0) & 0xffff;
    }

    @Override
    public void suppressUsedNotifications(boolean suppress) {
        setNoInterrupt(suppress);
    }

    /** virtqueue_enable_cb with EVENT_IDX: used_event at the entry this driver reads next. */
    @Override
    public void armUsedNotification() {
        if (eventIdx) {
            setUsedEvent(lastSeenUsed);
        }
    }

    @Override
    public void notifyOnlyAfter(int entries) {
        setUsedEvent((lastSeenUsed + entries) & 0xffff);
    }

    @Override
    public boolean hasUsed() {
        return usedPending() != 0;
    }

    /**
     * Whether the device was required to send a used buffer notification when the used idx moved from
     * {@code oldUsedIdx} to {@code newUsedIdx}, given what this driver wrote: with EVENT_IDX, vring_need_event
     * on used_event (2.7.7.2: MUST when the entry at used_event was written); without, flags == 0 (MUST notify).
     */
    public boolean deviceMustNotify(int oldUsedIdx, int newUsedIdx) {
        if (((newUsedIdx - oldUsedIdx) & 0xffff) == 0) {
            return false;
        }
        return eventIdx ? needEvent(usedEvent(), newUsedIdx, oldUsedIdx)
                : (availFlags() & VIRTQ_AVAIL_F_NO_INTERRUPT) == 0;
    }

    // ---- used ring (2.7.8, 2.7.14) ----

    /** The used idx as the device published it (acquire). */
    public int usedIdx() {
        return (short) LE16.getAcquire(used, 2) & 0xffff;
    }

    /** The avail idx this driver published. */
    public int availIdx() {
        return availIdx;
    }

    /** The used idx up to which this driver has read. */
    public int lastSeenUsed() {
        return lastSeenUsed;
    }

    /** Number of used entries the device published that this driver has not read yet. */
    public int usedPending() {
        return (usedIdx() - lastSeenUsed) & 0xffff;
    }

    /**
     * Reads the used entries published since the last poll, checks each against the chains this driver made
     * available, and recycles their descriptor slots (buffers stay allocated until {@link #releaseBuffers}).
     */
    public List<UsedElement> pollUsed() {
        int idx = usedIdx();
        int n = (idx - lastSeenUsed) & 0xffff;
        if (n > size) {
            throw new AssertionError("queue " + name + ": used idx " + idx + " is " + n
                    + " entries past the last seen " + lastSeenUsed + ", more than the queue size " + size
                    + "; " + describe());
        }
        List<UsedElement> out = new ArrayList<>(n);
        for (int i = 0; i < n; ) {
            int ringIndex = (lastSeenUsed + i) & 0xffff;
            int slot = ringIndex % size;
            int id = used.getInt(4 + 8 * slot);
            int len = used.getInt(8 + 8 * slot);
            Chain c = outstanding.get(id);
            if (c == null) {
                throw new AssertionError("queue " + name + ": used ring entry " + ringIndex + " has id " + id
                        + " (len " + Integer.toUnsignedString(len) + ") which is not an outstanding head; "
                        + describe());
            }
            if (Integer.toUnsignedLong(len) > c.writableLength()) {
                throw new AssertionError("queue " + name + ": used ring entry " + ringIndex + " for head " + id
                        + " says len " + Integer.toUnsignedString(len) + " but the chain has only "
                        + c.writableLength() + " device-writable bytes: " + c);
            }
            List<Chain> batch = availOrder.returnedBy(c, inOrder);
            if (i + batch.size() > n) {
                throw new AssertionError("queue " + name + ": IN_ORDER used ring entry " + ringIndex + " for head " + id
                        + " returns " + batch.size() + " buffers, but used idx " + idx + " moved only " + (n - i)
                        + " past it (2.7.9: used idx moves by the batch); " + describe());
            }
            for (Chain b : batch) {
                outstanding.remove(b.head());
                freeSlots.addAll(b.slots());
                UsedElement e = new UsedElement(ringIndex, b.head(), b == c ? len : 0, b);
                out.add(e);
                recentUsed.addLast(e);
                if (recentUsed.size() > 8) {
                    recentUsed.removeFirst();
                }
            }
            i += batch.size();
        }
        lastSeenUsed = idx;
        return out;
    }


    @Override
    public void releaseBuffers(Chain chain) {
        Placement.release(allocator, chain);
    }

    /** A one-paragraph picture of the queue for failure messages. */
    public String describe() {
        StringBuilder sb = new StringBuilder();
        sb.append("queue ").append(name).append(' ').append(layout)
                .append(": avail idx ").append(availIdx).append(pending > 0 ? " (+" + pending + " unpublished)" : "")
                .append(", avail flags ").append(availFlags())
                .append(eventIdx ? ", used_event " + usedEvent() + ", avail_event " + availEvent() : "")
                .append(", used idx ").append(usedIdx()).append(", used flags ").append(usedFlags())
                .append(", last seen used ").append(lastSeenUsed)
                .append(", outstanding heads ").append(outstanding.keySet())
                .append(", recent used ").append(recentUsed)
                .append(", unread used entries [");
        int n = Math.min(usedPending(), 8);
        for (int i = 0; i < n; i++) {
            int slot = (lastSeenUsed + i) % size;
            sb.append(i == 0 ? "" : ", ").append("{id=").append(used.getInt(4 + 8 * slot)).append(" len=")
                    .append(Integer.toUnsignedString(used.getInt(8 + 8 * slot))).append('}');
        }
        return sb.append(']').toString();
    }

    // ---- raw access for HostileChains and tests ----

    void requireSlots(int n) {
        if (freeSlots.size() < n) {
            throw new IllegalStateException("queue " + name + " has " + freeSlots.size()
                    + " free descriptors, the chain needs " + n + "; poll the used ring first");
        }
    }

    List<Integer> takeSlots(int n) {
        requireSlots(n);
        List<Integer> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(freeSlots.poll());
        }
        return out;
    }

    /** Writes descriptor {@code index} of the queue's table. */
    public void writeDescriptor(int index, long addr, int len, int flags, int next) {
        int o = 16 * index;
        desc.putLong(o, addr);
        desc.putInt(o + 8, len);
        desc.putShort(o + 12, (short) flags);
        desc.putShort(o + 14, (short) next);
    }

    /** Reads descriptor {@code index} back: {addr, len, flags, next}. */
    public long[] readDescriptor(int index) {
        int o = 16 * index;
        return new long[] {desc.getLong(o), Integer.toUnsignedLong(desc.getInt(o + 8)),
                desc.getShort(o + 12) & 0xffff, desc.getShort(o + 14) & 0xffff};
    }

    /** Writes entry {@code index} of an indirect table at guest address {@code table}. */
    public void writeIndirectEntry(long table, int index, long addr, int len, int flags, int next) {
        ByteBuffer b = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(0, addr).putInt(8, len).putShort(12, (short) flags).putShort(14, (short) next);
        write(table + 16L * index, b.array());
    }

    /** Puts a head (or any raw value) into the next available ring entry, unpublished. */
    void placeRaw(int value) {
        avail.putShort(4 + 2 * ((availIdx + pending) % size), (short) value);
        pending++;
    }

    void placeHead(Chain c) {
        outstanding.put(c.head(), c);
        availOrder.offered(c);
        placeRaw(c.head());
    }

    /** Stores avail idx raw, without moving the driver's own count (hostile: idx jumps). */
    void storeAvailIdxRaw(int value) {
        LE16.setRelease(avail, 2, (short) value);
        VarHandle.fullFence();
    }

    Placed place(Buffer b) {
        return Placement.place(allocator, b, name);
    }

    private void write(long gpa, byte[] data) {
        Placement.write(memory, gpa, data, name);
    }

    private static void zero(ByteBuffer b) {
        for (int i = 0; i < b.capacity(); i++) {
            b.put(i, (byte) 0);
        }
    }
}
