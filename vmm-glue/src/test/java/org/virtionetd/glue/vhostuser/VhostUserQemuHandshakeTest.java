package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.glue.vhostuser.VhostUserTestSupport.await;

/**
 * Real QEMU as the front-end: at start-up (guest paused, no guest needed) QEMU's vhost-user-net initialises the
 * back-end: SET_OWNER, GET_FEATURES, protocol features, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS. QEMU quits at once on a
 * reply it does not like, so "still running after the handshake" is the judge; then killing QEMU must reset the
 * device. The rings are only set up when a guest driver starts the device (needs the real VirtioNetDevice).
 */
@Tag("integration")
class VhostUserQemuHandshakeTest {
    @TempDir
    Path dir;

    @Test
    void qemuCompletesTheInitialHandshakeAndItsExitResetsTheDevice() throws Exception {
        FakeVirtioDevice device = new FakeVirtioDevice(2);
        Path sock = dir.resolve("qemu.sock");
        Path log = dir.resolve("qemu.log");
        VhostUserServer server = new VhostUserServer(sock, device);
        server.start();
        Process qemu = null;
        try {
            qemu = new ProcessBuilder(List.of("qemu-system-x86_64", "-accel", "tcg", "-S", "-nodefaults",
                    "-display", "none", "-m", "64", "-object", "memory-backend-memfd,id=mem,size=64M,share=on",
                    "-numa", "node,memdev=mem", "-chardev", "socket,id=c0,path=" + sock,
                    "-netdev", "vhost-user,id=n0,chardev=c0,queues=1",
                    "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,vectors=0"))
                    .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            Process q = qemu;
            VhostUserRequest[] expected = {VhostUserRequest.SET_OWNER, VhostUserRequest.GET_FEATURES,
                VhostUserRequest.GET_PROTOCOL_FEATURES, VhostUserRequest.SET_PROTOCOL_FEATURES,
                VhostUserRequest.GET_QUEUE_NUM, VhostUserRequest.GET_MAX_MEM_SLOTS};
            await(() -> {
                for (VhostUserRequest r : expected) {
                    if (server.handled(r) == 0) {
                        return false;
                    }
                }
                return true;
            }, () -> counts(server) + ", qemu alive " + q.isAlive() + ", output: " + read(log));
            // Give QEMU the chance to reject what we said; it exits with an error if it does.
            assertThat(qemu.waitFor(1, TimeUnit.SECONDS)).as("QEMU exited: " + read(log)).isFalse();
            assertThat(server.connected()).isTrue();
            assertThat(read(log)).doesNotContainIgnoringCase("vhost");
        } finally {
            if (qemu != null) {
                qemu.destroy();
                if (!qemu.waitFor(10, TimeUnit.SECONDS)) {
                    qemu.destroyForcibly().waitFor();
                }
            }
        }
        try {
            await(() -> server.disconnects() == 1, () -> "disconnects " + server.disconnects());
            assertThat(device.resets()).isEqualTo(1);
            assertThat(device.violations()).isEmpty();
        } finally {
            server.close();
        }
    }

    private static Map<VhostUserRequest, Long> counts(VhostUserServer server) {
        Map<VhostUserRequest, Long> m = new EnumMap<>(VhostUserRequest.class);
        for (VhostUserRequest r : VhostUserRequest.values()) {
            if (server.handled(r) > 0) {
                m.put(r, server.handled(r));
            }
        }
        return m;
    }

    private static String read(Path p) {
        try {
            return Files.exists(p) ? Files.readString(p) : "";
        } catch (java.io.IOException e) {
            return e.toString();
        }
    }
}
