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
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The driver side of one packed virtqueue (virtio 1.2, 2.8), written from the spec alone: a descriptor ring, the
 * driver event suppression structure (written here) and the device event suppression structure (read here), in
 * real guest memory. Chains take consecutive ring slots from the next avail position, each descriptor flagged with
 * the wrap counter of its own slot (so the flags flip in a chain that crosses the ring end), the buffer ID from a
 * free list in the chain's last descriptor, the head's flags written last with release (2.8.21). Used descriptors
 * are read in ring order, flags with acquire, and the read position skips the chain's descriptor count, found by
 * the buffer ID (2.8.6); with VIRTIO_F_IN_ORDER one used descriptor may stand for every buffer up to its ID (2.8.9).
 *
 * <p>Positions are the slot with the wrap counter in bit 15, as in pvirtq_event_suppress.desc. One thread drives it.
 */
public final class PackedQueueDriver implements QueueDriver {
    public static final int DESC_F_NEXT = 1;
    public static final int DESC_F_WRITE = 2;
    public static final int DESC_F_INDIRECT = 4;
    public static final int DESC_F_AVAIL = 1 << 7;
    public static final int DESC_F_USED = 1 << 15;
    public static final int EVENT_FLAGS_ENABLE = 0;
    public static final int EVENT_FLAGS_DISABLE = 1;
    public static final int EVENT_FLAGS_DESC = 2;
    public static final int WRAP = 1 << 15;
    public static final int MAX_SIZE = 32768;
    /** Written as the ID of every descriptor but a chain's last: a device must read the ID from the last (2.8.6). */
    public static final int DECOY_ID = 0xffff;

    private static final VarHandle LE16 = MethodHandles.byteBufferViewVarHandle(short[].class,
            ByteOrder.LITTLE_ENDIAN);

    private final GuestMemory memory;
    private final GuestAllocator allocator;
    private final String name;
    private final int size;
    private final long descAddress;
    private final long driverEventAddress;
    private final long deviceEventAddress;
    private final ByteBuffer desc;
    private final EventSuppression driverEvent;
    private final EventSuppression deviceEvent;
    private final ArrayDeque<Integer> freeIds = new ArrayDeque<>();
    private final Map<Integer, Chain> outstanding = new TreeMap<>();
    /** Outstanding chains in the order they were made available (IN_ORDER: the order they come back). */
    private final AvailOrder availOrder = new AvailOrder();
    private final ArrayDeque<UsedElement> recentUsed = new ArrayDeque<>();
    /** Heads placed and not yet published: slot and flags, written at {@link #publish()}. */
    private final List<int[]> pendingHeads = new ArrayList<>();
    private int pendingDescriptors;
    private int nextAvail;
    private boolean availWrap = true;
    private int nextUsed;
    private boolean usedWrap = true;
    private int freeDescriptors;
    private boolean eventIdx;
    private boolean inOrder;
    private boolean suppressed;
    private EventFd kick;
    private long notifications;
    private long suppressedNotifications;

    private PackedQueueDriver(GuestAllocator allocator, int size, long desc, long driver, long device, String name) {
        checkSize(size);
        this.memory = allocator.memory();
        this.allocator = allocator;
        this.name = name;
        this.size = size;
        this.descAddress = desc;
        this.driverEventAddress = driver;
        this.deviceEventAddress = device;
        ByteBuffer driverArea;
        ByteBuffer deviceArea;
        try {
            this.desc = memory.slice(desc, 16 * size);
            driverArea = memory.slice(driver, 4);
            deviceArea = memory.slice(device, 4);
        } catch (GuestMemoryException e) {
            throw new IllegalArgumentException("queue " + name + ": packed rings at 0x" + Long.toHexString(desc)
                    + " are not inside guest memory: " + e.getMessage(), e);
        }
        this.driverEvent = new EventSuppression(driverArea);
        this.deviceEvent = new EventSuppression(deviceArea);
        // 2.8.21.1: a fresh ring is zero: no descriptor is available for wrap counter 1.
        for (ByteBuffer b : List.of(this.desc, driverArea, deviceArea)) {
            for (int i = 0; i < b.capacity(); i++) {
                b.put(i, (byte) 0);
            }
        }
        List<Integer> ids = new ArrayList<>();
        for (int i = 0; i < size; i++) {
            ids.add(i);
        }
        // IDs in a random order, so that a device that takes the slot for the ID is caught.
        Collections.shuffle(ids, allocator.random());
        freeIds.addAll(ids);
        freeDescriptors = size;
    }

    /** A packed queue of {@code size} (1..32768, any number, 2.8): three allocations aligned 16 / 4 / 4 (2.8.10.1). */
    public static PackedQueueDriver create(GuestAllocator allocator, int size, String name) {
        checkSize(size);
        long d = allocator.allocate(16L * size, 16, false);
        long a = allocator.allocate(4, 4, false);
        long u = allocator.allocate(4, 4, false);
        return new PackedQueueDriver(allocator, size, d, a, u, name);
    }

    public static void checkSize(int size) {
        if (size < 1 || size > MAX_SIZE) {
            throw new IllegalArgumentException("packed queue size " + size + " is not in 1.." + MAX_SIZE);
        }
    }

    /** Whether VIRTIO_F_IN_ORDER was negotiated: a used descriptor may then return a whole batch. */
    public void setInOrder(boolean negotiated) {
        inOrder = negotiated;
    }

    // ---- accessors ----

    @Override
    public String name() {
        return name;
    }
    @Override
    public int size() {
        return size;
    }
    @Override
    public GuestMemory memory() {
        return memory;
    }
    @Override
    public GuestAllocator allocator() {
        return allocator;
    }
    @Override
    public long descAddress() {
        return descAddress;
    }
    @Override
    public long driverAreaAddress() {
        return driverEventAddress;
    }
    @Override
    public long deviceAreaAddress() {
        return deviceEventAddress;
    }
    @Override
    public void setEventIdx(boolean negotiated) {
        eventIdx = negotiated;
    }
    @Override
    public boolean eventIdx() {
        return eventIdx;
    }
    @Override
    public void setKick(EventFd k) {
        kick = k;
    }
    @Override
    public long notificationsSent() {
        return notifications;
    }
    @Override
    public long notificationsSuppressed() {
        return suppressedNotifications;
    }
    @Override
    public int freeSlotCount() {
        return freeDescriptors;
    }

    /** Where the next chain goes: slot, avail wrap counter in bit 15. */
    public int nextAvail() {
        return nextAvail | (availWrap ? WRAP : 0);
    }

    /** Where the next used descriptor is read: slot, used wrap counter in bit 15. */
    public int nextUsed() {
        return nextUsed | (usedWrap ? WRAP : 0);
    }

    public Map<Integer, Chain> outstanding() {
        return Collections.unmodifiableMap(new TreeMap<>(outstanding));
    }

    // ---- making buffers available (2.8.21) ----

    @Override
    public Chain addChain(Buffer... buffers) {
        Chain c = placeChain(List.of(buffers), List.of());
        publish();
        return c;
    }

    @Override
    public Chain addIndirectChain(Buffer... buffers) {
        Chain c = placeChain(List.of(), List.of(buffers));
        publish();
        return c;
    }

    @Override
    public Chain placeChain(List<Buffer> direct, List<Buffer> indirect) {
        List<Buffer> all = new ArrayList<>(direct);
        all.addAll(indirect);
        QueueDriver.requireReadableFirst(name, all);
        int n = direct.size() + (indirect.isEmpty() ? 0 : 1);
        requireDescriptors(n);
        List<Placed> placed = new ArrayList<>();
        for (Buffer b : all) {
            placed.add(Placement.place(allocator, b, name));
        }
        List<long[]> ring = new ArrayList<>();
        for (int i = 0; i < direct.size(); i++) {
            Placed p = placed.get(i);
            ring.add(new long[] {p.address(), p.length(), p.writable() ? DESC_F_WRITE : 0});
        }
        long table = -1;
        int tableBytes = 0;
        if (!indirect.isEmpty()) {
            tableBytes = 16 * indirect.size();
            table = allocator.allocate(tableBytes, 16, false);
            for (int i = 0; i < indirect.size(); i++) {
                Placed p = placed.get(direct.size() + i);
                writeIndirectEntry(table, i, p.address(), p.length(), p.writable() ? DESC_F_WRITE : 0);
            }
            ring.add(new long[] {table, tableBytes, DESC_F_INDIRECT});
        }
        String label = indirect.isEmpty() ? "chain" : direct.isEmpty() ? "indirect chain" : "mixed chain";
        return placeRaw(ring, placed, table, tableBytes, label, freeIds.poll());
    }

    /**
     * Writes {@code ring} ({addr, len, flags without NEXT/AVAIL/USED}) into consecutive slots from the next avail
     * position as one chain with buffer ID {@code id}: NEXT on all but the last, AVAIL/USED by each slot's wrap
     * counter, the ID in the last descriptor ({@link #DECOY_ID} in the others). The head's flags wait for
     * {@link #publish()}. Hostile builders pass flags and IDs a driver must not.
     */
    Chain placeRaw(List<long[]> ring, List<Placed> placed, long table, int tableBytes, String label, int id) {
        int n = ring.size();
        if (freeDescriptors < n) {
            throw new IllegalStateException("queue " + name + " has " + freeDescriptors
                    + " free descriptors, the chain needs " + n + "; poll the used descriptors first");
        }
        List<Integer> slots = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            long[] d = ring.get(i);
            int flags = (int) d[2] | (i + 1 < n ? DESC_F_NEXT : 0) | availFlags(availWrap);
            int descId = i + 1 < n ? DECOY_ID : id;
            if (i == 0) {
                // The head's flags stay as they are (the device may be looking at them) until publish.
                writeBody(nextAvail, d[0], (int) d[1], descId);
                pendingHeads.add(new int[] {nextAvail, flags});
            } else {
                writeDescriptor(nextAvail, d[0], (int) d[1], descId, flags);
            }
            slots.add(nextAvail);
            advanceAvail(1);
        }
        Chain c = new Chain(id, slots, placed, table, tableBytes, label);
        freeDescriptors -= n;
        pendingDescriptors += n;
        outstanding.put(id, c);
        availOrder.offered(c);
        return c;
    }

    /** 2.8.1: the driver makes a descriptor available with AVAIL = its wrap counter and USED = the inverse. */
    static int availFlags(boolean wrap) {
        return wrap ? DESC_F_AVAIL : DESC_F_USED;
    }

    void advanceAvail(int slots) {
        nextAvail += slots;
        if (nextAvail >= size) {
            nextAvail -= size;
            availWrap = !availWrap;
        }
    }

    void requireDescriptors(int n) {
        if (freeDescriptors < n || freeIds.isEmpty()) {
            throw new IllegalStateException("queue " + name + " has " + freeDescriptors + " free descriptors and "
                    + freeIds.size() + " free buffer IDs, the chain needs " + n + "; poll the used descriptors first");
        }
    }

    /**
     * Writes the placed heads' flags, the first chain's last, with release (2.8.21.3: after the rest of each
     * chain), so that the device sees all of them or none; then a full fence and the device's event suppression
     * decides the kick (2.8.10, 2.8.21.3.1).
     */
    @Override
    public boolean publish() {
        if (pendingHeads.isEmpty()) {
            return false;
        }
        for (int i = pendingHeads.size() - 1; i >= 0; i--) {
            int[] h = pendingHeads.get(i);
            LE16.setRelease(desc, 16 * h[0] + 14, (short) h[1]);
        }
        int added = pendingDescriptors;
        pendingHeads.clear();
        pendingDescriptors = 0;
        VarHandle.fullFence();
        boolean needed = kickNeeded(added);
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

    /** Whether the device's event suppression asks for a kick after {@code added} descriptors (as Linux reads it). */
    private boolean kickNeeded(int added) {
        int flags = deviceEventFlags();
        if (flags == EVENT_FLAGS_DISABLE) {
            return false;
        }
        if (flags == EVENT_FLAGS_ENABLE) {
            return true;
        }
        if (flags != EVENT_FLAGS_DESC || !eventIdx) {
            throw new AssertionError("queue " + name + ": device event suppression flags " + flags
                    + (flags == EVENT_FLAGS_DESC ? " (DESC) without EVENT_IDX negotiated" : " (reserved)")
                    + " (2.8.10); " + describe());
        }
        return EventSuppression.passed(deviceEvent.offWrap(), size, nextAvail, availWrap, added);
    }

    // ---- event suppression (2.8.10) ----

    /** The device's flags: ENABLE, DISABLE or DESC, read with acquire. */
    public int deviceEventFlags() {
        return deviceEvent.flags();
    }

    /** The device's desc field: the avail position it wants a kick at (with DESC). */
    public int deviceEventOffWrap() {
        return deviceEvent.offWrap();
    }

    public int driverEventFlags() {
        return driverEvent.flags();
    }

    public int driverEventOffWrap() {
        return driverEvent.offWrap();
    }

    /** Writes the driver event suppression: desc (offset and wrap) first, then flags with release, then a fence. */
    public void writeDriverEvent(int flags, int offWrap) {
        driverEvent.write(flags, offWrap);
    }

    @Override
    public void suppressUsedNotifications(boolean suppress) {
        suppressed = suppress;
        if (suppress) {
            writeDriverEvent(EVENT_FLAGS_DISABLE, 0);
        } else if (eventIdx) {
            writeDriverEvent(EVENT_FLAGS_DESC, nextUsed());
        } else {
            writeDriverEvent(EVENT_FLAGS_ENABLE, 0);
        }
    }

    @Override
    public void armUsedNotification() {
        if (eventIdx && !suppressed) {
            writeDriverEvent(EVENT_FLAGS_DESC, nextUsed());
        }
    }

    @Override
    public void notifyOnlyAfter(int entries) {
        if (!eventIdx) {
            throw new IllegalStateException("queue " + name + ": RING_EVENT_FLAGS_DESC needs EVENT_IDX (2.8.10)");
        }
        writeDriverEvent(EVENT_FLAGS_DESC, position(nextUsed, usedWrap, entries));
    }

    /** The position {@code ahead} slots after {@code slot} in the lap of {@code wrap}, in off_wrap form. */
    public int position(int slot, boolean wrap, int ahead) {
        long s = slot + (long) ahead;
        boolean w = wrap ^ ((s / size) % 2 == 1);
        return (int) (s % size) | (w ? WRAP : 0);
    }

    // ---- used descriptors (2.8.7, 2.8.9) ----

    @Override
    public boolean hasUsed() {
        return isUsed(flagsAt(nextUsed));
    }

    /**
     * 2.8.1: used iff AVAIL and USED both equal the used wrap counter. (USED alone is not enough: a slot the device
     * skipped inside a chain keeps the driver's flags of the lap before, AVAIL = !USED.)
     */
    private boolean isUsed(int flags) {
        return ((flags & DESC_F_AVAIL) != 0) == usedWrap && ((flags & DESC_F_USED) != 0) == usedWrap;
    }

    @Override
    public List<UsedElement> pollUsed() {
        List<UsedElement> out = new ArrayList<>();
        while (true) {
            int flags = flagsAt(nextUsed);
            if (!isUsed(flags)) {
                break;
            }
            int position = nextUsed();
            int at = 16 * nextUsed;
            int rawLen = desc.getInt(at + 8);
            int id = desc.getShort(at + 12) & 0xffff;
            Chain c = outstanding.get(id);
            if (c == null) {
                throw new AssertionError("queue " + name + ": used descriptor at " + describe(position) + " has buffer ID "
                        + id + " (len " + Integer.toUnsignedString(rawLen) + ") which is not outstanding; " + describe());
            }
            if ((flags & DESC_F_WRITE) == 0 && rawLen != 0) {
                throw new AssertionError("queue " + name + ": used descriptor for ID " + id + " says len "
                        + Integer.toUnsignedString(rawLen) + " without VIRTQ_DESC_F_WRITE, so a driver ignores it"
                        + " (2.8.4); " + describe());
            }
            if (Integer.toUnsignedLong(rawLen) > c.writableLength()) {
                throw new AssertionError("queue " + name + ": used descriptor for ID " + id + " says len "
                        + Integer.toUnsignedString(rawLen) + " but the chain has only " + c.writableLength()
                        + " device-writable bytes: " + c);
            }
            List<Chain> batch = availOrder.returnedBy(c, inOrder);
            int skip = 0;
            for (Chain b : batch) {
                outstanding.remove(b.head());
                skip += b.slots().size();
                freeDescriptors += b.slots().size();
                if (b.head() < size) {
                    freeIds.add(b.head());
                }
                UsedElement e = new UsedElement(position, b.head(), b == c ? rawLen : 0, b);
                out.add(e);
                recentUsed.addLast(e);
                if (recentUsed.size() > 8) {
                    recentUsed.removeFirst();
                }
            }
            nextUsed += skip;
            while (nextUsed >= size) {
                nextUsed -= size;
                usedWrap = !usedWrap;
            }
        }
        return out;
    }


    @Override
    public void releaseBuffers(Chain chain) {
        Placement.release(allocator, chain);
    }

    // ---- raw access for hostile builders and tests ----

    public int flagsAt(int slot) {
        return (short) LE16.getAcquire(desc, 16 * slot + 14) & 0xffff;
    }

    /** Writes ring slot {@code slot}: addr, len, ID, flags (plain; release only where {@link #publish} does). */
    public void writeDescriptor(int slot, long addr, int len, int id, int flags) {
        writeBody(slot, addr, len, id);
        desc.putShort(16 * slot + 14, (short) flags);
    }

    private void writeBody(int slot, long addr, int len, int id) {
        int o = 16 * slot;
        desc.putLong(o, addr);
        desc.putInt(o + 8, len);
        desc.putShort(o + 12, (short) id);
    }

    /** Reads ring slot {@code slot}: {addr, len, id, flags}. */
    public long[] readDescriptor(int slot) {
        int o = 16 * slot;
        return new long[] {desc.getLong(o), Integer.toUnsignedLong(desc.getInt(o + 8)), desc.getShort(o + 12) & 0xffff,
                desc.getShort(o + 14) & 0xffff};
    }

    /** Entry {@code index} of an indirect table: a pvirtq_desc whose ID is unused and NEXT not set (2.8.8). */
    public void writeIndirectEntry(long table, int index, long addr, int len, int flags) {
        ByteBuffer b = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(0, addr).putInt(8, len).putShort(12, (short) 0).putShort(14, (short) flags);
        Placement.write(memory, table + 16L * index, b.array(), name);
    }

    /** A free buffer ID for a chain about to be placed raw. */
    int takeId(int descriptors) {
        requireDescriptors(descriptors);
        return freeIds.poll();
    }

    boolean availWrap() {
        return availWrap;
    }

    int slotOfNextAvail() {
        return nextAvail;
    }

    private static String describe(int position) {
        return "slot " + (position & (WRAP - 1)) + " wrap " + ((position & WRAP) != 0 ? 1 : 0);
    }

    @Override
    public String describe() {
        StringBuilder sb = new StringBuilder("packed queue ").append(name).append(" size ").append(size)
                .append(" desc 0x").append(Long.toHexString(descAddress))
                .append(": next avail ").append(describe(nextAvail()))
                .append(pendingHeads.isEmpty() ? "" : " (+" + pendingHeads.size() + " unpublished)")
                .append(", next used ").append(describe(nextUsed()))
                .append(", free descriptors ").append(freeDescriptors)
                .append(", driver event ").append(driverEvent).append(", device event ").append(deviceEvent)
                .append(inOrder ? ", in order" : "")
                .append(", outstanding IDs ").append(outstanding.keySet())
                .append(", recent used ").append(recentUsed)
                .append(", descriptors from next used [");
        for (int i = 0; i < Math.min(size, 4); i++) {
            long[] d = readDescriptor((nextUsed + i) % size);
            sb.append(i == 0 ? "" : ", ").append("{len=").append(d[1]).append(" id=").append(d[2])
                    .append(" flags=0x").append(Long.toHexString(d[3])).append('}');
        }
        return sb.append(']').toString();
    }
}
