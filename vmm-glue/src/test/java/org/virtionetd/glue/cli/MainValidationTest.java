package org.virtionetd.glue.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Paths and names from the command line are checked before they are used, and a refusal names the thing and
 * the value: tap names (IFNAMSIZ, forbidden characters), socket paths (sockaddr_un length, missing directory,
 * an existing file that is not a socket is never replaced), the queue size. The device would run for ever if a
 * check were missing, hence the timeouts.
 */
class MainValidationTest {
    private static MainTest.Run run(String... args) {
        return MainTest.run(args);
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void tapNamesAreChecked(@TempDir Path dir) {
        String sock = dir.resolve("s.sock").toString();
        MainTest.Run slash = run("--socket", sock, "--backend", "tap:a/b");
        assertThat(slash.exit()).isEqualTo(2);
        assertThat(slash.err()).contains("'a/b'").contains("forbidden character at 1");
        MainTest.Run space = run("--socket", sock, "--backend", "tap:a b");
        assertThat(space.exit()).isEqualTo(2);
        assertThat(space.err()).contains("'a b'");
        MainTest.Run longName = run("--socket", sock, "--backend", "tap:abcdefghijklmnop");
        assertThat(longName.exit()).isEqualTo(2);
        assertThat(longName.err()).contains("abcdefghijklmnop").contains("15");
        assertThat(Files.exists(dir.resolve("s.sock"))).as("socket created despite a bad backend").isFalse();
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void socketPathsAreChecked(@TempDir Path dir) throws Exception {
        String tooLong = dir.resolve("x".repeat(120) + ".sock").toString();
        MainTest.Run longPath = run("--socket", tooLong, "--backend", "null");
        assertThat(longPath.exit()).isNotZero();
        assertThat(longPath.err()).contains("at most 107");

        MainTest.Run noDir = run("--socket", dir.resolve("missing/s.sock").toString(), "--backend", "null");
        assertThat(noDir.exit()).isNotZero();
        assertThat(noDir.err()).contains(dir.resolve("missing").toString());

        Path file = Files.writeString(dir.resolve("not-a-socket"), "keep me");
        MainTest.Run notSocket = run("--socket", file.toString(), "--backend", "null");
        assertThat(notSocket.exit()).isNotZero();
        assertThat(notSocket.err()).contains(file.toString()).contains("not a socket");
        assertThat(Files.readString(file)).as("the file at the socket path").isEqualTo("keep me");

        Path sock = dir.resolve("ok.sock");
        MainTest.Run badControl = run("--socket", sock.toString(), "--backend", "null", "--control", file.toString());
        assertThat(badControl.exit()).isNotZero();
        assertThat(badControl.err()).contains(file.toString()).contains("not a socket");
        assertThat(Files.readString(file)).as("the file at the control path").isEqualTo("keep me");
        assertThat(Files.exists(sock)).as("vhost-user socket left behind after the control socket failed").isFalse();
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void queueSizeIsChecked(@TempDir Path dir) {
        MainTest.Run r = run("--socket", dir.resolve("s.sock").toString(), "--backend", "null", "--queue-size",
                "1000");
        assertThat(r.exit()).isEqualTo(2);
        assertThat(r.err()).contains("1000");
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void busyPollIsChecked(@TempDir Path dir) {
        MainTest.Run r = run("--socket", dir.resolve("s.sock").toString(), "--backend", "null", "--busy-poll-us",
                "-5");
        assertThat(r.exit()).isEqualTo(2);
        assertThat(r.err()).contains("--busy-poll-us -5 is outside 0..1000000");
        assertThat(Files.exists(dir.resolve("s.sock"))).isFalse();
    }
}
