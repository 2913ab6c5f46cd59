package org.virtionetd.glue.vhostuser;

import org.virtionetd.virtio.memory.DirtyLog;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.LongAdder;

/**
 * The front-end's dirty page log (vhost-user.rst, "Migration"): one bit per {@link #PAGE_SIZE} page of
 * guest-physical memory, {@code log[page / 8] |= 1 << page % 8}, set atomically because the front-end reads and
 * clears it concurrently.
 *
 * <p>Bits are set with an atomic OR on little-endian 64-bit words: in a little-endian word, bit {@code k} is bit
 * {@code k % 8} of byte {@code k / 8}, exactly the log's byte layout, so one OR sets up to 64 pages.
 *
 * <p>Writes to a used ring are logged at the ring's {@code log_guest_addr}, and only if VHOST_VRING_F_LOG is set
 * for it; {@link #setUsedRings} installs that table.
 */
public final class DirtyPageLog implements DirtyLog, AutoCloseable {
    /** VHOST_LOG_PAGE. */
    public static final long PAGE_SIZE = 0x1000;
    private static final int PAGE_SHIFT = 12;
    private static final VarHandle WORDS =
            MethodHandles.byteBufferViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    private static final System.Logger LOG = System.getLogger(DirtyPageLog.class.getName());

    /** Where writes to one used ring are logged. */
    public static final class UsedRing {
        final long guestAddress;
        final long length;
        final long logGuestAddress;
        final boolean logged;

        public UsedRing(long guestAddress, long length, long logGuestAddress, boolean logged) {
            this.guestAddress = guestAddress;
            this.length = length;
            this.logGuestAddress = logGuestAddress;
            this.logged = logged;
        }
    }

    private final int fd;
    private final long mapAddress;
    private final long mapLength;
    private final ByteBuffer words;
    /** Bit index of log bit 0 in {@link #words} (the log offset need not be 8-byte aligned). */
    private final long firstBit;
    private final long pages;
    private volatile UsedRing[] usedRings = new UsedRing[0];
    private final LongAdder outOfRange = new LongAdder();
    /** Bits this log set from 0 to 1 are added here (the device's {@link LifecycleCounters}). */
    private final LongAdder newlySet;
    private volatile boolean warned;
    private boolean closed;

    private DirtyPageLog(int fd, long mapAddress, long mapLength, long delta, long size, LongAdder newlySet) {
        this.fd = fd;
        this.newlySet = newlySet;
        this.mapAddress = mapAddress;
        this.mapLength = mapLength;
        this.firstBit = delta * 8;
        this.pages = size * 8;
        // mmap maps whole pages, so rounding the view up to a whole word stays inside the mapping.
        int viewLength = (int) ((mapLength + 7) & ~7L);
        this.words = LinuxNative.directBuffer(mapAddress, viewLength);
    }

    /**
     * Maps {@code size} bytes of the log fd at {@code offset} (SET_LOG_BASE). Refuses a log that is empty, larger
     * than 2 GiB (16 TiB of guest memory), or that the fd's file does not hold (a mapping past the end would
     * fault on first write). Takes ownership of fd, also on failure. Marks add the number of bits they set from 0
     * to 1 to {@code newlySet}.
     */
    public static DirtyPageLog map(int fd, long size, long offset, LongAdder newlySet) throws VhostUserException {
        try {
            if (size <= 0 || size > Integer.MAX_VALUE - 2 * 4096L) {
                throw VhostUserException.refused("log size " + Long.toUnsignedString(size)
                        + " must be between 1 and " + (Integer.MAX_VALUE - 2 * 4096L));
            }
            if (offset < 0 || offset + size < offset) {
                throw VhostUserException.refused("log offset " + Long.toUnsignedString(offset) + " with size "
                        + size + " wraps around");
            }
            long fileSize = LinuxNative.fileSize(fd);
            if (offset + size > fileSize) {
                throw VhostUserException.refused("log offset " + offset + " + size " + size
                        + " is beyond the end of the log fd (" + fileSize + " bytes)");
            }
            long delta = offset & 4095;
            long mapLength = delta + size;
            long address = LinuxNative.mmapShared(fd, offset - delta, mapLength);
            return new DirtyPageLog(fd, address, mapLength, delta, size, newlySet);
        } catch (IOException e) {
            LinuxNative.close(fd);
            throw VhostUserException.refused("cannot map the dirty log: " + e.getMessage(), e);
        } catch (VhostUserException e) {
            LinuxNative.close(fd);
            throw e;
        }
    }

    /** Number of pages the log covers. */
    public long pages() {
        return pages;
    }

    /** Marks that fell (partly) beyond the end of the log. */
    public long outOfRange() {
        return outOfRange.sum();
    }

    /** Replaces the used-ring table (control thread); data-path threads see the new array at their next mark. */
    public void setUsedRings(UsedRing[] rings) {
        this.usedRings = rings.clone();
    }

    @Override
    public void mark(long gpa, long length) {
        if (length <= 0) {
            return;
        }
        for (UsedRing r : usedRings) {
            long delta = gpa - r.guestAddress;
            if (Long.compareUnsigned(delta, r.length) < 0 && length <= r.length - delta) {
                if (r.logged) {
                    markRange(r.logGuestAddress + delta, length);
                }
                return;
            }
        }
        markRange(gpa, length);
    }

    private void markRange(long gpa, long length) {
        long first = gpa >>> PAGE_SHIFT;
        long end = gpa + length - 1;
        long last = Long.compareUnsigned(end, gpa) < 0 ? -1L >>> PAGE_SHIFT : end >>> PAGE_SHIFT;
        if (Long.compareUnsigned(last, pages) >= 0) {
            outOfRange.increment();
            if (!warned) {
                warned = true;
                LOG.log(System.Logger.Level.WARNING, "dirty log of " + pages + " pages cannot record guest range 0x"
                        + Long.toHexString(gpa) + "+" + length + " (logged once)");
            }
            if (Long.compareUnsigned(first, pages) >= 0) {
                return;
            }
            last = pages - 1;
        }
        long bit = firstBit + first;
        long lastBit = firstBit + last;
        while (bit <= lastBit) {
            long word = bit >>> 6;
            int lo = (int) (bit & 63);
            int hi = (int) Math.min(63, lastBit - (word << 6));
            long mask = (hi == 63 ? -1L : (1L << (hi + 1)) - 1) & (-1L << lo);
            int index = (int) (word << 3);
            // A plain read first: pages written again and again are already marked, and an atomic costs more.
            if (((long) WORDS.getOpaque(words, index) & mask) != mask) {
                // The OR returns the old word: the bits it set are counted without another read.
                long old = (long) WORDS.getAndBitwiseOr(words, index, mask);
                int set = Long.bitCount(mask & ~old);
                if (set != 0) {
                    newlySet.add(set);
                }
            }
            bit = (word + 1) << 6;
        }
    }

    /** True if the bit of the page holding {@code gpa} is set (tests and diagnostics). */
    public boolean isDirty(long gpa) {
        long page = gpa >>> PAGE_SHIFT;
        if (Long.compareUnsigned(page, pages) >= 0) {
            return false;
        }
        long bit = firstBit + page;
        return (((long) WORDS.getVolatile(words, (int) ((bit >>> 6) << 3)) >>> (bit & 63)) & 1) != 0;
    }

    /** Unmaps the log and closes its fd; the caller makes sure no device thread still marks into it. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            LinuxNative.munmap(mapAddress, mapLength);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, e.getMessage());
        }
        LinuxNative.close(fd);
    }
}
