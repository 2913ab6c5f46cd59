package org.virtionetd.glue.bhyve;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BhyveMacTest {
    /** Expected values from Python's hashlib.md5("<slot>-<func>-<vmname>")[:3], not from this code. */
    @ParameterizedTest(name = "slot {0} func {1} vm {2} -> {3}")
    @CsvSource({"2, 0, vm1, 00:a0:98:27:a7:18", "3, 0, vm1, 00:a0:98:ee:08:2b", "2, 0, guest, 00:a0:98:11:f8:25",
            "4, 0, freebsd, 00:a0:98:cc:12:46", "0, 0, a, 00:a0:98:99:ac:c5"})
    void generatedAsNetGenmac(int slot, int func, String vm, String mac) {
        assertThat(BhyveMac.format(BhyveMac.generate(slot, func, vm))).isEqualTo(mac);
    }

    @ParameterizedTest(name = "{0} -> {1}")
    @CsvSource({"00:a0:98:11:22:33, 00:a0:98:11:22:33", "58:9C:FC:0B:CD:EF, 58:9c:fc:0b:cd:ef",
            "2:0:0:0:0:1, 02:00:00:00:00:01", "0x2:0:0:0:0:1, 02:00:00:00:00:01",
            "02:00:00:00:00:01:junk, 02:00:00:00:00:01", "102:00:00:00:00:01, 02:00:00:00:00:01"})
    void acceptedAsEtherAton(String text, String mac) {
        // ether_aton reads %x and keeps each field as a byte; trailing text after the sixth field is ignored.
        assertThat(BhyveMac.format(BhyveMac.parse(text))).isEqualTo(mac);
    }

    @ParameterizedTest(name = "{0} is refused")
    @ValueSource(strings = {"01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "03:00:00:00:00:00", "00:00:00:00:00:00",
            "0:0:0:0:0:0", "00:a0:98:11:22", "00-a0-98-11-22-33", "zz:a0:98:11:22:33", "", "00:a0:98:11:22:"})
    void refusedAsNetParsemac(String text) {
        assertThatThrownBy(() -> BhyveMac.parse(text)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("Invalid MAC " + text);
    }
}
