package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Multiqueue with a real guest: {@code virtio-netd --queues 2} on a multi-queue tap (one IFF_MULTI_QUEUE fd per pair),
 * QEMU {@code -netdev vhost-user,queues=2} and {@code virtio-net-pci,mq=on,vectors=0} with {@code -smp 2}. QEMU
 * negotiates VHOST_USER_PROTOCOL_F_MQ and serves the control queue (MQ_VQ_PAIRS_SET) itself; it enables pair 1's
 * rings with SET_VRING_ENABLE once the guest asks for 2 combined channels ({@code ethtool -L eth0 combined 2}).
 *
 * <p>Traffic: four TCP streams each way, as two iperf3 processes of two streams each, pinned to vCPU 0 and vCPU 1
 * ({@code -A}); the guest's driver picks the TX queue of the vCPU that sends (XPS), the tap steers each flow's return
 * traffic to the queue it came from. Checked: the guest runs with 2 channels, both queue pairs of the device carried
 * packets in both directions ({@code virtio-netd stats --json}, per pair), no TCP checksum error in the guest or the
 * host namespace, the device counted no bad header or chain.
 */
@Tag("integration")
class MultiQueueIT {
    private static final int SECONDS = 5;
    private static final Duration STEP = Duration.ofSeconds(180);

    /** The guest's script: 2 channels, ping, two pinned clients to the host, then two pinned servers for it. */
    static String guestCommand(int pairs, int seconds) {
        String h = GuestTraffic.HOST_IP;
        String client = "iperf3 -c " + h + " -t " + seconds + " -P 2 -f m --connect-timeout 10000";
        return "echo VND-CSUM-BEFORE $(vnd-snmp Tcp InCsumErrors)\n"
                + "ethtool -L eth0 combined " + pairs + "; echo VND-ETHTOOL rc=$?\n"
                + "echo VND-CHANNELS $(ethtool -l eth0 | awk '/Combined/{v=$2} END{print v}')\n"
                + "ping -c 3 -W 5 " + h + "; echo VND-PING rc=$?\n"
                + client + " -p 5201 -A 0 > /tmp/c0 2>&1 & p=$!; " + client + " -p 5202 -A 1 > /tmp/c1 2>&1; "
                + "r1=$?; wait $p; echo VND-UP rc=$?$r1; grep -h 'SUM.*receiver' /tmp/c0 /tmp/c1\n"
                + "iperf3 -s -1 -D -p 5201 -A 0; iperf3 -s -1 -D -p 5202 -A 1\n"
                + "i=0; while [ $(netstat -ltn | grep -c ':520[12] ') -lt 2 ] && [ $i -lt 100 ]; do usleep 100000; "
                + "i=$((i+1)); done; echo VND-IPERF-SERVER-READY\n"
                + "i=0; while pidof iperf3 >/dev/null && [ $i -lt " + (seconds + 90) * 10 + " ]; do usleep 100000; "
                + "i=$((i+1)); done\n"
                + "echo VND-QSTATS $(ethtool -S eth0 | awk '/_queue_[0-9]+_packets/{printf \"%s%s \", $1, $2}')\n"
                + "echo VND-CSUM-AFTER $(vnd-snmp Tcp InCsumErrors)\n";
    }

    /** Two one-shot iperf3 servers in the namespace (ports 5201, 5202), listening on return. */
    static List<Spawned> hostServers(NetNs ns, String tag) {
        List<Spawned> s = new ArrayList<>();
        for (int port : new int[] {5201, 5202}) {
            s.add(ns.spawn("iperf3-server-" + tag + "-" + port, "iperf3", "-s", "-1", "-J", "-p",
                    Integer.toString(port)));
        }
        Poll.until("two iperf3 servers listening in " + ns.name(), Duration.ofSeconds(30),
                () -> ns.run("ss", "-ltn").output().contains(":5201") && ns.run("ss", "-ltn").output().contains(":5202")
                        || s.stream().anyMatch(p -> !p.isAlive()), () -> s.get(0).output() + s.get(1).output());
        return s;
    }

    /** Sum of end.sum_received.bits_per_second of finished iperf3 -J processes. */
    static double received(List<Spawned> iperfs, String what) {
        double sum = 0;
        for (Spawned p : iperfs) {
            int exit = p.awaitExit(Duration.ofSeconds(120));
            sum += GuestTraffic.receivedBps(p.output(), what + " " + p.command() + " (exit " + exit + ")");
        }
        return sum;
    }

    /** Host -> guest: two clients at once, to the guest's two servers. */
    static double hostToGuest(NetNs ns, int seconds, String tag) {
        List<Spawned> c = new ArrayList<>();
        for (int port : new int[] {5201, 5202}) {
            c.add(ns.spawn("iperf3-client-" + tag + "-" + port, "iperf3", "-c", GuestTraffic.GUEST_IP, "-p",
                    Integer.toString(port), "-t", Integer.toString(seconds), "-P", "2", "-J", "--connect-timeout",
                    "10000"));
        }
        return received(c, "host -> guest iperf3 client");
    }

    @Test
    @Timeout(value = 15, unit = TimeUnit.MINUTES)
    void twoQueuePairsBothCarryTrafficWithoutChecksumErrors() {
        run(2);
    }

    /**
     * The guest uses one of the two pairs ({@code ethtool -L eth0 combined 1}): QEMU disables pair 1's rings, the
     * device detaches its tap queue, and every flow, host -> guest included, still goes through pair 0 (a queue left
     * attached would swallow the flows the kernel steers to it).
     */
    @Test
    @Timeout(value = 15, unit = TimeUnit.MINUTES)
    void aGuestUsingOnePairOfTwoLosesNoFlow() {
        run(1);
    }

    private void run(int used) {
        try (NetNs ns = NetNs.create()) {
            ns.exec("ip", "tuntap", "add", "dev", "vnd0", "mode", "tap", "multi_queue");
            ns.addAddress("vnd0", GuestTraffic.HOST_IP + "/24");
            ns.up("vnd0");
            long hostCsumBefore = ns.snmp("Tcp", "InCsumErrors");
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0", "--queues", "2")) {
                List<Spawned> servers = hostServers(ns, "mq");
                try (GuestVm vm = GuestVm.builder().vhostUser(device.socket()).queues(2).cpus(2)
                        .ip(GuestTraffic.GUEST_IP + "/24").command(guestCommand(used, SECONDS)).start()) {
                    Failures.withContext(() -> device.describe(vm), () -> {
                        long features = GuestVm.featureBits(vm.awaitFeatures(GuestVm.BOOT_TIMEOUT));
                        assertThat(features & (1L << 22)).as("VIRTIO_NET_F_MQ negotiated by the guest").isNotZero();
                        assertThat(vm.awaitLine("VND-ETHTOOL rc=", STEP)).as("ethtool -L eth0 combined %d", used)
                                .contains("rc=0");
                        assertThat(vm.awaitLine("VND-CHANNELS", STEP)).contains("VND-CHANNELS " + used);
                        assertThat(vm.awaitLine("VND-PING rc=", STEP)).contains("rc=0");
                        assertThat(ns.ping(GuestTraffic.GUEST_IP, 3).ok()).as("host pings the guest").isTrue();
                        vm.awaitLine("VND-UP rc=", STEP);
                        double up = received(servers, "host iperf3 server (guest -> host)");
                        vm.awaitLine("VND-IPERF-SERVER-READY", STEP);
                        Map<String, Object> statsBefore = device.stats();
                        double down = hostToGuest(ns, SECONDS, "mq");
                        long guestBefore = Long.parseLong(vm.awaitMatch("VND-CSUM-BEFORE (\\d+)", STEP).group(1));
                        long guestAfter = Long.parseLong(vm.awaitMatch("VND-CSUM-AFTER (\\d+)", STEP).group(1));
                        String qstats = vm.awaitLine("VND-QSTATS", STEP);
                        Map<String, Object> stats = device.stats();
                        List<?> pairs = (List<?>) stats.get("queue_pairs");
                        System.out.printf("MultiQueueIT (%d of 2 pairs used): guest -> host %.0f Mbit/s, host -> "
                                + "guest %.0f Mbit/s; guest %s; device pairs %s%n", used, up / 1e6, down / 1e6,
                                qstats.strip(), pairs);
                        assertThat(up).as("TCP guest -> host, bit/s").isPositive();
                        assertThat(down).as("TCP host -> guest, bit/s").isPositive();
                        assertThat(guestAfter - guestBefore).as("TcpInCsumErrors added in the guest").isZero();
                        assertThat(ns.snmp("Tcp", "InCsumErrors") - hostCsumBefore)
                                .as("TcpInCsumErrors added in the host namespace").isZero();
                        assertThat(pairs).as("queue pairs in the stats").hasSize(2);
                        for (int i = 0; i < used; i++) {
                            Map<?, ?> p = (Map<?, ?>) pairs.get(i);
                            assertThat((Long) p.get("tx_packets")).as("pair %d tx_packets (%s)", i, p).isPositive();
                            assertThat((Long) p.get("rx_packets")).as("pair %d rx_packets (%s)", i, p).isPositive();
                        }
                        if (used == 1) {
                            // Pair 1 is off: the host -> guest run put nothing on it.
                            Map<?, ?> before = (Map<?, ?>) ((List<?>) statsBefore.get("queue_pairs")).get(1);
                            Map<?, ?> after = (Map<?, ?>) pairs.get(1);
                            assertThat((Long) after.get("rx_packets")).as("pair 1 rx_packets during host -> guest")
                                    .isEqualTo((Long) before.get("rx_packets"));
                        }
                        assertThat(VirtioNetd.counter(stats, "tx_bad_header")).isZero();
                        assertThat(VirtioNetd.counter(stats, "invalid_chains")).isZero();
                        assertThat(VirtioNetd.counter(stats, "rx_bad_offload")).isZero();
                        assertThat(vm.awaitDone(STEP)).as("guest command exit code").isZero();
                    });
                }
                assertThat(device.isAlive()).as("virtio-netd survived; %s", device.logTail(20)).isTrue();
            }
        }
    }
}
