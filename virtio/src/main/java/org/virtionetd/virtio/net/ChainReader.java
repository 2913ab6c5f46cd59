package org.virtionetd.virtio.net;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestViews;
import org.virtionetd.virtio.queue.DescriptorChain;

import java.nio.ByteBuffer;

/**
 * Turns the descriptors of a walked chain into ByteBuffer views over guest memory, skipping a prefix (the vnet
 * header) and splitting buffers that cross a region or chunk boundary. One per queue thread; reuses its arrays
 * and views, so it does not allocate after warm-up.
 */
final class ChainReader {
    private final GuestViews views;
    private final long[] locations;
    private final int[] lengths;

    ChainReader(GuestMemory memory, int maxSlices) {
        this.views = new GuestViews(memory, maxSlices);
        this.locations = new long[maxSlices];
        this.lengths = new int[maxSlices];
    }

    GuestMemory memory() {
        return views.memory();
    }

    /**
     * Fills {@code out[at..]} with views of descriptors {@code [from, to)} of {@code chain}, skipping the first
     * {@code skip} bytes. Returns the number of views, or -1 if more than fit (or memory vanished).
     */
    int views(DescriptorChain chain, int from, int to, long skip, ByteBuffer[] out, int at) {
        GuestMemory memory = views.memory();
        int n = at;
        for (int i = from; i < to; i++) {
            long full = chain.length(i) & 0xffffffffL;
            if (skip >= full) {
                skip -= full;
                continue;
            }
            long inside = skip;
            long len = full - skip;
            skip = 0;
            int room = Math.min(out.length - n, locations.length - n);
            if (room <= 0) {
                return -1;
            }
            long whole = chain.location(i);
            if (whole != GuestMemory.NOWHERE) {
                // The walk found the buffer inside one chunk: the rest of it is one view (offsets stay < 2^32).
                out[n] = views.view(n, whole + inside, (int) len);
                n++;
                continue;
            }
            int pieces = memory.resolve(chain.address(i) + inside, len, locations, lengths, n, room);
            if (pieces < 0) {
                return -1;
            }
            for (int p = 0; p < pieces; p++) {
                out[n + p] = views.view(n + p, locations[n + p], lengths[n + p]);
            }
            n += pieces;
        }
        return n - at;
    }

    /**
     * Copies the first {@code length} readable bytes of the chain into {@code dst} at absolute offset 0; returns
     * false if the readable part is shorter. Used for the vnet header, which may span descriptors (legacy layouts).
     */
    boolean copyPrefix(DescriptorChain chain, ByteBuffer dst, int length) {
        GuestMemory memory = views.memory();
        long first = chain.readableCount() > 0 ? chain.location(0) : GuestMemory.NOWHERE;
        if (first != GuestMemory.NOWHERE && length <= 16 && (chain.length(0) & 0xffffffffL) >= length) {
            // The usual case: the whole header in the first buffer. Word copies: a bulk copy of 10 or 12 bytes
            // costs more in set-up than in bytes.
            ByteBuffer chunk = memory.chunk(GuestMemory.chunkId(first));
            int off = GuestMemory.offset(first);
            int done = 0;
            for (; done + 8 <= length; done += 8) {
                dst.putLong(done, chunk.getLong(off + done));
            }
            if (done + 4 <= length) {
                dst.putInt(done, chunk.getInt(off + done));
                done += 4;
            }
            if (done + 2 <= length) {
                dst.putShort(done, chunk.getShort(off + done));
                done += 2;
            }
            if (done < length) {
                dst.put(done, chunk.get(off + done));
            }
            return true;
        }
        int copied = 0;
        for (int i = 0; i < chain.readableCount() && copied < length; i++) {
            long take = Math.min(chain.length(i) & 0xffffffffL, length - copied);
            // The part may cross a region or chunk boundary: copy piece by piece.
            int pieces = memory.resolve(chain.address(i), take, locations, lengths, 0, locations.length);
            if (pieces < 0) {
                return false;
            }
            for (int p = 0; p < pieces; p++) {
                ByteBuffer chunk = memory.chunk(GuestMemory.chunkId(locations[p]));
                dst.put(copied, chunk, GuestMemory.offset(locations[p]), lengths[p]);
                copied += lengths[p];
            }
        }
        return copied == length;
    }
}
