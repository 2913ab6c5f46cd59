package org.virtionetd.virtio.net;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.os.EventFd;
import org.virtionetd.virtio.os.LinuxNative;
import org.virtionetd.virtio.queue.Notifier;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/** A queue pair loop that cannot start marks the device NEEDS_RESET and leaves no fd of its own behind. */
class LoopStartFailureTest {
    @Test
    void aKickThatCannotBePolledFailsThePairWithoutLeakingItsEventfdAndEpoll() throws Exception {
        try (NetFixture f = NetFixture.started(0, new VirtioNetDriver.Options())) {
            long loopsBefore = count("anon_inode:[eventpoll]");
            // A memfd is not pollable: epoll_ctl refuses it, as it would a kick fd a front-end got wrong.
            EventFd notAnEventfd = EventFd.adopt(LinuxNative.memfdCreate("not-a-kick", 4096));
            f.device.startQueue(1, notAnEventfd, Notifier.NONE);
            assertThat(f.device.status() & DeviceStatus.NEEDS_RESET).as(DeviceStatus.describe(f.device.status()))
                    .isNotZero();
            assertThat(count("anon_inode:[eventpoll]")).as("epoll fds: the old loop's closed, no new one kept")
                    .isEqualTo(loopsBefore - 1);
        }
    }

    private static long count(String target) throws IOException {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            return s.filter(p -> {
                try {
                    return Files.readSymbolicLink(p).toString().equals(target);
                } catch (IOException e) {
                    return false;
                }
            }).count();
        }
    }
}
