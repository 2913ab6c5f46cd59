package org.virtionetd.virtio.queue;

import org.virtionetd.virtio.memory.GuestMemory;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A split virtqueue as the device sees it (virtio 1.2, section 2.7): descriptor table, available ring (driver
 * area) and used ring (device area) in guest memory, plus the device's private indices.
 *
 * <p>Owned by one thread while running. Guest memory is given at {@link #activate}; every value read from it is
 * checked before use. Ring indices are read with acquire and the used index written with release; event-index
 * checks are framed by full fences (2.7.7, 2.7.10).
 *
 * <p>Byte order: little-endian. Legacy (pre-1.0) rings are in guest-native order, which is little-endian on every
 * architecture this device runs with (x86-64, arm64).
 */
public final class SplitQueue implements DeviceRing {
    /** 2.7: "Queue Size ... maximum is 32768". */
    public static final int MAX_SIZE = 32768;

    public static final int VIRTQ_DESC_F_NEXT = 1;
    public static final int VIRTQ_DESC_F_WRITE = 2;
    public static final int VIRTQ_DESC_F_INDIRECT = 4;
    public static final int VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
    public static final int VIRTQ_USED_F_NO_NOTIFY = 1;

    public static final int DESC_SIZE = 16;
    /** Alignment of the three areas (2.7, table "Virtqueue Part Alignment"). */
    public static final int DESC_ALIGN = 16;
    public static final int AVAIL_ALIGN = 2;
    public static final int USED_ALIGN = 4;
    /** Legacy interfaces put the used ring at the next 4096 boundary (2.7.2 "Legacy Interfaces"). */
    public static final int LEGACY_ALIGN = 4096;

    private static final VarHandle U16 = MethodHandles.byteBufferViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);

    private final int size;
    private final long descAddress;
    private final long availAddress;
    private final long usedAddress;
    private final boolean eventIdx;
    private final boolean indirect;
    private final boolean inOrder;

    private GuestMemory memory;
    private ByteBuffer desc;
    private int descBase;
    private ByteBuffer avail;
    private int availBase;
    private ByteBuffer used;
    private int usedBase;

    /** Next available ring slot the device will read (free-running 16-bit counter). */
    private int nextAvail;
    /** Next used ring slot the device will write. */
    private int nextUsed;
    /** used.idx as last published, for the event-index decision. */
    private int publishedUsed;
    /** Chains the last read of avail.idx showed that {@link #pop(DescriptorChain)} has not taken yet. */
    private int knownAvailable;
    /**
     * IN_ORDER (2.7.9 of virtio 1.1, "In-order use of descriptors"): chains used with nothing written, one after
     * another, returned as one used element at the batch's first slot with the last chain's head; used.idx moves
     * by the batch. {@link #batchSlot} is that slot, -1 when no batch is open.
     */
    private int batchSlot = -1;
    private int batchHead;

    /**
     * A queue of {@code size} entries at guest-physical addresses. {@code eventIdx} and {@code indirect} say
     * whether VIRTIO_F_EVENT_IDX and VIRTIO_F_INDIRECT_DESC were negotiated.
     */
    public SplitQueue(int size, long descAddress, long availAddress, long usedAddress,
                      boolean eventIdx, boolean indirect) {
        this(size, descAddress, availAddress, usedAddress, eventIdx, indirect, false);
    }

    /** As above; {@code inOrder} says whether VIRTIO_F_IN_ORDER was negotiated. */
    public SplitQueue(int size, long descAddress, long availAddress, long usedAddress,
                      boolean eventIdx, boolean indirect, boolean inOrder) {
        this.inOrder = inOrder;
        this.size = size;
        this.descAddress = descAddress;
        this.availAddress = availAddress;
        this.usedAddress = usedAddress;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
    }

    /**
     * The three addresses of a legacy queue whose descriptor table starts at {@code base}: the avail ring follows
     * the table, the used ring starts at the next {@code align} boundary (2.7.2, legacy layout).
     */
    public static long[] legacyLayout(long base, int size, int align) {
        long avail = base + (long) DESC_SIZE * size;
        long availEnd = avail + 6 + 2L * size;
        long used = (availEnd + align - 1) & -(long) align;
        return new long[] {base, avail, used};
    }

    /** Bytes of the descriptor table, available ring and used ring for a queue size (2.7). */
    public static long descTableBytes(int size) {
        return (long) DESC_SIZE * size;
    }

    public static long availRingBytes(int size) {
        return 6 + 2L * size;
    }

    public static long usedRingBytes(int size) {
        return 6 + 8L * size;
    }

    /** Checks a queue size: a power of two in 1..32768 (2.7: "Queue Size value is always a power of 2"). */
    public static boolean validSize(int size) {
        return size >= 1 && size <= MAX_SIZE && Integer.bitCount(size) == 1;
    }

    /**
     * Binds the queue to guest memory: each area must lie inside one region chunk, aligned as 2.7 requires.
     * Returns null on success, or the reason the rings cannot be used.
     */
    @Override
    public String activate(GuestMemory mem) {
        if (!validSize(size)) {
            return "queue size " + size + " is not a power of two in 1.." + MAX_SIZE;
        }
        if ((descAddress & (DESC_ALIGN - 1)) != 0 || (availAddress & (AVAIL_ALIGN - 1)) != 0
                || (usedAddress & (USED_ALIGN - 1)) != 0) {
            return String.format("ring addresses desc=0x%x avail=0x%x used=0x%x are not aligned to 16/2/4",
                    descAddress, availAddress, usedAddress);
        }
        long d = mem.locate(descAddress, descTableBytes(size));
        long a = mem.locate(availAddress, availRingBytes(size));
        long u = mem.locate(usedAddress, usedRingBytes(size));
        if (d == GuestMemory.NOWHERE) {
            return "descriptor table 0x" + Long.toHexString(descAddress) + "+" + descTableBytes(size)
                    + " is not inside one guest memory region";
        }
        if (a == GuestMemory.NOWHERE) {
            return "available ring 0x" + Long.toHexString(availAddress) + "+" + availRingBytes(size)
                    + " is not inside one guest memory region";
        }
        if (u == GuestMemory.NOWHERE) {
            return "used ring 0x" + Long.toHexString(usedAddress) + "+" + usedRingBytes(size)
                    + " is not inside one guest memory region";
        }
        // The ring indices are accessed atomically (acquire/release), which needs them aligned in this process
        // too. Guest-physical alignment is not enough: a front-end may map a region at an mmap_offset that is not
        // a multiple of 4 (QEMU never does; a hostile or buggy one may), which shifts every address of it.
        ByteBuffer availChunk = mem.chunk(GuestMemory.chunkId(a));
        ByteBuffer usedChunk = mem.chunk(GuestMemory.chunkId(u));
        if (availChunk.alignmentOffset(GuestMemory.offset(a), AVAIL_ALIGN) != 0
                || usedChunk.alignmentOffset(GuestMemory.offset(u), USED_ALIGN) != 0) {
            return String.format("rings avail=0x%x used=0x%x are aligned in guest memory but not where their region"
                    + " is mapped (region mmap offset not a multiple of 4)", availAddress, usedAddress);
        }
        this.memory = mem;
        this.desc = mem.chunk(GuestMemory.chunkId(d));
        this.descBase = GuestMemory.offset(d);
        this.avail = availChunk;
        this.availBase = GuestMemory.offset(a);
        this.used = usedChunk;
        this.usedBase = GuestMemory.offset(u);
        return null;
    }

    public int size() {
        return size;
    }

    public long descAddress() {
        return descAddress;
    }

    public long availAddress() {
        return availAddress;
    }

    public long usedAddress() {
        return usedAddress;
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    @Override
    public int nextAvail() {
        return nextAvail;
    }

    /** Where the device resumes (vhost-user SET_VRING_BASE, or restoring after a stop). */
    public void setNextAvail(int index) {
        nextAvail = index & 0xffff;
        knownAvailable = 0;
    }

    @Override
    public int nextUsed() {
        return nextUsed;
    }

    public void setNextUsed(int index) {
        nextUsed = index & 0xffff;
        publishedUsed = nextUsed;
        batchSlot = -1;
    }

    @Override
    public void setPosition(int nextAvailIndex, int nextUsedIndex) {
        setNextAvail(nextAvailIndex);
        setNextUsed(nextUsedIndex);
    }

    /** vhost-user.rst: bits 0-15 the next avail index, the rest reserved (0). */
    @Override
    public int base() {
        return nextAvail;
    }

    /** After SET_VRING_BASE the used index is what the ring shows: what the driver last saw. */
    @Override
    public String resumeAt(int base) {
        if ((base & 0xffff0000) != 0) {
            return "split ring base 0x" + Integer.toHexString(base) + " is not a 16-bit index";
        }
        setPosition(base, readUsedIndex());
        return null;
    }

    /** Reads the used index from the ring: after a reconnect the device resumes where the ring says. */
    public int readUsedIndex() {
        return (short) U16.getAcquire(used, usedBase + 2) & 0xffff;
    }

    /**
     * Number of chains the driver made available and the device has not taken. Reads avail.idx with acquire
     * (2.7.13.3: the driver publishes the ring entry before the index).
     *
     * @throws QueueException AVAIL_INDEX_TOO_FAR if the driver moved the index more than the queue size ahead
     */
    public int available() throws QueueException {
        int idx = (short) U16.getAcquire(avail, availBase + 2) & 0xffff;
        int n = (idx - nextAvail) & 0xffff;
        if (n > size) {
            throw new QueueException(QueueException.Kind.AVAIL_INDEX_TOO_FAR,
                    "avail.idx " + idx + " is " + n + " ahead of the device's " + nextAvail
                            + ", more than the queue size " + size);
        }
        return n;
    }

    /**
     * Takes the next available head (call only after {@link #available()} said there is one).
     *
     * @throws QueueException HEAD_OUT_OF_RANGE if the ring entry is not a descriptor index
     */
    public int pop() throws QueueException {
        int slot = nextAvail & (size - 1);
        int head = avail.getShort(availBase + 4 + 2 * slot) & 0xffff;
        if (head >= size) {
            throw new QueueException(QueueException.Kind.HEAD_OUT_OF_RANGE,
                    "avail ring slot " + slot + " holds head " + head + ", queue size is " + size);
        }
        nextAvail = (nextAvail + 1) & 0xffff;
        return head;
    }

    /**
     * Takes the next chain and walks it. avail.idx is read (with acquire, and checked) only when the chains seen
     * by the last read are used up, so a burst costs one read of it, not one per chain.
     */
    @Override
    public boolean pop(DescriptorChain out) throws QueueException {
        if (knownAvailable == 0) {
            knownAvailable = available();
            if (knownAvailable == 0) {
                return false;
            }
        }
        int head = pop();
        knownAvailable--;
        walk(head, out);
        return true;
    }

    /** Gives back the last {@code n} popped chains that were not used (e.g. an RX frame that must wait). */
    @Override
    public void giveBack(int n) {
        nextAvail = (nextAvail - n) & 0xffff;
        knownAvailable += n;
    }

    /**
     * Walks the chain starting at {@code head} into {@code out}, checking every rule of 2.7.5: indices in range,
     * at most queue-size descriptors in all (a loop is caught this way), indirect tables well-formed and not nested,
     * every buffer inside guest memory, readable descriptors before writable ones.
     */
    public void walk(int head, DescriptorChain out) throws QueueException {
        out.reset(head);
        ByteBuffer table = desc;
        int tableBase = descBase;
        int tableSize = size;
        boolean inIndirect = false;
        int index = head;
        int budget = size; // TTL: no legitimate chain has more descriptors than the queue size
        while (true) {
            if (budget-- == 0) {
                throw new QueueException(QueueException.Kind.CHAIN_TOO_LONG,
                        "chain at head " + head + " has more than " + size + " descriptors (loop?)");
            }
            int at = tableBase + DESC_SIZE * index;
            long addr = table.getLong(at);
            int len = table.getInt(at + 8);
            int flags = table.getShort(at + 12) & 0xffff;
            int next = table.getShort(at + 14) & 0xffff;
            if ((flags & VIRTQ_DESC_F_INDIRECT) != 0) {
                long loc = DescriptorChain.locateIndirect(memory, addr, len, indirect, inIndirect,
                        (flags & VIRTQ_DESC_F_NEXT) != 0, size, head);
                table = memory.chunk(GuestMemory.chunkId(loc));
                tableBase = GuestMemory.offset(loc);
                tableSize = (int) ((len & 0xffffffffL) / DESC_SIZE);
                inIndirect = true;
                index = 0;
                continue;
            }
            out.addBuffer(memory, addr, len, (flags & VIRTQ_DESC_F_WRITE) != 0, head);
            if ((flags & VIRTQ_DESC_F_NEXT) == 0) {
                return;
            }
            if (next >= tableSize) {
                throw new QueueException(QueueException.Kind.NEXT_OUT_OF_RANGE,
                        "descriptor " + index + " of chain " + head + " has next " + next + ", table size is " + tableSize);
            }
            index = next;
        }
    }

    @Override
    public void addUsed(DescriptorChain chain, int writtenLength) {
        if (inOrder) {
            if (writtenLength == 0) {
                if (batchSlot < 0) {
                    batchSlot = nextUsed;
                }
                batchHead = chain.head();
                nextUsed = (nextUsed + 1) & 0xffff;
                return;
            }
            closeBatch();
        }
        addUsed(chain.head(), writtenLength);
    }

    private void closeBatch() {
        if (batchSlot >= 0) {
            writeUsedElement(batchSlot, batchHead, 0);
            batchSlot = -1;
        }
    }

    /** Puts (head, written length) in the next used slot; not visible to the driver before {@link #publishUsed()}. */
    public void addUsed(int head, int writtenLength) {
        closeBatch();
        writeUsedElement(nextUsed, head, writtenLength);
        nextUsed = (nextUsed + 1) & 0xffff;
    }

    private void writeUsedElement(int usedIndex, int head, int writtenLength) {
        int slot = usedIndex & (size - 1);
        int at = usedBase + 4 + 8 * slot;
        used.putInt(at, head);
        used.putInt(at + 4, writtenLength);
        memory.markDirty(usedAddress + 4 + 8L * slot, 8);
    }

    /** Makes all added used entries visible: used.idx written with release (2.7.8: entries before the index). */
    @Override
    public void publishUsed() {
        closeBatch();
        U16.setRelease(used, usedBase + 2, (short) nextUsed);
        memory.markDirty(usedAddress + 2, 2);
    }

    /**
     * Whether the driver wants a used-buffer notification for what was published since the last call
     * (2.7.10): with EVENT_IDX, iff used_event lies in (old, new]; otherwise unless VIRTQ_AVAIL_F_NO_INTERRUPT.
     */
    @Override
    public boolean needsNotification() {
        // The used index store must be visible before we read the driver's used_event / flags (2.7.10).
        VarHandle.fullFence();
        int old = publishedUsed;
        int now = nextUsed;
        publishedUsed = now;
        if (old == now) {
            return false;
        }
        if (eventIdx) {
            int usedEvent = (short) U16.getAcquire(avail, availBase + 4 + 2 * size) & 0xffff;
            return needEvent(usedEvent, now, old);
        }
        int flags = (short) U16.getAcquire(avail, availBase) & 0xffff;
        return (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) == 0;
    }

    /** vring_need_event of the spec (2.7.10): true iff eventIdx is in the window (old, now] modulo 2^16. */
    public static boolean needEvent(int eventIdx, int now, int old) {
        return ((now - eventIdx - 1) & 0xffff) < ((now - old) & 0xffff);
    }

    /**
     * Asks the driver to kick (or not) when it adds buffers (2.7.7 / 2.7.10): with EVENT_IDX, avail_event is
     * set to the next index we will read; otherwise VIRTQ_USED_F_NO_NOTIFY is cleared or set. After enabling,
     * the caller must re-check {@link #available()}: the fence makes that re-check see a buffer added before
     * the driver could see our request.
     */
    @Override
    public void setKickWanted(boolean wanted) {
        if (eventIdx) {
            if (wanted) {
                U16.setRelease(used, usedBase + 4 + 8 * size, (short) nextAvail);
                memory.markDirty(usedAddress + 4 + 8L * size, 2);
            }
        } else {
            U16.setRelease(used, usedBase, (short) (wanted ? 0 : VIRTQ_USED_F_NO_NOTIFY));
            memory.markDirty(usedAddress, 2);
        }
        if (wanted) {
            VarHandle.fullFence();
        }
    }

    /** True if the driver's avail.idx moved past what the device consumed (a cheap check, no validation). */
    @Override
    public boolean hasAvailable() {
        int idx = (short) U16.getAcquire(avail, availBase + 2) & 0xffff;
        return idx != nextAvail;
    }

    @Override
    public String toString() {
        return String.format("SplitQueue[size=%d desc=0x%x avail=0x%x used=0x%x next_avail=%d next_used=%d]",
                size, descAddress, availAddress, usedAddress, nextAvail, nextUsed);
    }
}
