package org.virtionetd.glue.bhyve;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.os.LinuxNative;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class MsiNotifierTest {
    private FakeVmmapi fake;

    @AfterEach
    void closeFake() {
        if (fake != null) {
            LinuxNative.close(fake.memfd);
        }
    }

    @Test
    void deliversTheProgrammedMessageAndSuppressesWhenMasked() throws Exception {
        fake = new FakeVmmapi("vm", 4096);
        try (Vmmapi.VmContext vm = fake.open("vm")) {
            MsiNotifier n = new MsiNotifier(vm, "vm rx0");
            n.notifyUsed(); // not routed yet: the guest has not programmed the vector
            assertThat(fake.msis).isEmpty();
            assertThat(n.suppressed()).isEqualTo(1);
            n.route(new MsiNotifier.MsiMessage(0xfee00000L, 0x4041));
            n.notifyUsed();
            n.notifyUsed();
            n.route(new MsiNotifier.MsiMessage(0xfee01000L, 0x4052)); // the guest moved the vector to CPU 1
            n.notifyUsed();
            n.unroute(); // masked
            n.notifyUsed();
            assertThat(fake.msis).extracting(m -> m[0]).containsExactly(0xfee00000L, 0xfee00000L, 0xfee01000L);
            assertThat(fake.msis).extracting(m -> m[1]).containsExactly(0x4041L, 0x4041L, 0x4052L);
            assertThat(n.delivered()).isEqualTo(3);
            assertThat(n.suppressed()).isEqualTo(2);
        }
    }

    @Test
    void failedInjectionIsCountedNotThrown() throws Exception {
        fake = new FakeVmmapi("vm", 4096);
        fake.failMsiWithErrno = 22;
        try (Vmmapi.VmContext vm = fake.open("vm")) {
            MsiNotifier n = new MsiNotifier(vm, "vm tx0");
            n.route(new MsiNotifier.MsiMessage(0xfee00000L, 0x31));
            n.notifyUsed();
            n.notifyUsed();
            assertThat(n.failed()).isEqualTo(2);
            assertThat(n.delivered()).isZero();
        }
    }

    @Test
    void messagesOutsideTheLocalApicRangeAreRefused() {
        assertThatThrownBy(() -> new MsiNotifier.MsiMessage(0xfec00000L, 1))
                .hasMessage("MSI address 0xfec00000 is not in the local APIC range 0xfee00000..0xfeefffff");
        assertThatThrownBy(() -> new MsiNotifier.MsiMessage(0x1_fee00000L, 1))
                .hasMessage("MSI address 0x1fee00000 is not in the local APIC range 0xfee00000..0xfeefffff");
        assertThatThrownBy(() -> new MsiNotifier.MsiMessage(0xfee00000L, 1L << 32))
                .hasMessage("MSI data 0x100000000 is wider than 32 bits");
    }
}
