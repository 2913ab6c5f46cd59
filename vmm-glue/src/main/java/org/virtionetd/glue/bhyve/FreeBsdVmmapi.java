package org.virtionetd.glue.bhyve;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * The real {@link Vmmapi}: JNA direct mappings of FreeBSD's libvmmapi and libc. <b>Never run</b>: this project is
 * built and tested on Linux; the signatures are those of FreeBSD 14's vmmapi.h (vm_open, vm_close,
 * vm_mmap_getnext, vm_get_memseg, vm_lapic_msi) and the constants those of sys/fcntl.h. The libraries are bound
 * only on first use, so loading this class on Linux is harmless; {@link #open} refuses anywhere but FreeBSD.
 */
public final class FreeBsdVmmapi implements Vmmapi {
    static final int O_RDWR = 0x0002;
    static final int O_CLOEXEC = 0x0010_0000;
    /** SPECNAMELEN + 1 in sys/param.h: the longest memory segment name vm_get_memseg returns. */
    static final int SEGMENT_NAME_SIZE = 256;

    private static final class Lib {
        static {
            Native.register(Lib.class, "vmmapi");
        }

        static native Pointer vm_open(String name);

        static native void vm_close(Pointer ctx);

        static native int vm_mmap_getnext(Pointer ctx, Pointer gpa, Pointer segid, Pointer segoff, Pointer len,
                                          Pointer prot, Pointer flags);

        static native int vm_get_memseg(Pointer ctx, int ident, Pointer lenp, Pointer name, long namesiz);

        static native int vm_lapic_msi(Pointer ctx, long addr, long msg);
    }

    private static final class Libc {
        static {
            Native.register(Libc.class, "c");
        }

        static native int open(String path, int flags);
    }

    public static boolean isAvailable() {
        return System.getProperty("os.name", "").startsWith("FreeBSD");
    }

    @Override
    public VmContext open(String vmName) throws IOException {
        if (!isAvailable()) {
            throw new IOException("VM " + vmName + ": libvmmapi needs FreeBSD; this is "
                    + System.getProperty("os.name"));
        }
        if (vmName.isEmpty() || vmName.contains("/")) {
            throw new IOException("VM name '" + vmName + "' is empty or has a '/'");
        }
        Pointer ctx = Lib.vm_open(vmName);
        if (ctx == null) {
            throw new IOException("vm_open(" + vmName + ") failed: errno " + Native.getLastError()
                    + " (is bhyve running it, and are we root?)");
        }
        return new Context(vmName, ctx);
    }

    private static final class Context implements VmContext {
        private final String name;
        private final Pointer ctx;
        // Out-parameters of vm_mmap_getnext: vm_paddr_t, int, vm_ooffset_t, size_t, int, int.
        private final Memory out = new Memory(48);
        private volatile boolean closed;

        Context(String name, Pointer ctx) {
            this.name = name;
            this.ctx = ctx;
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public synchronized MemoryMapping nextMapping(long gpa) throws IOException {
            out.clear();
            out.setLong(0, gpa);
            int rc = Lib.vm_mmap_getnext(ctx, out.share(0), out.share(8), out.share(16), out.share(24),
                    out.share(32), out.share(40));
            if (rc != 0) {
                int errno = Native.getLastError();
                if (errno == 2) { // ENOENT: no mapping at or above gpa
                    return null;
                }
                throw new IOException("vm_mmap_getnext(" + name + ", 0x" + Long.toHexString(gpa) + ") failed: errno "
                        + errno);
            }
            return new MemoryMapping(out.getLong(0), out.getInt(8), out.getLong(16), out.getLong(24), out.getInt(32),
                    out.getInt(40));
        }

        @Override
        public MemorySegment segment(int segid) throws IOException {
            Memory len = new Memory(8);
            Memory segName = new Memory(SEGMENT_NAME_SIZE);
            len.clear();
            segName.clear();
            if (Lib.vm_get_memseg(ctx, segid, len, segName, SEGMENT_NAME_SIZE) != 0) {
                throw new IOException("vm_get_memseg(" + name + ", " + segid + ") failed: errno "
                        + Native.getLastError());
            }
            return new MemorySegment(segid, len.getLong(0), segName.getString(0, StandardCharsets.US_ASCII.name()));
        }

        @Override
        public int openMemoryFd() throws IOException {
            String path = "/dev/vmm/" + name;
            int fd = Libc.open(path, O_RDWR | O_CLOEXEC);
            if (fd < 0) {
                throw new IOException("open(" + path + ") failed: errno " + Native.getLastError());
            }
            return fd;
        }

        @Override
        public void lapicMsi(long address, long data) throws IOException {
            if (Lib.vm_lapic_msi(ctx, address, data) != 0) {
                throw new IOException("vm_lapic_msi failed: errno " + Native.getLastError());
            }
        }

        @Override
        public void close() {
            if (!closed) {
                closed = true;
                Lib.vm_close(ctx); // frees the context; the VM keeps running
            }
        }
    }
}
