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
            long len = chain.length(i) & 0xffffffffL;
            long addr = chain.address(i);
            if (skip >= len) {
                skip -= len;
                continue;
            }
            addr += skip;
            len -= skip;
            skip = 0;
            int room = Math.min(out.length - n, locations.length - n);
            if (room <= 0) {
                return -1;
            }
            int pieces = memory.resolve(addr, len, locations, lengths, n, room);
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
