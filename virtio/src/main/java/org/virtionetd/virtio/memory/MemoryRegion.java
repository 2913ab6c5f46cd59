package org.virtionetd.virtio.memory;

import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One piece of guest RAM mapped into this process: guest-physical {@code [guestAddress, guestAddress + size)},
 * backed by {@code fd} at {@code fdOffset}. {@code userAddress} is where the front-end (QEMU) has it mapped:
 * vhost-user gives ring addresses in that space (vhost-user.rst, "Memory region description").
 *
 * <p>ByteBuffers cannot exceed 2 GiB, so the mapping is seen through chunks of at most {@link #CHUNK_SIZE}
 * bytes; a buffer that crosses a chunk boundary is split like one that crosses a region boundary.
 */
public final class MemoryRegion implements AutoCloseable {
    /** 1 GiB: large enough that a split is rare, small enough for an int offset. */
    public static final long CHUNK_SIZE = 1L << 30;

    private final long guestAddress;
    private final long size;
    private final long userAddress;
    private final int fd;
    private final long fdOffset;
    private final long hostAddress;
    private final long mappedLength;
    private final long mapDelta;
    private final ByteBuffer[] chunks;
    private volatile boolean closed;

    private MemoryRegion(long guestAddress, long size, long userAddress, int fd, long fdOffset,
                         long hostAddress, long mappedLength, long mapDelta) {
        this.guestAddress = guestAddress;
        this.size = size;
        this.userAddress = userAddress;
        this.fd = fd;
        this.fdOffset = fdOffset;
        this.hostAddress = hostAddress;
        this.mappedLength = mappedLength;
        this.mapDelta = mapDelta;
        int n = (int) ((size + CHUNK_SIZE - 1) / CHUNK_SIZE);
        this.chunks = new ByteBuffer[n];
        for (int i = 0; i < n; i++) {
            long off = i * CHUNK_SIZE;
            int len = (int) Math.min(CHUNK_SIZE, size - off);
            ByteBuffer b = LinuxNative.directBuffer(hostAddress + mapDelta + off, len);
            chunks[i] = b.order(ByteOrder.LITTLE_ENDIAN);
        }
    }

    /**
     * Maps {@code size} bytes of {@code fd} starting at {@code fdOffset}. The offset need not be page aligned
     * (vhost-user's mmap_offset is not always): the mapping starts at the page below it.
     * The region takes ownership of fd and closes it with the mapping.
     */
    public static MemoryRegion map(long guestAddress, long size, long userAddress, int fd, long fdOffset)
            throws GuestMemoryException {
        if (size <= 0) {
            throw new GuestMemoryException("memory region at guest 0x" + Long.toHexString(guestAddress)
                    + " has size " + size + ", must be positive");
        }
        if (Long.compareUnsigned(guestAddress + size, guestAddress) < 0
                || Long.compareUnsigned(userAddress + size, userAddress) < 0) {
            throw new GuestMemoryException("memory region at guest 0x" + Long.toHexString(guestAddress)
                    + " size 0x" + Long.toHexString(size) + " wraps around the address space");
        }
        if (fdOffset < 0) {
            throw new GuestMemoryException("memory region fd offset " + fdOffset + " is negative");
        }
        long pageDelta = fdOffset & 4095;
        long mapLength = size + pageDelta;
        try {
            long host = LinuxNative.mmapShared(fd, fdOffset - pageDelta, mapLength);
            return new MemoryRegion(guestAddress, size, userAddress, fd, fdOffset, host, mapLength, pageDelta);
        } catch (IOException e) {
            throw new GuestMemoryException("cannot map memory region at guest 0x" + Long.toHexString(guestAddress)
                    + " size 0x" + Long.toHexString(size) + ": " + e.getMessage(), e);
        }
    }

    public long guestAddress() {
        return guestAddress;
    }

    public long size() {
        return size;
    }

    public long guestEnd() {
        return guestAddress + size;
    }

    public long userAddress() {
        return userAddress;
    }

    public int fd() {
        return fd;
    }

    public long fdOffset() {
        return fdOffset;
    }

    /** The address of guest byte {@code guestAddress} in this process. */
    public long hostAddress() {
        return hostAddress + mapDelta;
    }

    public boolean contains(long gpa) {
        return gpa >= guestAddress && gpa - guestAddress < size;
    }

    int chunkCount() {
        return chunks.length;
    }

    ByteBuffer chunk(int i) {
        return chunks[i];
    }

    /** Unmaps the memory and closes the fd; idempotent. Views taken from it must no longer be used. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            LinuxNative.munmap(hostAddress, mappedLength);
        } catch (IOException e) {
            System.getLogger(MemoryRegion.class.getName()).log(System.Logger.Level.WARNING, e.getMessage());
        }
        LinuxNative.close(fd);
    }

    @Override
    public String toString() {
        return "MemoryRegion[guest 0x" + Long.toHexString(guestAddress) + "+0x" + Long.toHexString(size)
                + ", user 0x" + Long.toHexString(userAddress) + ", fd " + fd + " offset 0x"
                + Long.toHexString(fdOffset) + "]";
    }
}
