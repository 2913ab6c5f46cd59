package org.virtionetd.virtio.net;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.queue.DescriptorChain;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The iovec array (struct iovec of sys/uio.h, for readv(2)) over the device-writable buffers of the receive chains
 * taken from the ring and not yet used, in ring order: a backend reads a frame straight into guest memory through
 * it ({@link NetBackend#receiveDirect}), so a tap frame is copied once, by the kernel.
 *
 * <p>Entries are appended when a chain is taken and dropped from the front when frames use chains, so a frame
 * costs the entries of the chains it uses, not of all the chains held (in mergeable mode they are ~44 for the
 * 64 KiB a tap frame may need). The array is a window into a larger native buffer, moved back to its start when it
 * reaches the end. Owned by one {@link RxPath}; allocates nothing after construction.
 */
final class ReceiveIovec {
    /** readv(2) takes at most IOV_MAX (1024 on Linux and FreeBSD) entries. */
    static final int MAX_ENTRIES = 1024;
    private static final int CAPACITY = 2 * MAX_ENTRIES;
    private static final int ENTRY = 16;

    private final GuestMemory memory;
    private final long[] chunkAddress;
    private final ByteBuffer entries = ByteBuffer.allocateDirect(ENTRY * CAPACITY).order(ByteOrder.nativeOrder());
    private final long base = LinuxNative.address(entries);
    /** Entries per chain held, oldest first (a ring as long as the chains RxPath may hold). */
    private final int[] perChain;
    private int firstChain;
    private int chains;
    private int start;
    private int end;
    private final long[] locations = new long[MAX_ENTRIES];
    private final int[] lengths = new int[MAX_ENTRIES];

    ReceiveIovec(GuestMemory memory, int maxChains) {
        this.memory = memory;
        this.perChain = new int[maxChains];
        this.chunkAddress = new long[memory.chunkCount()];
        for (int c = 0; c < chunkAddress.length; c++) {
            chunkAddress[c] = LinuxNative.address(memory.chunk(c));
        }
    }

    /**
     * Appends the writable descriptors of {@code chain}, split where they cross a chunk. False, with nothing
     * appended, if that would make more than {@link #MAX_ENTRIES} entries or a buffer is outside guest memory.
     */
    boolean append(DescriptorChain chain) {
        int added = 0;
        for (int d = chain.readableCount(); d < chain.count(); d++) {
            int room = MAX_ENTRIES - count() - added;
            if (room <= 0) {
                return false;
            }
            long location = chain.location(d);
            if (location != GuestMemory.NOWHERE) {
                locations[added] = location;
                lengths[added] = chain.length(d);
                added++;
                continue;
            }
            int pieces = memory.resolve(chain.address(d), chain.length(d) & 0xffffffffL, locations, lengths, added,
                    room);
            if (pieces < 0) {
                return false;
            }
            added += pieces;
        }
        if (end + added > CAPACITY) {
            compact();
        }
        for (int i = 0; i < added; i++) {
            long at = (long) ENTRY * (end + i);
            entries.putLong((int) at, chunkAddress[GuestMemory.chunkId(locations[i])]
                    + GuestMemory.offset(locations[i]));
            entries.putLong((int) at + 8, lengths[i] & 0xffffffffL);
        }
        end += added;
        perChain[(firstChain + chains) % perChain.length] = added;
        chains++;
        return true;
    }

    /** Forgets the entries of the {@code n} oldest chains (a frame used them). */
    void dropFirst(int n) {
        for (int i = 0; i < n; i++) {
            start += perChain[firstChain];
            firstChain = (firstChain + 1) % perChain.length;
            chains--;
        }
        if (chains == 0) {
            start = 0;
            end = 0;
        }
    }

    /** Forgets every entry (the chains went back to the ring or to the driver). */
    void clear() {
        chains = 0;
        firstChain = 0;
        start = 0;
        end = 0;
    }

    /** Native address of the first entry. */
    long address() {
        return base + (long) ENTRY * start;
    }

    /** Number of entries. */
    int count() {
        return end - start;
    }

    /** Number of entries of the oldest chain. */
    int firstChainCount() {
        return chains == 0 ? 0 : perChain[firstChain];
    }

    private void compact() {
        int n = count();
        for (int i = 0; i < n; i++) {
            int from = ENTRY * (start + i);
            entries.putLong(ENTRY * i, entries.getLong(from));
            entries.putLong(ENTRY * i + 8, entries.getLong(from + 8));
        }
        start = 0;
        end = n;
    }
}
