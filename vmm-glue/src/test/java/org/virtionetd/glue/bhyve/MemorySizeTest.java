package org.virtionetd.glue.bhyve;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class MemorySizeTest {
    @ParameterizedTest(name = "{0} = {1} bytes")
    @CsvSource({"512, 536870912", "256M, 268435456", "512m, 536870912", "1G, 1073741824", "2g, 2147483648",
            "4096K, 4194304", "1048576, 1048576", "1048575, 1099510579200", "0x100, 268435456",
            "8G, 8589934592"})
    void parsedAsVmParseMemsize(String text, long bytes) {
        // Below 1 MiB a plain number means MiB (backward compatibility); from 1 MiB on it is bytes.
        assertThat(MemorySize.parse(text)).isEqualTo(bytes);
    }

    @ParameterizedTest(name = "{0} is refused")
    @ValueSource(strings = {"", "M", "12Q", "1.5G", "-1G", "G1"})
    void refusedWithBhyvesMessage(String text) {
        assertThatThrownBy(() -> MemorySize.parse(text)).hasMessage("invalid memsize '" + text + "'");
    }

    @ParameterizedTest(name = "{0} bytes is -m {1}")
    @CsvSource({"536870912, 512M", "536870913, 513M", "4194304, 4M"})
    void qemuSizeInWholeMiB(long bytes, String qemu) {
        assertThat(MemorySize.toQemuMiB(bytes)).isEqualTo(qemu);
    }
}
