package org.virtionetd.glue.vhostuser;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class VhostUserSocketTest {
    @TempDir
    Path dir;

    @Test
    void socketIsCreatedWithMode0600AndRemovedOnClose() throws Exception {
        Path sock = dir.resolve("a.sock");
        VhostUserServer server = new VhostUserServer(sock, new FakeVirtioDevice(2));
        server.start();
        try {
            assertThat(Files.getPosixFilePermissions(sock)).containsExactlyInAnyOrder(
                    PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE);
            assertThat((Integer) Files.getAttribute(sock, "unix:mode") & 0170000).as("a socket").isEqualTo(0140000);
            try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(sock)) {
                fe.sendNoPayload(VhostUserRequest.GET_PROTOCOL_FEATURES, FakeVhostUserFrontEnd.PLAIN);
                assertThat(fe.replyU64(VhostUserRequest.GET_PROTOCOL_FEATURES)).as("CONFIG not offered by default")
                        .isEqualTo(VhostUserServer.DEFAULT_PROTOCOL_FEATURES)
                        .matches(f -> !VhostUserProtocolFeature.CONFIG.in(f));
            }
        } finally {
            server.close();
        }
        assertThat(sock).doesNotExist();
    }

    @Test
    void aStaleSocketFileIsReplaced() throws Exception {
        Path sock = dir.resolve("stale.sock");
        // A socket file whose process is gone: bound, then closed without unlinking.
        int fd = LinuxNative.unixStreamSocket(false);
        LinuxNative.bindUnixAndListen(fd, sock.toString(), 1);
        LinuxNative.close(fd);
        assertThat(sock).exists();
        FakeVirtioDevice device = new FakeVirtioDevice(2);
        VhostUserServer server = new VhostUserServer(sock, device);
        server.start();
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(sock)) {
            assertThat(fe.features()).isNotZero();
        } finally {
            server.close();
        }
    }

    @Test
    void aSocketInUseByARunningProcessIsRefused() throws Exception {
        Path sock = dir.resolve("live.sock");
        VhostUserServer first = new VhostUserServer(sock, new FakeVirtioDevice(2));
        first.start();
        try {
            VhostUserServer second = new VhostUserServer(sock, new FakeVirtioDevice(2));
            assertThatThrownBy(second::start).isInstanceOf(IOException.class)
                    .hasMessage("socket " + sock + " is in use by a running process");
            // The first server still serves.
            try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(sock)) {
                assertThat(fe.features()).isNotZero();
            }
        } finally {
            first.close();
        }
    }

    @Test
    void aPathThatIsNotASocketIsLeftAlone() throws Exception {
        Path file = dir.resolve("file");
        Files.writeString(file, "data");
        VhostUserServer server = new VhostUserServer(file, new FakeVirtioDevice(2));
        assertThatThrownBy(server::start).isInstanceOf(IOException.class).hasMessageContaining("is not a socket");
        assertThat(Files.readString(file)).isEqualTo("data");
    }

    @Test
    void closeEndsAConnectedSessionAndResetsTheDevice() throws Exception {
        Path sock = dir.resolve("c.sock");
        FakeVirtioDevice device = new FakeVirtioDevice(2);
        VhostUserServer server = new VhostUserServer(sock, device);
        server.start();
        try (FakeVhostUserFrontEnd fe = FakeVhostUserFrontEnd.connect(sock)) {
            fe.features();
            server.close();
            assertThat(device.resets()).isEqualTo(1);
            assertThat(server.disconnects()).isEqualTo(1);
            assertThat(fe.closedByPeer()).isTrue();
        }
        assertThat(sock).doesNotExist();
    }
}
