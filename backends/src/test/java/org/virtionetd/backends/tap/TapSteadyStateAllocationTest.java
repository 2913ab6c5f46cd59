package org.virtionetd.backends.tap;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.testdriver.Await;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;
import org.virtionetd.virtio.testsupport.Spawned;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Receiving from a real tap straight into guest buffers (readv through the iovec over the chains held) allocates
 * nothing per frame once warm, like the paths SteadyStateAllocationTest measures with the null backend: the bytes
 * the queue pair's loop thread allocates (ThreadMXBean) hardly move while thousands of frames arrive. A paced
 * AF_PACKET sender in the tap's namespace writes the frames; the driver runs on the test thread, with a ring of 1024
 * so that it stays ahead of the device (which holds ~43 buffers of 1536 bytes for the largest tap frame) even when
 * it falls behind for a few milliseconds; a frame that finds fewer buffers posted than that is staged (the test
 * driver refills in steps), so most frames, not all, go the direct way.
 */
class TapSteadyStateAllocationTest {
    private static final int WARM_UP = 5_000;
    private static final int MEASURED = 20_000;
    private static final int SENT = 60_000;

    @Test
    void receivingFromATapAllocatesNothingPerFrame() throws Exception {
        try (TapBackendTest.Rig rig = new TapBackendTest.Rig(true);
             NetFixture f = NetFixture.builder().backend(p -> rig.backend)
                     .options(new VirtioNetDriver.Options().queueSize(1024)).timeout(Duration.ofSeconds(30)).start()) {
            // 60-byte broadcasts, 32 per millisecond at most (a rate the test driver keeps up with).
            try (Spawned sender = rig.ns.spawn("paced-sender", "python3", "-c", String.join("\n",
                    "import socket, sys, time",
                    "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
                    "s.bind((sys.argv[1], 0))",
                    "f = b'\\xff' * 6 + s.getsockname()[4] + b'\\x88\\xb5' + bytes(46)",
                    "for i in range(int(sys.argv[2])):",
                    "    s.send(f)",
                    "    if i % 32 == 31:",
                    "        time.sleep(0.001)"), rig.tap, Integer.toString(SENT))) {
                receive(f, WARM_UP, sender);
                long before = f.device.loopAllocatedBytes(0);
                long rxBefore = f.snapshot().get("rx_packets");
                long staged = rig.backend.stagedFrames();
                receive(f, MEASURED, sender);
                long after = f.device.loopAllocatedBytes(0);
                long frames = f.snapshot().get("rx_packets") - rxBefore;
                assertThat(before).as("allocation counter of the loop thread").isNotNegative();
                assertThat(rig.backend.stagedFrames() - staged).as("frames staged rather than read into guest "
                        + "buffers, of %d", frames).isLessThan(frames / 2);
                assertThat((after - before) / (double) frames)
                        .as("bytes allocated per frame by the event loop (%d bytes for %d frames)", after - before,
                                frames)
                        .isLessThan(1.0);
            }
        }
    }

    private static void receive(NetFixture f, int n, Spawned sender) {
        int[] got = {0};
        Await.until(Duration.ofSeconds(60), () -> {
            got[0] += f.driver.receive(0).size();
            return got[0] >= n;
        }, n + " frames from the tap", () -> got[0] + " frames; sender alive " + sender.isAlive() + ", counters "
                + f.snapshot());
    }
}
