package org.virtionetd.virtio.fuzz;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.queue.PackedQueue;

import java.nio.ByteBuffer;
import java.util.function.IntConsumer;

import static org.virtionetd.virtio.fuzz.ChainWalkFuzzTest.MEMORY;

/**
 * The driver side of {@link PackedRingFuzzTest}: writes a packed ring's descriptors (virtio 1.2, 2.8.13) from the
 * fuzz input at the driver's own position, flags last, with AVAIL/USED for the lap the driver is in (2.8.1) or
 * deliberately wrong; lays out the ring, the indirect table area and the event suppression areas at the start.
 */
final class PackedDriver {
    private final FuzzInput in;
    private final int size;
    private final ByteBuffer ring;
    private final int ringBase;
    /** Where the driver writes its next descriptor, and that lap's wrap counter. */
    private int slot;
    private boolean wrap;
    /** Told of every ring slot the driver rewrites. */
    private IntConsumer wrote = s -> { };

    PackedDriver(FuzzInput in, int size, long desc) {
        this.in = in;
        this.size = size;
        long loc = MEMORY.locate(desc, PackedQueue.descRingBytes(size));
        this.ring = MEMORY.chunk(GuestMemory.chunkId(loc));
        this.ringBase = GuestMemory.offset(loc);
    }

    void onWrite(IntConsumer listener) {
        wrote = listener;
    }

    /**
     * Every slot empty for the lap it is in (AVAIL = USED = the previous lap's counter) as if the device had used
     * everything up to {@code start}; then the driver's first descriptors from there on (a count byte, at most the
     * size), the indirect table area (a count byte, at most its 64 entries: address, length, a flags byte, bit 7: raw
     * 16-bit flags follow), the device area cleared and the driver area (off_wrap, flags) from the input.
     */
    void layOut(int start, long driverArea, long deviceArea) {
        int startSlot = start & 0x7fff;
        boolean startWrap = (start & PackedQueue.WRAP) != 0;
        for (int s = 0; s < size; s++) {
            boolean lap = s >= startSlot == startWrap;
            ring.putLong(ringBase + 16 * s, 0).putLong(ringBase + 16 * s + 8, 0);
            int empty = lap ? 0 : PackedQueue.DESC_F_AVAIL | PackedQueue.DESC_F_USED;
            ring.putShort(ringBase + 16 * s + 14, (short) empty);
        }
        slot = startSlot;
        wrap = startWrap;
        refill(Math.min(size, in.u8()));
        ByteBuffer a = ChainWalkFuzzTest.a();
        ChainWalkFuzzTest.zero(ChainWalkFuzzTest.INDIRECT, ChainWalkFuzzTest.INDIRECT_ENTRIES * 16);
        int entries = in.u8() % (ChainWalkFuzzTest.INDIRECT_ENTRIES + 1);
        for (int i = 0; i < entries; i++) {
            int at = (int) ChainWalkFuzzTest.INDIRECT + 16 * i;
            a.putLong(at, ChainWalkFuzzTest.address(in)).putInt(at + 8, ChainWalkFuzzTest.length(in));
            int f = in.u8();
            a.putShort(at + 12, (short) 0).putShort(at + 14, (short) ((f & 0x80) != 0 ? in.u16() : f & 7));
        }
        putU16(deviceArea, 0);
        putU16(deviceArea + 2, 0);
        putU16(driverArea, in.u16());
        putU16(driverArea + 2, in.u16());
    }

    /**
     * Writes {@code count} descriptors at the driver's position, each: address, length, a flags byte (bits 0-2
     * NEXT/WRITE/INDIRECT; bits 3-4: 0-1 available in the driver's lap, 2 empty, 3 used in this lap, which
     * contradicts the wrap counter; bit 7: raw 16-bit flags follow), an ID byte (bit 7: a raw 16-bit ID follows,
     * else below the size). The flags are written last, as a driver does.
     */
    void refill(int count) {
        for (int i = 0; i < count; i++) {
            int at = ringBase + 16 * slot;
            long addr = ChainWalkFuzzTest.address(in);
            int len = ChainWalkFuzzTest.length(in);
            int f = in.u8();
            int flags = f & 7;
            int avail = wrap ? PackedQueue.DESC_F_AVAIL : 0;
            int used = wrap ? PackedQueue.DESC_F_USED : 0;
            switch ((f >>> 3) & 3) {
                case 0:
                case 1: flags |= avail | (PackedQueue.DESC_F_USED ^ used); break;
                case 2: flags |= (PackedQueue.DESC_F_AVAIL ^ avail) | (PackedQueue.DESC_F_USED ^ used); break;
                default: flags |= avail | used; break;
            }
            if ((f & 0x80) != 0) {
                flags = in.u16();
            }
            int idSel = in.u8();
            int id = (idSel & 0x80) != 0 ? in.u16() : (idSel & 0x7f) % size;
            ring.putLong(at, addr).putInt(at + 8, len).putShort(at + 12, (short) id).putShort(at + 14, (short) flags);
            wrote.accept(slot);
            if (++slot == size) {
                slot = 0;
                wrap = !wrap;
            }
        }
    }

    /** {id, len, flags, addr} of ring slot {@code s} as guest memory holds it now. */
    long[] descriptorAt(int s) {
        int at = ringBase + 16 * s;
        return new long[] {ring.getShort(at + 12) & 0xffff, ring.getInt(at + 8), ring.getShort(at + 14) & 0xffff,
            ring.getLong(at)};
    }

    static int peekU16(long gpa) {
        long loc = MEMORY.locate(gpa, 2);
        return MEMORY.chunk(GuestMemory.chunkId(loc)).getShort(GuestMemory.offset(loc)) & 0xffff;
    }

    static void putU16(long gpa, int v) {
        long loc = MEMORY.locate(gpa, 2);
        MEMORY.chunk(GuestMemory.chunkId(loc)).putShort(GuestMemory.offset(loc), (short) v);
    }
}
