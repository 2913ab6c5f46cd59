package org.virtionetd.glue.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

/**
 * What a virtio-netd process holds for its guests, from /proc (proc(5)): open fds, mappings of a memfd (guest
 * memory), queue-pair loop threads ("virtio-net-pair-N", cut to 15 characters in comm) and all threads. A reset,
 * reboot, driver reload or hot-unplug must give all of them back: after one, the counts return to what they were.
 */
public record DeviceResources(int fds, int memfdMappings, int loopThreads, int threads) {

    public static DeviceResources of(long pid) {
        Path proc = Path.of("/proc", Long.toString(pid));
        try {
            int maps = (int) Files.readAllLines(proc.resolve("maps")).stream().filter(l -> l.contains("/memfd:")).count();
            int loops = 0;
            int threads = 0;
            try (Stream<Path> tasks = Files.list(proc.resolve("task"))) {
                for (Path t : (Iterable<Path>) tasks::iterator) {
                    threads++;
                    try {
                        if (Files.readString(t.resolve("comm")).startsWith("virtio-net-pai")) {
                            loops++;
                        }
                    } catch (IOException gone) {
                        // the thread ended while we listed
                    }
                }
            }
            return new DeviceResources(ProcStat.fdCount(pid), maps, loops, threads);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read /proc/" + pid, e);
        }
    }

    /** The same fds, guest-memory mappings and loop threads (the JVM's own threads come and go). */
    public boolean sameHoldings(DeviceResources o) {
        return fds == o.fds && memfdMappings == o.memfdMappings && loopThreads == o.loopThreads;
    }
}
