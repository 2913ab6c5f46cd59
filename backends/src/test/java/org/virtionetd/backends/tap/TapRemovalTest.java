package org.virtionetd.backends.tap;

import org.junit.jupiter.api.Test;
import org.virtionetd.backends.tap.uapi.IfTun;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A tap deleted under an open TapBackend and created again (root; the tap lives in this JVM's namespace, because
 * re-attaching looks the name up there): the backend notices on its next write, read or poll error (EBADFD), stops
 * touching
 * the interface, does not create one itself, and re-attaches the same fd to the new tap of the same name with its
 * vnet header size and offloads, after which frames move both ways again. The kernel is the judge: TUNGETVNETHDRSZ,
 * {@code ethtool -k}, the tap's counters, a frame written into the tap from an AF_PACKET socket.
 */
class TapRemovalTest {
    private static final String DST = "02:00:00:00:00:01";
    private static final String SRC = "02:00:00:00:00:02";

    @Test
    void deletedTapIsNoticedNotRecreatedAndReattachedWithItsSettings() throws Exception {
        String tap = NetNs.uniqueLinkName("vnr");
        Cmd.check("ip", "tuntap", "add", "dev", tap, "mode", "tap");
        TapBackend backend = null;
        try {
            Cmd.check("ip", "link", "set", tap, "up");
            backend = TapBackend.open(tap, true);
            // Checksum and TSO: a new tap, nobody having asked for offloads yet, has TSO off.
            backend.configure(VirtioNetFeature.bits(VirtioNetFeature.GUEST_CSUM, VirtioNetFeature.GUEST_TSO4,
                    VirtioNetFeature.GUEST_TSO6, VirtioNetFeature.CSUM, VirtioNetFeature.MRG_RXBUF),
                    VirtioNetHeader.LENGTH_MRG);
            int programmed = backend.programmedFlags();
            assertThat(programmed).as("TUN_F_* programmed").isEqualTo(IfTun.TUN_F_CSUM | IfTun.TUN_F_TSO4
                    | IfTun.TUN_F_TSO6);
            assertThat(tso(tap)).as("tcp-segmentation-offload of %s as configured", tap).isEqualTo("on");
            assertThat(backend.attached()).isTrue();

            backend.checkAttachment();
            assertThat(backend.attached()).as("attached after checking a tap that is there").isTrue();

            // ---- deleted: the next write notices; writes are dropped, reads return nothing
            Cmd.check("ip", "link", "del", tap);
            assertThat(backend.attached()).as("attached before any I/O on the deleted tap").isTrue();
            assertThat(backend.send(TapBackendTest.packet(12, frame()))).as("send on a deleted tap").isFalse();
            assertThat(backend.attached()).as("attached after a write on the deleted tap").isFalse();
            assertThat(backend.peekLength()).as("peekLength on a deleted tap").isZero();
            assertThat(backend.reattach()).as("re-attach while no tap of that name exists").isFalse();
            assertThat(Files.exists(Path.of("/sys/class/net", tap)))
                    .as("the backend must not create %s itself", tap).isFalse();

            // ---- created again (defaults: TSO off, vnet header 10): re-attached with our settings
            Cmd.check("ip", "tuntap", "add", "dev", tap, "mode", "tap");
            Cmd.check("ip", "link", "set", tap, "up");
            assertThat(tso(tap)).as("tcp-segmentation-offload of the new %s before re-attaching", tap).isEqualTo("off");
            assertThat(backend.reattach()).as("re-attach once %s exists again", tap).isTrue();
            assertThat(backend.attached()).isTrue();
            assertThat(backend.device().vnetHeaderSize()).as("TUNGETVNETHDRSZ after re-attach").isEqualTo(12);
            assertThat(backend.programmedFlags()).as("TUN_F_* after re-attach").isEqualTo(programmed);
            assertThat(tso(tap)).as("tcp-segmentation-offload of %s after re-attach", tap).isEqualTo("on");

            long rx0 = counter(tap, "rx_packets");
            assertThat(backend.send(TapBackendTest.packet(12, frame()))).as("send after re-attach").isTrue();
            assertThat(counter(tap, "rx_packets") - rx0).as("frames the new %s received from us", tap).isEqualTo(1);
            inject(tap);
            TapBackendTest.Received got = TapBackendTest.awaitFrame(backend,
                    f -> f.length >= 14 && (f[12] & 0xff) == 0x88 && (f[13] & 0xff) == 0xb5, "injected frame");
            assertThat(got.frame.length).isGreaterThanOrEqualTo(60);

            // ---- deleted again: the fd polls as an error (what the loop sees while it is not reading)
            Cmd.check("ip", "link", "del", tap);
            backend.checkAttachment();
            assertThat(backend.attached()).as("attached after the poll error was checked").isFalse();
            assertThat(backend.peekLength()).as("peekLength on the deleted tap").isZero();
            Cmd.check("ip", "tuntap", "add", "dev", tap, "mode", "tap");
            Cmd.check("ip", "link", "set", tap, "up");
            assertThat(backend.reattach()).as("second re-attach").isTrue();
            inject(tap);
            TapBackendTest.awaitFrame(backend,
                    f -> f.length >= 14 && (f[12] & 0xff) == 0x88 && (f[13] & 0xff) == 0xb5, "injected frame");
        } finally {
            if (backend != null) {
                backend.close();
            }
            Cmd.run("ip", "link", "del", tap);
        }
    }

    /** A broadcast frame of the local experimental EtherType 0x88b5, 60 bytes. */
    private static byte[] frame() {
        byte[] f = new byte[60];
        byte[] dst = Frames.mac(DST);
        byte[] src = Frames.mac(SRC);
        System.arraycopy(dst, 0, f, 0, 6);
        System.arraycopy(src, 0, f, 6, 6);
        f[12] = (byte) 0x88;
        f[13] = (byte) 0xb5;
        return f;
    }

    private static String tso(String tap) {
        for (String line : Cmd.check("ethtool", "-k", tap).split("\n")) {
            if (line.startsWith("tcp-segmentation-offload:")) {
                return line.substring(line.indexOf(':') + 1).strip().split(" ")[0];
            }
        }
        throw new AssertionError("no tcp-segmentation-offload line in ethtool -k " + tap);
    }

    private static long counter(String tap, String name) {
        return Long.parseLong(Cmd.check("cat", "/sys/class/net/" + tap + "/statistics/" + name).strip());
    }

    /** Writes one 0x88b5 frame into the tap from the kernel side, so that the backend reads it. */
    private static void inject(String tap) {
        Cmd.check("python3", "-c", String.join("\n",
                "import socket, sys",
                "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
                "s.bind((sys.argv[1], 0))",
                "s.send(b'\\xff' * 6 + s.getsockname()[4] + b'\\x88\\xb5' + bytes(46))"), tap);
    }
}
