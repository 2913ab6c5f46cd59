package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.testsupport.Cleanup;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A second, independent driver of virtio-netd: DPDK's virtio_user PMD (dpdk-testpmd, no hugepages) connects to
 * the device's vhost-user socket as the front-end. testpmd in txonly mode sends, and the frames show up on the tap
 * (its rx counter in the namespace); frames written to the tap from the namespace (an AF_PACKET socket) show up
 * in testpmd in rxonly mode (its RX-packets). Two testpmd runs one after the other: the device also serves a
 * second front-end after the first one left. Run on each ring layout virtio_user drives: the split ring, the packed
 * ring ({@code packed_vq=1}, VIRTIO_F_RING_PACKED, virtio 1.2 section 2.8), each with and without
 * VIRTIO_F_IN_ORDER ({@code in_order=1}, virtio_user's default: the device returns a burst of TX buffers as one
 * used entry, 2.7.9 / 2.8.9); the features the device acked say which one ran.
 */
@Tag("integration")
class DpdkVirtioUserIT {
    private static final System.Logger LOG = System.getLogger(DpdkVirtioUserIT.class.getName());
    private static final String DRIVER_MAC = "52:54:00:12:34:57";
    private static final Pattern TX_PACKETS = Pattern.compile("TX-packets:\\s+(\\d+)");
    private static final Pattern RX_PACKETS = Pattern.compile("RX-packets:\\s+(\\d+)");
    private static final int FRAMES_TO_TESTPMD = 200;

    @ParameterizedTest(name = "virtio_user options [{0}]")
    @ValueSource(strings = {"in_order=0", "packed_vq=1,in_order=0", "packed_vq=1,in_order=1", "in_order=1"})
    @Timeout(value = 8, unit = TimeUnit.MINUTES)
    void testpmdTxReachesTheTapAndTapFramesReachTestpmd(String options) {
        String prefix = "vnd-it-vu-" + ProcessHandle.current().pid();
        String vdevOptions = "," + options;
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0")) {
                // ---- testpmd -> device -> tap
                long tapRxBefore = tapCounter(ns, "rx_packets");
                long tapRxAfter;
                String txOutput;
                try (Spawned testpmd = testpmd(ns, device.socket(), prefix + "-tx", "txonly", vdevOptions)) {
                    Failures.withContext(() -> testpmdState(testpmd) + "\n" + device.describe(), () -> {
                        Poll.until("1000 frames from testpmd (txonly) on the tap", Duration.ofSeconds(90),
                                () -> tapCounter(ns, "rx_packets") - tapRxBefore >= 1000 || !testpmd.isAlive(),
                                () -> "tap rx_packets " + tapRxBefore + " -> " + tapCounter(ns, "rx_packets"));
                        assertThat(testpmd.isAlive()).as("testpmd (txonly) still running").isTrue();
                        assertLayout(GuestFeaturesIT.awaitAcked(device), options);
                    });
                    testpmd.close(); // SIGTERM: testpmd stops forwarding and prints its totals
                    txOutput = testpmd.output();
                }
                // The device wrote its last frames before it saw the disconnect: the counter settles.
                long[] settled = {-1};
                Poll.until("tap rx_packets to settle", Duration.ofSeconds(30), () -> {
                    long now = tapCounter(ns, "rx_packets");
                    boolean same = now == settled[0];
                    settled[0] = now;
                    return same;
                });
                tapRxAfter = settled[0];
                long sent = max(TX_PACKETS, txOutput);
                Map<String, Object> statsAfterTx = device.stats();
                LOG.log(System.Logger.Level.INFO, "testpmd txonly: TX-packets {0}; tap rx_packets +{1}; device {2}",
                        sent, tapRxAfter - tapRxBefore, statsAfterTx);
                Failures.withContext(() -> "testpmd (txonly) output tail:\n" + Cmd.indent(Cmd.tail(txOutput, 40))
                        + "\n" + device.describe(), () -> {
                    long deviceTx = VirtioNetd.counter(statsAfterTx, "tx_packets");
                    assertThat(sent).as("TX-packets testpmd reported").isGreaterThanOrEqualTo(1000);
                    // Every frame the device sent reached the tap, and it sent no more than testpmd queued
                    // (frames still in the ring when testpmd left are never sent).
                    assertThat(tapRxAfter - tapRxBefore).as("tap rx_packets added").isEqualTo(deviceTx);
                    assertThat(deviceTx).as("device tx_packets (testpmd TX-packets %s)", sent)
                            .isBetween(1000L, sent);
                    assertThat(VirtioNetd.counter(statsAfterTx, "tx_bad_header")).as("device tx_bad_header").isZero();
                    assertThat(VirtioNetd.counter(statsAfterTx, "invalid_chains")).as("device invalid_chains")
                            .isZero();
                });

                // ---- tap -> device -> testpmd (a second front-end on the same device)
                try (Spawned testpmd = testpmd(ns, device.socket(), prefix + "-rx", "rxonly", vdevOptions)) {
                    Failures.withContext(() -> testpmdState(testpmd) + "\n" + device.describe(), () -> {
                        // Forwarding runs once testpmd prints its periodic statistics, and the device has
                        // the driver's features once the virtio_user port started.
                        testpmd.awaitLine("NIC statistics for port 0", Duration.ofSeconds(90));
                        assertLayout(GuestFeaturesIT.awaitAcked(device), options);
                        long tapTxBefore = tapCounter(ns, "tx_packets");
                        String sender = sendFrames(ns, "vnd0", DRIVER_MAC, FRAMES_TO_TESTPMD);
                        Poll.until(FRAMES_TO_TESTPMD + " frames in testpmd (rxonly)", Duration.ofSeconds(60),
                                () -> max(RX_PACKETS, testpmd.output()) >= FRAMES_TO_TESTPMD || !testpmd.isAlive(),
                                () -> "sender said: " + sender.strip() + "; testpmd RX-packets "
                                        + max(RX_PACKETS, testpmd.output()));
                        assertThat(testpmd.isAlive()).as("testpmd (rxonly) still running").isTrue();
                        long tapTx = tapCounter(ns, "tx_packets") - tapTxBefore;
                        Map<String, Object> stats = device.stats();
                        LOG.log(System.Logger.Level.INFO, "testpmd rxonly: RX-packets {0}; tap tx_packets +{1}; "
                                + "device {2}", max(RX_PACKETS, testpmd.output()), tapTx, stats);
                        assertThat(tapTx).as("tap tx_packets added").isGreaterThanOrEqualTo(FRAMES_TO_TESTPMD);
                        assertThat(VirtioNetd.counter(stats, "rx_packets")).as("device rx_packets")
                                .isGreaterThanOrEqualTo(FRAMES_TO_TESTPMD);
                        assertThat(VirtioNetd.counter(stats, "invalid_chains")).as("device invalid_chains")
                                .isZero();
                        // Every frame the device put in this testpmd's ring is counted by testpmd (the tap may
                        // carry the namespace's own frames too, so the device's count is the reference; it counts
                        // from its start, and the first testpmd's ring took frames too).
                        long rxBefore = VirtioNetd.counter(statsAfterTx, "rx_packets");
                        long[] seen = new long[2];
                        Poll.until("testpmd RX-packets equal to the device's rx_packets added (from " + rxBefore
                                + ")", Duration.ofSeconds(30), () -> {
                                    seen[0] = max(RX_PACKETS, testpmd.output());
                                    seen[1] = VirtioNetd.counter(device.stats(), "rx_packets") - rxBefore;
                                    return seen[0] == seen[1];
                                }, () -> "testpmd RX-packets " + seen[0] + ", device rx_packets added " + seen[1]);
                    });
                }
                assertThat(device.isAlive()).as("virtio-netd after two front-ends came and went").isTrue();
            }
        } finally {
            Cleanup.deleteTree(Path.of("/var/run/dpdk", prefix + "-tx"));
            Cleanup.deleteTree(Path.of("/var/run/dpdk", prefix + "-rx"));
        }
    }

    /**
     * dpdk-testpmd with one virtio_user port on the device's socket, no hugepages (see testbed notes), printing
     * port statistics every second; non-interactive, it forwards at once and stops on SIGTERM.
     */
    private static Spawned testpmd(NetNs ns, Path socket, String filePrefix, String mode, String vdevOptions) {
        List<String> argv = new ArrayList<>(List.of("dpdk-testpmd", "--lcores", "0@1,1@0", "--no-huge", "-m", "256",
                "--no-pci", "--file-prefix=" + filePrefix,
                "--vdev", "net_virtio_user0,path=" + socket + ",queues=1,mac=" + DRIVER_MAC + vdevOptions,
                "--", "--forward-mode=" + mode, "--nb-cores=1", "--total-num-mbufs=8192", "--stats-period", "1"));
        return Spawned.start(ns.dir().resolve("testpmd-" + mode + ".log"), argv);
    }

    /** The device's acked set has RING_PACKED and IN_ORDER exactly when virtio_user was asked for them. */
    private static void assertLayout(Map<String, Object> features, String options) {
        long acked = VirtioNetd.featureBits(features, "acked");
        assertThat(VirtioFeature.has(acked, VirtioFeature.RING_PACKED)).as("RING_PACKED acked with [%s] (%s)",
                options, features).isEqualTo(options.contains("packed_vq=1"));
        assertThat(VirtioFeature.has(acked, VirtioFeature.IN_ORDER)).as("IN_ORDER acked with [%s] (%s)",
                options, features).isEqualTo(options.contains("in_order=1"));
    }

    private static String testpmdState(Spawned testpmd) {
        return "testpmd " + (testpmd.isAlive() ? "running" : "exited") + ", output tail:\n"
                + Cmd.indent(Cmd.tail(testpmd.output(), 40));
    }

    /** The largest value of a testpmd counter printed so far (periodic statistics and the final totals). */
    static long max(Pattern counter, String output) {
        long max = -1;
        Matcher m = counter.matcher(output);
        while (m.find()) {
            max = Math.max(max, Long.parseLong(m.group(1)));
        }
        return max;
    }

    private static long tapCounter(NetNs ns, String counter) {
        return Long.parseLong(ns.exec("cat", "/sys/class/net/vnd0/statistics/" + counter).strip());
    }

    /** Writes {@code count} Ethernet frames (local experimental EtherType 0x88b5) to {@code dstMac} out of ifname. */
    private static String sendFrames(NetNs ns, String ifname, String dstMac, int count) {
        String script = String.join("\n",
                "import socket, sys",
                "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
                "s.bind((sys.argv[1], 0))",
                "src = s.getsockname()[4]",
                "dst = bytes.fromhex(sys.argv[2].replace(':', ''))",
                "n = int(sys.argv[3])",
                "for i in range(n):",
                "    s.send(dst + src + b'\\x88\\xb5' + i.to_bytes(4, 'big') + bytes(56))",
                "print('sent', n)");
        return ns.run(Duration.ofSeconds(60), "python3", "-c", script, ifname, dstMac, Integer.toString(count))
                .orFail().output();
    }
}
