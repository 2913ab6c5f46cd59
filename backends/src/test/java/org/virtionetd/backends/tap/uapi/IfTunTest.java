package org.virtionetd.backends.tap.uapi;

import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** Recomputes each ioctl number from its if_tun.h definition with the asm-generic _IOC encoding. */
class IfTunTest {
    private static final int IOC_WRITE = 1;
    private static final int IOC_READ = 2;

    private static long ioc(int dir, char type, int nr, int size) {
        return ((long) dir << 30) | ((long) size << 16) | ((long) type << 8) | nr;
    }

    @Test
    void ioctlNumbersMatchTheirDefinitions() {
        assertThat(IfTun.TUNSETIFF).isEqualTo(ioc(IOC_WRITE, 'T', 202, 4));
        assertThat(IfTun.TUNGETFEATURES).isEqualTo(ioc(IOC_READ, 'T', 207, 4));
        assertThat(IfTun.TUNSETOFFLOAD).isEqualTo(ioc(IOC_WRITE, 'T', 208, 4));
        assertThat(IfTun.TUNGETIFF).isEqualTo(ioc(IOC_READ, 'T', 210, 4));
        assertThat(IfTun.TUNGETVNETHDRSZ).isEqualTo(ioc(IOC_READ, 'T', 215, 4));
        assertThat(IfTun.TUNSETVNETHDRSZ).isEqualTo(ioc(IOC_WRITE, 'T', 216, 4));
        assertThat(IfTun.TUNSETQUEUE).isEqualTo(ioc(IOC_WRITE, 'T', 217, 4));
    }

    @Test
    void offloadFlagsAreDistinctSingleBits() {
        int[] flags = {IfTun.TUN_F_CSUM, IfTun.TUN_F_TSO4, IfTun.TUN_F_TSO6, IfTun.TUN_F_TSO_ECN, IfTun.TUN_F_UFO,
            IfTun.TUN_F_USO4, IfTun.TUN_F_USO6};
        int seen = 0;
        for (int i = 0; i < flags.length; i++) {
            assertThat(Integer.bitCount(flags[i])).isEqualTo(1);
            assertThat(flags[i]).isEqualTo(1 << i); // if_tun.h: 0x01 .. 0x40 in this order
            assertThat(seen & flags[i]).isZero();
            seen |= flags[i];
        }
    }
}
