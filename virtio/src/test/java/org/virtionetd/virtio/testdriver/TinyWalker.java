package org.virtionetd.virtio.testdriver;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The device side of a split ring reduced to the minimum, for testing the driver without a device: reads the
 * available ring and chains with {@link GuestMemory#read}, writes data, used elements and used idx with
 * {@link GuestMemory#write}. No validation beyond loop detection: tests of the driver only.
 */
final class TinyWalker {
    /** One walked element. */
    record Element(long addr, long len, boolean writable) {
    }

    private final GuestMemory mem;
    private final RingLayout l;
    private int nextAvail;
    private int usedIdx;

    TinyWalker(GuestMemory mem, RingLayout layout) {
        this.mem = mem;
        this.l = layout;
    }

    int u16(long gpa) throws GuestMemoryException {
        byte[] b = new byte[2];
        mem.read(gpa, b, 0, 2);
        return (b[0] & 0xff) | (b[1] & 0xff) << 8;
    }

    int availIdx() throws GuestMemoryException {
        return u16(l.availRing() + 2);
    }

    /** The next head the driver made available, or -1. */
    int popHead() throws GuestMemoryException {
        if (availIdx() == nextAvail) {
            return -1;
        }
        int head = u16(l.availRing() + 4 + 2L * (nextAvail % l.size()));
        nextAvail = (nextAvail + 1) & 0xffff;
        return head;
    }

    List<Element> walk(int head) throws GuestMemoryException {
        List<Element> out = new ArrayList<>();
        long table = l.descTable();
        int i = head;
        Set<String> seen = new HashSet<>();
        while (seen.add(table + ":" + i)) {
            byte[] b = new byte[16];
            mem.read(table + 16L * i, b, 0, 16);
            ByteBuffer d = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
            int flags = d.getShort(12) & 0xffff;
            if ((flags & 4) != 0) {
                table = d.getLong(0);
                i = 0;
                continue;
            }
            out.add(new Element(d.getLong(0), Integer.toUnsignedLong(d.getInt(8)), (flags & 2) != 0));
            if ((flags & 1) == 0) {
                return out;
            }
            i = d.getShort(14) & 0xffff;
        }
        throw new IllegalStateException("loop in chain " + head);
    }

    byte[] readable(List<Element> chain) throws GuestMemoryException {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        for (Element e : chain) {
            if (!e.writable()) {
                byte[] b = new byte[(int) e.len()];
                mem.read(e.addr(), b, 0, b.length);
                o.writeBytes(b);
            }
        }
        return o.toByteArray();
    }

    /** Writes {@code data} into the writable elements in order; returns the bytes written. */
    int fill(List<Element> chain, byte[] data) throws GuestMemoryException {
        int at = 0;
        for (Element e : chain) {
            if (e.writable() && at < data.length) {
                int n = (int) Math.min(e.len(), data.length - at);
                mem.write(e.addr(), data, at, n);
                at += n;
            }
        }
        return at;
    }

    /** Adds a used element and publishes the new used idx. */
    void use(int id, int len) throws GuestMemoryException {
        byte[] e = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(0, id).putInt(4, len).array();
        mem.write(l.usedRing() + 4 + 8L * (usedIdx % l.size()), e, 0, 8);
        usedIdx = (usedIdx + 1) & 0xffff;
        mem.write(l.usedRing() + 2, new byte[] {(byte) usedIdx, (byte) (usedIdx >> 8)}, 0, 2);
    }
}
