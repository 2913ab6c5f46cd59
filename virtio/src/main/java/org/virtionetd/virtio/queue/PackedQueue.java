package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.memory.GuestMemory;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A packed virtqueue as the device sees it (virtio 1.2, section 2.8): one descriptor ring that the driver and the
 * device both write (descriptor area), the driver event suppression structure (driver area) and the device event
 * suppression structure (device area, 2.8.10), plus the device's private state: the slot it reads next and the
 * slot it writes next, each with its wrap counter (2.8.1).
 *
 * <p>A descriptor is available when its AVAIL flag equals the device's avail wrap counter and its USED flag does
 * not (2.8.1); the device makes it used by writing the buffer ID and length and then flags with AVAIL and USED both
 * equal to its used wrap counter. The driver writes a chain's first flags last with release, so they are read with
 * acquire and the rest of the chain after them (2.8.21.3). The device writes a used descriptor's ID and length
 * first and its flags last with release (2.8.22); a burst's flags are written at {@link #publishUsed}, its first
 * one last, so the driver sees the burst at once.
 *
 * <p>Owned by one thread while running; every value read from the ring is checked before use.
 */
public final class PackedQueue implements DeviceRing {
    /** 2.8: "Queue Size ... maximum is 32768"; unlike the split ring it need not be a power of two. */
    public static final int MAX_SIZE = 32768;
    public static final int DESC_SIZE = 16;
    public static final int DESC_F_NEXT = 1;
    public static final int DESC_F_WRITE = 2;
    public static final int DESC_F_INDIRECT = 4;
    public static final int DESC_F_AVAIL = 1 << 7;
    public static final int DESC_F_USED = 1 << 15;
    /** pvirtq_event_suppress.flags (2.8.10). */
    public static final int EVENT_FLAGS_ENABLE = 0;
    public static final int EVENT_FLAGS_DISABLE = 1;
    public static final int EVENT_FLAGS_DESC = 2;
    /** Size of pvirtq_event_suppress: le16 desc (offset and wrap), le16 flags (2.8.10). */
    public static final int EVENT_SUPPRESS_BYTES = 4;
    /** Alignment of the three areas (2.8.10.1 / 4.1.4.3: descriptor ring 16, event suppression 4). */
    public static final int DESC_ALIGN = 16;
    public static final int EVENT_ALIGN = 4;
    /**
     * Bit 15 of a position: its wrap counter, as in pvirtq_event_suppress.desc and in vhost-user.rst ("Vring
     * descriptor indices for packed virtqueues": bits 0-14 index, bit 15 wrap counter).
     */
    public static final int WRAP = 1 << 15;

    private static final VarHandle U16 = MethodHandles.byteBufferViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);
    private static final System.Logger LOG = System.getLogger(PackedQueue.class.getName());

    private final int size;
    private final long descAddress;
    private final long driverEventAddress;
    private final long deviceEventAddress;
    private final boolean eventIdx;
    private final boolean indirect;
    /** The writing side: next used slot and wrap counter, the burst's pending flags, the IN_ORDER batch. */
    private final PackedUsedDescriptors used;

    private GuestMemory memory;
    private ByteBuffer desc;
    private int descBase;
    private ByteBuffer driverEvent;
    private int driverEventBase;
    private ByteBuffer deviceEvent;
    private int deviceEventBase;

    /** Slot the device reads next and its avail wrap counter (2.8.1: starts at 0 and 1). */
    private int nextAvail;
    private boolean availWrap = true;
    /** Where the used position was at the last notification decision (2.8.10: the window since then). */
    private int signalledUsed;
    private boolean signalledWrap = true;
    /** Ring slots each chain taken since the last {@link #setPosition} occupies, for {@link #giveBack}. */
    private final int[] takenSlots;
    private int takenTop;

    /**
     * What the device event suppression holds as last written (-1: not written since activate): a driver reads it
     * after a full barrier on every burst, so an unchanged value is not stored again (its cache line would move
     * to this core and back for nothing).
     */
    private int deviceEventShown = -1;

    /**
     * A queue of {@code size} descriptors; {@code eventIdx}, {@code indirect} and {@code inOrder} say whether
     * VIRTIO_F_EVENT_IDX (RING_EVENT_IDX), VIRTIO_F_INDIRECT_DESC and VIRTIO_F_IN_ORDER were negotiated.
     */
    public PackedQueue(int size, long descAddress, long driverEventAddress, long deviceEventAddress,
                       boolean eventIdx, boolean indirect, boolean inOrder) {
        this.size = size;
        this.descAddress = descAddress;
        this.driverEventAddress = driverEventAddress;
        this.deviceEventAddress = deviceEventAddress;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        int n = validSize(size) ? size : 1;
        this.takenSlots = new int[n];
        this.used = new PackedUsedDescriptors(size, descAddress, inOrder);
    }

    /** A queue size the packed layout accepts: 1..32768 (2.8). */
    public static boolean validSize(int size) {
        return size >= 1 && size <= MAX_SIZE;
    }

    public static long descRingBytes(int size) {
        return (long) DESC_SIZE * size;
    }

    @Override
    public String activate(GuestMemory mem) {
        if (!validSize(size)) {
            return "queue size " + size + " is not in 1.." + MAX_SIZE;
        }
        if ((descAddress & (DESC_ALIGN - 1)) != 0 || (driverEventAddress & (EVENT_ALIGN - 1)) != 0
                || (deviceEventAddress & (EVENT_ALIGN - 1)) != 0) {
            return String.format("packed ring addresses desc=0x%x driver=0x%x device=0x%x are not aligned to 16/4/4",
                    descAddress, driverEventAddress, deviceEventAddress);
        }
        long d = mem.locate(descAddress, descRingBytes(size));
        long a = mem.locate(driverEventAddress, EVENT_SUPPRESS_BYTES);
        long u = mem.locate(deviceEventAddress, EVENT_SUPPRESS_BYTES);
        if (d == GuestMemory.NOWHERE) {
            return "descriptor ring 0x" + Long.toHexString(descAddress) + "+" + descRingBytes(size)
                    + " is not inside one guest memory region";
        }
        if (a == GuestMemory.NOWHERE || u == GuestMemory.NOWHERE) {
            return String.format("event suppression areas driver=0x%x device=0x%x are not inside guest memory",
                    driverEventAddress, deviceEventAddress);
        }
        ByteBuffer descChunk = mem.chunk(GuestMemory.chunkId(d));
        ByteBuffer driverChunk = mem.chunk(GuestMemory.chunkId(a));
        ByteBuffer deviceChunk = mem.chunk(GuestMemory.chunkId(u));
        // Flags are read and written atomically, which needs them aligned where the region is mapped too (a
        // front-end may map a region at an mmap offset that shifts every address of it).
        if (descChunk.alignmentOffset(GuestMemory.offset(d), 2) != 0
                || driverChunk.alignmentOffset(GuestMemory.offset(a), 2) != 0
                || deviceChunk.alignmentOffset(GuestMemory.offset(u), 2) != 0) {
            return "packed ring areas are aligned in guest memory but not where their region is mapped"
                    + " (region mmap offset odd)";
        }
        memory = mem;
        desc = descChunk;
        descBase = GuestMemory.offset(d);
        driverEvent = driverChunk;
        driverEventBase = GuestMemory.offset(a);
        deviceEvent = deviceChunk;
        deviceEventBase = GuestMemory.offset(u);
        deviceEventShown = -1;
        used.bind(mem, descChunk, descBase);
        return null;
    }

    public int size() {
        return size;
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    /** The next slot to read with its avail wrap counter in bit 15. */
    @Override
    public int nextAvail() {
        return nextAvail | (availWrap ? WRAP : 0);
    }

    /** The next slot to write with its used wrap counter in bit 15. */
    @Override
    public int nextUsed() {
        return used.position();
    }

    /** vhost-user.rst: bits 0-14 avail index, 15 avail wrap counter, 16-30 used index, 31 used wrap counter. */
    @Override
    public int base() {
        return nextAvail() | nextUsed() << 16;
    }

    @Override
    public void setPosition(int avail, int usedPosition) {
        nextAvail = avail & (WRAP - 1);
        availWrap = (avail & WRAP) != 0;
        used.setPosition(usedPosition);
        signalledUsed = used.slot();
        signalledWrap = used.wrap();
        takenTop = 0;
    }

    /**
     * Resumes at a front-end's base (SET_VRING_BASE). Only the avail half is taken: the device resumes with
     * nothing in flight, so the used position is the avail one (as DPDK's vhost library does; a front-end that
     * never read a base sends 0 for the used half). A base that the ring contradicts is replaced by the
     * position the ring shows ({@link PackedResume}): after a back-end was killed QEMU has no newer base than the
     * last one it had, the one it sent at the start or got from GET_VRING_BASE at its last stop (VM stop and
     * cont, migration), since a packed ring keeps no index in memory it could read. Contradicted means: the ring
     * shows one position and the base is another one, not explained by the rest of a chain ahead of the step
     * ({@link PackedResume#resumePoint}). Checking only the base's own slot (its USED flag equal to its wrap
     * counter: used in this lap already) misses a base one lap behind and past its slot, and a driver that
     * refilled the ring while the back-end was gone leaves only the USED flags to tell.
     */
    @Override
    public String resumeAt(int base) {
        int index = base & (WRAP - 1);
        if (index >= size) {
            return "packed ring base 0x" + Integer.toHexString(base) + ": avail index " + index
                    + " is not below the queue size " + size;
        }
        int avail = base & 0xffff;
        int shown = PackedResume.resumePoint(desc, descBase, size, avail);
        if (shown != avail) {
            LOG.log(System.Logger.Level.INFO, "packed ring at 0x" + Long.toHexString(descAddress) + ": base "
                    + describe(avail) + " from the front-end, the ring shows the device was at " + describe(shown)
                    + "; resuming there");
            avail = shown;
        }
        setPosition(avail, avail);
        return null;
    }

    private static String describe(int position) {
        return (position & (WRAP - 1)) + " wrap " + ((position & WRAP) != 0 ? 1 : 0);
    }

    private int flagsAt(int slot) {
        return (short) U16.getAcquire(desc, descBase + DESC_SIZE * slot + 14) & 0xffff;
    }

    /** 2.8.1: available for wrap counter {@code w} iff AVAIL == w and USED != w. */
    static boolean isAvailable(int flags, boolean w) {
        return ((flags & DESC_F_AVAIL) != 0) == w && ((flags & DESC_F_USED) != 0) != w;
    }

    @Override
    public boolean pop(DescriptorChain out) throws QueueException {
        int flags = flagsAt(nextAvail);
        if (!isAvailable(flags, availWrap)) {
            if (((flags & DESC_F_AVAIL) != 0) == availWrap) {
                throw new QueueException(QueueException.Kind.FLAGS_CONTRADICT_WRAP, "descriptor at slot " + nextAvail
                        + " has flags 0x" + Integer.toHexString(flags) + ": AVAIL and USED both equal the device's"
                        + " wrap counter " + (availWrap ? 1 : 0) + " where it reads next");
            }
            return false;
        }
        walk(flags, out);
        return true;
    }

    /**
     * Walks the chain at the next slot (its first flags already read with acquire) and takes it. The chain's
     * extent is found first, since a packed chain is skipped by its length (2.8.6) and must be taken even when it
     * breaks a rule: the first such rule is thrown after the chain was taken.
     */
    private void walk(int firstFlags, DescriptorChain out) throws QueueException {
        int start = nextAvail;
        int slot = start;
        boolean w = availWrap;
        int flags = firstFlags;
        int slots = 0;
        int id;
        QueueException broken = null;
        out.reset(0);
        while (true) {
            if (slots > 0) {
                flags = desc.getShort(descBase + DESC_SIZE * slot + 14) & 0xffff;
                if (!isAvailable(flags, w)) {
                    throw new QueueException(QueueException.Kind.FLAGS_CONTRADICT_WRAP, "descriptor " + slots
                            + " of the chain at slot " + start + " (slot " + slot + ") has flags 0x"
                            + Integer.toHexString(flags) + ", not available for wrap counter " + (w ? 1 : 0));
                }
            }
            int at = descBase + DESC_SIZE * slot;
            if (broken == null) {
                broken = take(out, desc.getLong(at), desc.getInt(at + 8), flags, start);
            }
            id = desc.getShort(at + 12) & 0xffff;
            slots++;
            if (++slot == size) {
                slot = 0;
                w = !w;
            }
            if ((flags & DESC_F_NEXT) == 0) {
                break;
            }
            if (slots == size) {
                throw new QueueException(QueueException.Kind.CHAIN_WRAPS_RING, "the chain at slot " + start
                        + " sets NEXT on all " + size + " descriptors of the ring");
            }
        }
        nextAvail = slot;
        availWrap = w;
        takenSlots[takenTop] = slots;
        takenTop = takenTop + 1 == takenSlots.length ? 0 : takenTop + 1;
        out.identify(id, slots);
        if (broken == null && id >= size) {
            broken = new QueueException(QueueException.Kind.BUFFER_ID_OUT_OF_RANGE, "the chain at slot " + start
                    + " has buffer ID " + id + ", queue size is " + size);
        }
        if (broken != null) {
            throw broken;
        }
    }

    /** Adds one ring descriptor's buffers to {@code out}; returns the rule it breaks, or null. */
    private QueueException take(DescriptorChain out, long addr, int len, int flags, int start) {
        int chainId = -1 - start;
        try {
            if ((flags & DESC_F_INDIRECT) == 0) {
                out.addBuffer(memory, addr, len, (flags & DESC_F_WRITE) != 0, chainId);
                return null;
            }
            // 2.8.8: the table's entries follow one another (no next field; NEXT is not used); WRITE of the
            // descriptor that refers to the table is ignored.
            long loc = DescriptorChain.locateIndirect(memory, addr, len, indirect, false,
                    (flags & DESC_F_NEXT) != 0, size, chainId);
            ByteBuffer table = memory.chunk(GuestMemory.chunkId(loc));
            int base = GuestMemory.offset(loc);
            int entries = (int) ((len & 0xffffffffL) / DESC_SIZE);
            for (int i = 0; i < entries; i++) {
                int at = base + DESC_SIZE * i;
                int f = table.getShort(at + 14) & 0xffff;
                if ((f & DESC_F_INDIRECT) != 0) {
                    throw new QueueException(QueueException.Kind.NESTED_INDIRECT, "indirect table of "
                            + DescriptorChain.name(chainId) + " holds another INDIRECT descriptor at " + i);
                }
                out.addBuffer(memory, table.getLong(at), table.getInt(at + 8), (f & DESC_F_WRITE) != 0, chainId);
            }
            return null;
        } catch (QueueException e) {
            return e;
        }
    }

    @Override
    public void giveBack(int chains) {
        for (int i = 0; i < chains; i++) {
            takenTop = takenTop == 0 ? takenSlots.length - 1 : takenTop - 1;
            nextAvail -= takenSlots[takenTop];
            if (nextAvail < 0) {
                nextAvail += size;
                availWrap = !availWrap;
            }
        }
    }

    @Override
    public void addUsed(DescriptorChain chain, int writtenLength) {
        used.add(chain.head(), writtenLength, chain.slots());
    }

    @Override
    public void publishUsed() {
        used.publish();
    }

    /**
     * 2.8.10: the driver's flags say ENABLE (notify), DISABLE (do not) or, with EVENT_IDX, DESC: notify iff the
     * used descriptor at the driver's offset and wrap was written since the last decision. Reserved flag values
     * are taken as ENABLE: a notification too many is harmless, one too few stalls the driver.
     */
    @Override
    public boolean needsNotification() {
        VarHandle.fullFence();
        int old = signalledUsed;
        boolean oldWrap = signalledWrap;
        int nextUsed = used.slot();
        boolean usedWrap = used.wrap();
        signalledUsed = nextUsed;
        signalledWrap = usedWrap;
        if (old == nextUsed && oldWrap == usedWrap) {
            return false;
        }
        int flags = (short) U16.getAcquire(driverEvent, driverEventBase + 2) & 3;
        if (flags == EVENT_FLAGS_DISABLE) {
            return false;
        }
        if (flags != EVENT_FLAGS_DESC || !eventIdx) {
            return true;
        }
        int offWrap = (short) U16.getAcquire(driverEvent, driverEventBase) & 0xffff;
        int event = offWrap & (WRAP - 1);
        if (((offWrap & WRAP) != 0) != usedWrap) {
            event -= size;
        }
        int from = oldWrap == usedWrap ? old : old - size;
        return from <= event && event < nextUsed;
    }

    /**
     * Device event suppression (2.8.10): DISABLE, or ENABLE; with EVENT_IDX, DESC at the slot the device reads
     * next (a kick when the driver makes that descriptor available). The fence after enabling makes the caller's
     * re-check see a descriptor made available before the driver could see the request.
     */
    @Override
    public void setKickWanted(boolean wanted) {
        int shown = wanted && eventIdx ? nextAvail() << 16 | EVENT_FLAGS_DESC
                : wanted ? EVENT_FLAGS_ENABLE : EVENT_FLAGS_DISABLE;
        if (shown != deviceEventShown) {
            if (wanted && eventIdx) {
                U16.setRelease(deviceEvent, deviceEventBase, (short) nextAvail());
            }
            U16.setRelease(deviceEvent, deviceEventBase + 2, (short) (shown & 0xffff));
            memory.markDirty(deviceEventAddress, EVENT_SUPPRESS_BYTES);
            deviceEventShown = shown;
        }
        if (wanted) {
            VarHandle.fullFence();
        }
    }

    /** True if the descriptor at the next slot is available, or lies about it (so that {@link #pop} says so). */
    @Override
    public boolean hasAvailable() {
        return ((flagsAt(nextAvail) & DESC_F_AVAIL) != 0) == availWrap;
    }

    @Override
    public String toString() {
        return String.format("PackedQueue[size=%d desc=0x%x driver=0x%x device=0x%x next_avail=%d/%d next_used=%d/%d]",
                size, descAddress, driverEventAddress, deviceEventAddress, nextAvail, availWrap ? 1 : 0, used.slot(),
                used.wrap() ? 1 : 0);
    }
}
