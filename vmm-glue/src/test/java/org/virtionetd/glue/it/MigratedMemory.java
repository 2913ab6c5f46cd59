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
    record Page(long address, int bytes, int first, String around) {
        @Override
        public String toString() {
            return String.format("0x%x (%d bytes differ, the first at +0x%x; %s)", address, bytes, first, around);
        }
    }

    /** A guest-physical range, both ends included, as /proc/iomem writes it. */
    record Range(long first, long last, String name) {
        boolean holds(long page) {
            return page + PAGE - 1 >= first && page <= last;
        }

        @Override
        public String toString() {
            return String.format("%x-%x %s", first, last, name);
        }
    }

    /** Whether {@code page} lies in one of {@code ranges}. */
    static boolean inside(Page page, List<Range> ranges) {
        return ranges.stream().anyMatch(r -> r.holds(page.address()));
    }

    /** 96 bytes from 64 before {@code at}, from each image, in hex. */
    private static String around(MappedByteBuffer a, MappedByteBuffer b, int at, int limit) {
        int from = Math.max(0, at - 64);
        int to = Math.min(limit, at + 32);
        StringBuilder sa = new StringBuilder();
        StringBuilder sb = new StringBuilder();
        for (int i = from; i < to; i++) {
            sa.append(String.format("%02x", a.get(i)));
            sb.append(String.format("%02x", b.get(i)));
        }
        return "source +0x" + Integer.toHexString(from & 0xfff) + ": " + sa + " / destination: " + sb;
    }

    /**
     * The pages that differ in the first {@code bytes} of guest-physical memory, as QMP {@code pmemsave} gives it;
     * the two images go to a directory of their own in /dev/shm (memory, not the disk) and are removed after.
     */
    static List<Page> differingPages(Path sourceQmp, Path destinationQmp, long bytes) {
        Path dir;
        try {
            dir = Files.createTempDirectory(Path.of("/dev/shm"), "vnd-migrated-");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot make a directory in /dev/shm for the memory images", e);
        }
        Path src = dir.resolve("source.mem");
        Path dst = dir.resolve("destination.mem");
        try {
            save(sourceQmp, bytes, src);
            save(destinationQmp, bytes, dst);
            List<Page> differ = compare(src, dst, bytes);
            keep(src, dst, differ);
            return differ;
        } finally {
            try {
                Files.deleteIfExists(src);
                Files.deleteIfExists(dst);
                Files.deleteIfExists(dir);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot remove the memory images in " + dir, e);
            }
        }
    }

    /** The first differing pages of both images, whole, under target/it-logs (for a reader of the failure). */
    private static void keep(Path src, Path dst, List<Page> differ) {
        if (differ.isEmpty()) {
            return;
        }
        Path out = Path.of("target", "it-logs", "migrated-pages-" + System.currentTimeMillis());
        try (FileChannel ca = FileChannel.open(src, StandardOpenOption.READ);
             FileChannel cb = FileChannel.open(dst, StandardOpenOption.READ)) {
            Files.createDirectories(out);
            for (Page p : differ.subList(0, Math.min(8, differ.size()))) {
                for (Object[] side : new Object[][] {{ca, "source"}, {cb, "destination"}}) {
                    java.nio.ByteBuffer page = java.nio.ByteBuffer.allocate(PAGE);
                    ((FileChannel) side[0]).read(page, p.address());
                    Files.write(out.resolve(String.format("0x%x.%s", p.address(), side[1])), page.array());
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot keep the differing pages in " + out, e);
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
                        differ.add(new Page(base + off, count, first, around(ma, mb, off + first,
                                (int) len)));
                    }
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot compare " + a + " with " + b, e);
        }
        return differ;
    }
}
