package org.virtionetd.backends.tap;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.testsupport.NetNs;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A multi-queue tap with one queue disabled (TUNSETQUEUE IFF_DETACH_QUEUE, what the device does for a pair the driver
 * does not use): the kernel steers every flow to the queue still attached; attached again, flows spread over both.
 * The kernel in a namespace sends 32 UDP flows (distinct source ports) each time; the test reads both queues.
 */
class TapQueueSteeringTest {
    private static final int FLOWS = 32;

    @Test
    void aDetachedQueueGetsNoFlowAndAReattachedOneGetsItsShare() throws Exception {
        String tap = NetNs.uniqueLinkName("vnq");
        List<TapBackend> q = TapBackend.openQueues(tap, 2, true);
        try (NetNs ns = NetNs.createWithoutIpv6()) {
            ns.adopt(tap, TapBackendTest.NS_MAC, TapBackendTest.NS_IP + "/24");
            ns.neighbour(TapBackendTest.OUR_IP, TapBackendTest.OUR_MAC, tap);
            q.get(1).setEnabled(false);
            assertThat(q.get(1).queueAttached()).isFalse();
            q.get(1).setEnabled(false); // twice is fine (no second ioctl, which the kernel would refuse)
            sendFlows(ns, 41000);
            int[] got = drain(q, 41000);
            assertThat(got[0]).as("datagrams on queue 0 with queue 1 detached").isEqualTo(FLOWS);
            assertThat(got[1]).as("datagrams on the detached queue 1").isZero();

            q.get(1).setEnabled(true);
            assertThat(q.get(1).queueAttached()).isTrue();
            sendFlows(ns, 42000);
            got = drain(q, 42000);
            assertThat(got[0] + got[1]).as("datagrams on both queues after re-attaching").isEqualTo(FLOWS);
            assertThat(got[1]).as("flows steered to the re-attached queue 1 (of %d)", FLOWS).isPositive();
        } finally {
            q.forEach(TapBackend::close);
        }
    }

    /** 32 one-datagram UDP flows from the namespace to us, source ports base..base+31. */
    private static void sendFlows(NetNs ns, int base) {
        ns.exec("python3", "-c", "import socket\n"
                + "for p in range(" + base + "," + (base + FLOWS) + "):\n"
                + "  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                + "  s.bind(('" + TapBackendTest.NS_IP + "',p))\n"
                + "  s.sendto(b'flow',('" + TapBackendTest.OUR_IP + "',9999))\n"
                + "  s.close()\n");
    }

    /** Reads both queues until FLOWS datagrams from source ports base.. arrived (bounded); counts per queue. */
    private static int[] drain(List<TapBackend> q, int base) throws Exception {
        int[] got = new int[2];
        ByteBuffer[] slices = {ByteBuffer.allocateDirect(StagedFrame.CAPACITY)};
        long deadline = System.nanoTime() + TapBackendTest.WAIT.toNanos();
        while (got[0] + got[1] < FLOWS && System.nanoTime() < deadline) {
            boolean any = false;
            for (int i = 0; i < 2; i++) {
                slices[0].clear();
                int n = q.get(i).receive(slices, 1);
                if (n <= 0) {
                    continue;
                }
                any = true;
                int h = q.get(i).headerLength();
                ByteBuffer b = slices[0];
                // Ethernet + IPv4 (20) + UDP: our flows only (the kernel may send other frames).
                if (n >= h + 42 && b.getShort(h + 12) == 0x0800 && b.get(h + 23) == 17) {
                    int sport = b.getShort(h + 34) & 0xffff;
                    if (sport >= base && sport < base + FLOWS) {
                        got[i]++;
                    }
                }
            }
            if (!any) {
                LockSupport.parkNanos(2_000_000);
            }
        }
        return got;
    }
}
