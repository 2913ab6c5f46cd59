package org.virtionetd.virtio.os;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;

import static org.assertj.core.api.Assertions.assertThat;

class PrivateUmaskTest {
    @Test
    void aFileCreatedInsideIsBornPrivateAndTheUmaskIsRestoredAfter(@TempDir Path dir) throws Exception {
        Path before = dir.resolve("before");
        Files.createFile(before);
        Path inside = dir.resolve("inside");
        LinuxNative.withPrivateUmask(() -> Files.createFile(inside));
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(inside))).isEqualTo("rw-------");
        Path after = dir.resolve("after");
        Files.createFile(after);
        assertThat(Files.getPosixFilePermissions(after)).as("created with the process umask again")
                .isEqualTo(Files.getPosixFilePermissions(before));
    }
}
