package org.virtionetd.backends.tap;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;

import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * TapDevice.write, the one gathered write per frame (writev through jnr-ffi), against the kernel's own count of
 * what the tap received: refusals, positions, buffers that are not direct, and no write once closed.
 */
class TapDeviceWriteTest {
    private static ByteBuffer[] frame(boolean direct) {
        ByteBuffer a = direct ? ByteBuffer.allocateDirect(100) : ByteBuffer.allocate(100);
        ByteBuffer b = direct ? ByteBuffer.allocateDirect(100) : ByteBuffer.allocate(100);
        for (int i = 0; i < 6; i++) {
            a.put(i, (byte) 0x02); // a unicast MAC that is nobody's: the namespace drops it
        }
        a.put(12, (byte) 0x08);
        a.position(0).limit(34); // 34 + 26 = a 60-byte frame in two pieces, the second not at offset 0
        b.position(10).limit(36);
        return new ByteBuffer[] {a, b};
    }

    private static long received(NetNs ns, String tap) {
        return Long.parseLong(ns.exec("cat", "/sys/class/net/" + tap + "/statistics/rx_packets").strip());
    }

    @Test
    void framesAreWrittenWholeRefusedWhileDownAndNeverAfterClose() throws Exception {
        String name = NetNs.uniqueLinkName("vnw");
        TapDevice tap = TapDevice.open(name, false, false);
        try (NetNs ns = NetNs.createWithoutIpv6()) {
            Cmd.check("ip", "link", "set", name, "netns", ns.name());
            ByteBuffer[] down = frame(true);
            assertThat(tap.write(down, 0, 2)).as("write to a tap that is down").isEqualTo(-1);
            assertThat(tap.lastWriteError()).hasMessageContaining(name).hasMessageContaining("EIO");

            ns.exec("ip", "link", "set", name, "up");
            ByteBuffer[] up = frame(true);
            assertThat(tap.write(up, 0, 2)).isEqualTo(60);
            assertThat(up[0].remaining()).as("first piece consumed").isZero();
            assertThat(up[1].position()).as("second piece consumed up to its limit").isEqualTo(36);
            assertThat(tap.write(frame(false), 0, 2)).as("heap buffers: the channel's own write").isEqualTo(60);
            assertThat(received(ns, name)).as("frames the kernel counted on the tap").isEqualTo(2);

            tap.close();
            assertThatThrownBy(() -> tap.write(frame(true), 0, 2)).isInstanceOf(ClosedChannelException.class);
        } finally {
            tap.close();
        }
    }
}
