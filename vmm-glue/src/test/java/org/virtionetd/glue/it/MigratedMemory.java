package org.virtionetd.glue.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * The guest memory of a finished migration, compared page by page: the source stopped for good (postmigrate) and
 * the destination not yet running (started with {@code -S}), so nothing writes either, and every page must be
 * equal. A page that differs is one written at the source and not sent: for a vhost-user NIC, a page the back-end
 * wrote and did not log (vhost-user.rst, "Migration": the back-end marks every page it writes in the log). This
 * proves the dirty log for the whole of guest memory, where a byte stream only shows the buffers that carried it.
 */
final class MigratedMemory {
    static final int PAGE = 4096;

    private MigratedMemory() {
    }

    /** One page that differs: its guest-physical address, how many bytes differ and the first one's offset. */
    record Page(long address, int bytes, int first) {
        @Override
        public String toString() {
            return String.format("0x%x (%d bytes differ, the first at +0x%x)", address, bytes, first);
        }
    }

    /** The pages that differ in the first {@code bytes} of guest-physical memory, as QMP {@code pmemsave} gives it. */
    static List<Page> differingPages(Path sourceQmp, Path destinationQmp, long bytes, Path dir) {
        Path src = dir.resolve("migrated-source.mem");
        Path dst = dir.resolve("migrated-destination.mem");
        try {
            save(sourceQmp, bytes, src);
            save(destinationQmp, bytes, dst);
            return compare(src, dst, bytes);
        } finally {
            try {
                Files.deleteIfExists(src);
                Files.deleteIfExists(dst);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot remove the memory images in " + dir, e);
            }
        }
    }

    private static void save(Path qmp, long bytes, Path file) {
        GuestVm.qmp(qmp, GuestVm.qmpCommand("pmemsave", "{\"val\": 0, \"size\": " + bytes + ", \"filename\": \""
                + file + "\"}"));
    }

    static List<Page> compare(Path a, Path b, long bytes) {
        List<Page> differ = new ArrayList<>();
        try (FileChannel ca = FileChannel.open(a, StandardOpenOption.READ);
             FileChannel cb = FileChannel.open(b, StandardOpenOption.READ)) {
            if (ca.size() != bytes || cb.size() != bytes) {
                throw new AssertionError("memory images of " + bytes + " bytes expected: " + a + " has " + ca.size()
                        + ", " + b + " has " + cb.size());
            }
            long step = 1L << 30;
            for (long base = 0; base < bytes; base += step) {
                long len = Math.min(step, bytes - base);
                MappedByteBuffer ma = ca.map(FileChannel.MapMode.READ_ONLY, base, len);
                MappedByteBuffer mb = cb.map(FileChannel.MapMode.READ_ONLY, base, len);
                for (int off = 0; off < len; off += PAGE) {
                    int n = (int) Math.min(PAGE, len - off);
                    int first = ma.slice(off, n).mismatch(mb.slice(off, n));
                    if (first >= 0) {
                        int count = 0;
                        for (int i = first; i < n; i++) {
                            if (ma.get(off + i) != mb.get(off + i)) {
                                count++;
                            }
                        }
                        differ.add(new Page(base + off, count, first));
                    }
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot compare " + a + " with " + b, e);
        }
        return differ;
    }
}
