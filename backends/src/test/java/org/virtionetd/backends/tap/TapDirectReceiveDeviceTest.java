package org.virtionetd.backends.tap;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A device on a real tap (root, the tap in a namespace made here) receives tap frames straight into the driver's
 * buffers (one readv, no staging) when the chains it holds can take the largest frame the tap may give: mergeable
 * buffers, and big-packet chains; with small buffers it peeks each frame's length and stages it. Either way every
 * byte arrives, a frame uses only the buffers it fills (num_buffers, used lengths) and the chains it did not need
 * stay the device's for the next frame. Frames of 60, 1514 and 9014 bytes (the tap's MTU raised to 9000) with
 * numbered payloads are written into the tap from the namespace with an AF_PACKET socket.
 */
class TapDirectReceiveDeviceTest {
    private static final int[] SIZES = {60, 1514, 9014, 60, 9014, 1514, 60};
    private static final int MERGEABLE_BUFFER = 1536;

    private TapBackendTest.Rig rig;
    private NetFixture f;

    @AfterEach
    void close() {
        try {
            if (f != null) {
                f.close();
            }
        } finally {
            if (rig != null) {
                rig.close();
            }
        }
    }

    @ParameterizedTest(name = "{0} buffers: staged reads {1}")
    @CsvSource({"mergeable, none", "big, none", "small, every frame"})
    void everyByteArrivesInTheBuffersItNeedsAndOnlyThem(String mode, String staged) throws Exception {
        VirtioNetDriver.Options o = new VirtioNetDriver.Options().mergeableBufferSize(MERGEABLE_BUFFER);
        if (!mode.equals("mergeable")) {
            o.without(VirtioNetFeature.MRG_RXBUF);
        }
        if (mode.equals("small")) {
            o.without(VirtioNetFeature.GUEST_TSO4, VirtioNetFeature.GUEST_TSO6, VirtioNetFeature.GUEST_UFO,
                    VirtioNetFeature.GUEST_USO4, VirtioNetFeature.GUEST_USO6).smallFrameRoom(9014);
        }
        rig = new TapBackendTest.Rig(true);
        f = NetFixture.builder().backend(p -> rig.backend).options(o).start();
        rig.ns.ip("link", "set", rig.tap, "mtu", "9000");
        // A first frame: a loop that starts may stage one (its predecessor could have peeked it).
        inject(0, new int[] {60});
        assertThat(payloadNumber(f.driver.awaitPackets(0, 1).get(0).frame())).as("first frame").isZero();
        long stagedBefore = rig.backend.stagedFrames();
        long rxBefore = f.snapshot().get("rx_packets");

        inject(1, SIZES);
        List<ReceivedPacket> got = f.driver.awaitPackets(0, SIZES.length);

        int header = f.driver.headerLength();
        List<String> problems = new ArrayList<>();
        for (int i = 0; i < SIZES.length; i++) {
            ReceivedPacket p = got.get(i);
            byte[] want = frame(1 + i, SIZES[i]);
            if (!Arrays.equals(p.frame(), want)) {
                problems.add("frame " + (1 + i) + " (" + SIZES[i] + " B) arrived as " + p.frame().length
                        + " bytes, first number " + payloadNumber(p.frame()));
                continue;
            }
            int buffers = mode.equals("mergeable") ? (header + SIZES[i] + MERGEABLE_BUFFER - 1) / MERGEABLE_BUFFER : 1;
            if (p.buffers().size() != buffers) {
                problems.add("frame " + (1 + i) + " (" + SIZES[i] + " B) used " + p.buffers().size()
                        + " buffers, not " + buffers + ": " + p.buffers());
            }
            long usedBytes = p.buffers().stream().mapToLong(b -> b.len()).sum();
            if (usedBytes != header + SIZES[i]) {
                problems.add("frame " + (1 + i) + ": used lengths add up to " + usedBytes + ", not "
                        + (header + SIZES[i]));
            }
        }
        assertThat(problems).as("frames as the driver got them").isEmpty();
        assertThat(f.snapshot().get("rx_packets") - rxBefore).as("rx_packets").isEqualTo(SIZES.length);
        long stagedNow = rig.backend.stagedFrames() - stagedBefore;
        assertThat(stagedNow).as("frames read into the staging buffer (%s buffers)", mode)
                .isEqualTo(staged.equals("none") ? 0 : SIZES.length);
    }

    /**
     * With fewer buffers posted than the largest tap frame needs, frames are peeked and staged: one that fits is
     * delivered, a larger one waits (not cut, not dropped) until the driver posts more, and once the ring holds
     * enough, frames go straight into guest buffers again.
     */
    @org.junit.jupiter.api.Test
    void withFewBuffersPostedAFrameWaitsWholeAndTheDirectWayComesBack() throws Exception {
        VirtioNetDriver.Options o = new VirtioNetDriver.Options().mergeableBufferSize(MERGEABLE_BUFFER)
                .fillRxOnStart(false).autoRefill(false);
        rig = new TapBackendTest.Rig(true);
        f = NetFixture.builder().backend(p -> rig.backend).options(o).start();
        rig.ns.ip("link", "set", rig.tap, "mtu", "9000");
        f.driver.fillRx(0, 3);
        inject(1, new int[] {60, 9014});
        List<ReceivedPacket> first = f.driver.awaitPackets(0, 1);
        assertThat(first.get(0).frame()).as("the 60-byte frame, in the 3 buffers posted").isEqualTo(frame(1, 60));
        // The device looked at the 9014-byte frame and asked for buffers; it must not be in the 2 buffers left.
        Await.until(Duration.ofSeconds(10), () -> f.snapshot().get("rx_waited_for_buffers") > 0,
                "the device waiting for buffers", () -> f.snapshot().toString());
        assertThat(f.driver.receive(0)).as("frames in 2 buffers of %d bytes", MERGEABLE_BUFFER).isEmpty();
        f.driver.fillRx(0, 200);
        List<ReceivedPacket> second = f.driver.awaitPackets(0, 1);
        assertThat(second.get(0).frame()).as("the 9014-byte frame once buffers came").isEqualTo(frame(2, 9014));
        assertThat(f.snapshot().get("rx_dropped_too_big")).as("rx_dropped_too_big").isZero();
        long staged = rig.backend.stagedFrames();
        inject(3, new int[] {60, 1514, 9014});
        List<ReceivedPacket> later = f.driver.awaitPackets(0, 3);
        assertThat(later).extracting(ReceivedPacket::frame)
                .containsExactly(frame(3, 60), frame(4, 1514), frame(5, 9014));
        assertThat(rig.backend.stagedFrames() - staged).as("frames staged once 200 buffers were posted").isZero();
    }

    /** A numbered broadcast of {@code size} bytes: EtherType 0x88b5, then the number, then bytes derived from it. */
    static byte[] frame(int number, int size) {
        byte[] b = new byte[size];
        Arrays.fill(b, 0, 6, (byte) 0xff);
        String[] mac = TapBackendTest.NS_MAC.split(":");
        for (int i = 0; i < 6; i++) {
            b[6 + i] = (byte) Integer.parseInt(mac[i], 16);
        }
        b[12] = (byte) 0x88;
        b[13] = (byte) 0xb5;
        b[14] = (byte) (number >>> 8);
        b[15] = (byte) number;
        for (int i = 16; i < size; i++) {
            b[i] = (byte) (number * 31 + i);
        }
        return b;
    }

    private static int payloadNumber(byte[] f) {
        return f.length < 16 ? -1 : ((f[14] & 0xff) << 8) | (f[15] & 0xff);
    }

    /** Writes frames {@code first, first+1, ...} of the given sizes into the tap from the namespace. */
    private void inject(int first, int[] sizes) {
        StringBuilder list = new StringBuilder();
        for (int s : sizes) {
            list.append(list.length() == 0 ? "" : ",").append(s);
        }
        rig.ns.exec("python3", "-c", String.join("\n",
                "import socket, sys",
                "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
                "s.bind((sys.argv[1], 0))",
                "n = int(sys.argv[2])",
                "for size in map(int, sys.argv[3].split(',')):",
                "    f = bytearray(size)",
                "    f[0:6] = b'\\xff' * 6",
                "    f[6:12] = s.getsockname()[4]",
                "    f[12:16] = b'\\x88\\xb5' + n.to_bytes(2, 'big')",
                "    for i in range(16, size):",
                "        f[i] = (n * 31 + i) & 0xff",
                "    s.send(bytes(f))",
                "    n += 1"),
                rig.tap, Integer.toString(first), list.toString());
    }
}
