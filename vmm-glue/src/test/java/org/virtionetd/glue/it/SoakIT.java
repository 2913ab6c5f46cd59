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
 * 60 seconds of TCP both ways at once ({@code iperf3 --bidir}) through one guest, with the device sampled every
 * 5 s: its resident memory stays flat after warm-up (less than 64 MiB of growth), its descriptor count does not
 * move, and at the end the counters of the three parties add up exactly, both ways:
 * <ul>
 * <li>guest eth0 TX packets = device tx_packets + every TX drop the device counts;</li>
 * <li>device tx_packets = tap rx_packets + tap rx_dropped (what the device wrote, the kernel took);</li>
 * <li>tap tx_packets (frames the device read) = device rx_packets + every RX drop the device counts;</li>
 * <li>device rx_packets = guest eth0 RX packets + the guest driver's RX drops and errors.</li>
 * </ul>
 * The guest prints its counters twice, 2 s apart, after the transfer: equal values show nothing was in flight.
 * IPv6 is off in the namespace so the host side sends nothing unasked after the transfer.
 */
@Tag("integration")
class SoakIT {
    private static final System.Logger LOG = System.getLogger(SoakIT.class.getName());
    private static final int SECONDS = 60;
    private static final Duration SAMPLE = Duration.ofSeconds(5);
    private static final String GUEST = String.join("\n",
            "iperf3 -c " + GuestTraffic.HOST_IP + " -t " + SECONDS + " --bidir -f m > /tmp/iperf.txt 2>&1; "
                    + "echo VND-IPERF rc=$?",
            "grep -E 'sender|receiver' /tmp/iperf.txt | tail -n 4",
            "usleep 2000000; echo VND-NETDEV1 $(grep eth0: /proc/net/dev)",
            "usleep 2000000; echo VND-NETDEV2 $(grep eth0: /proc/net/dev)");
    private static final List<String> TX_DROPS = List.of("tx_dropped_backend", "tx_bad_header", "tx_bad_chain");
    private static final List<String> RX_DROPS = List.of("rx_filtered", "rx_dropped_too_big", "rx_dropped_runt",
            "rx_bad_offload");

    private record Sample(long seconds, long rssKiB, int fds, long txPackets, long rxPackets) {
    }

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void sixtySecondsBothWaysKeepMemoryFdsFlatAndCountersAddUp() {
        try (NetNs ns = NetNs.create()) {
            ns.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
            ns.exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1");
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            Spawned server = ns.spawn("iperf3-server", "iperf3", "-s", "-1");
            Poll.until("iperf3 server listening", Duration.ofSeconds(30),
                    () -> ns.run("ss", "-ltn", "sport = :5201").output().contains(":5201"));
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0");
                 GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                         .command(GUEST).start()) {
                long pid = device.process().pid();
                List<Sample> samples = new ArrayList<>();
                Failures.withContext(() -> samples + "\n" + device.describe(vm), () -> {
                    vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                    long t0 = System.nanoTime();
                    long deadline = t0 + Duration.ofSeconds(SECONDS + 120).toNanos();
                    while (!vm.output().contains("VND-IPERF rc=")) {
                        assertThat(System.nanoTime() - deadline).as("iperf3 still running %d s after it started",
                                SECONDS + 120).isNegative();
                        Map<String, Object> s = device.stats();
                        samples.add(new Sample((System.nanoTime() - t0) / 1_000_000_000L, ProcStat.rssKiB(pid),
                                ProcStat.fdCount(pid), VirtioNetd.counter(s, "tx_packets"),
                                VirtioNetd.counter(s, "rx_packets")));
                        Thread.sleep(SAMPLE.toMillis()); // the sampling period of the soak, not a wait for a state
                    }
                    assertThat(vm.awaitLine("VND-IPERF rc=", Duration.ofSeconds(10))).as("guest iperf3 --bidir")
                            .contains("rc=0");
                    long[] g1 = netdev(vm.awaitLine("VND-NETDEV1", Duration.ofSeconds(60)));
                    long[] g2 = netdev(vm.awaitLine("VND-NETDEV2", Duration.ofSeconds(60)));
                    Map<String, Object> stats = device.stats();
                    Map<String, Long> tap = tapStats(ns);
                    LOG.log(System.Logger.Level.INFO, "samples {0}\ndevice {1}\ntap {2}\nguest rx/tx packets {3}/{4}",
                            samples, stats, tap, g2[1], g2[9]);

                    // ---- memory and descriptors
                    List<Sample> warm = samples.stream().filter(s -> s.seconds() >= 10).toList();
                    assertThat(warm).as("samples after 10 s of traffic").hasSizeGreaterThanOrEqualTo(8);
                    Sample first = warm.get(0);
                    long maxRss = warm.stream().mapToLong(Sample::rssKiB).max().orElseThrow();
                    assertThat(maxRss - first.rssKiB()).as("device RSS growth after warm-up, KiB (samples %s)",
                            samples).isLessThan(64 * 1024);
                    assertThat(warm.stream().mapToInt(Sample::fds).distinct().count())
                            .as("distinct descriptor counts after warm-up (samples %s)", samples).isEqualTo(1);
                    assertThat(warm.get(warm.size() - 1).txPackets()).as("traffic kept flowing to the end")
                            .isGreaterThan(warm.get(warm.size() / 2).txPackets());

                    // ---- counters add up
                    assertThat(g2).as("guest counters 2 s apart after the transfer (nothing in flight)")
                            .containsExactly(g1);
                    long devTx = VirtioNetd.counter(stats, "tx_packets");
                    long devRx = VirtioNetd.counter(stats, "rx_packets");
                    long txDrops = sum(stats, TX_DROPS);
                    long rxDrops = sum(stats, RX_DROPS);
                    assertThat(VirtioNetd.counter(stats, "tx_bytes")).as("bytes guest -> host").isGreaterThan(50L << 20);
                    assertThat(VirtioNetd.counter(stats, "rx_bytes")).as("bytes host -> guest").isGreaterThan(50L << 20);
                    assertThat(g2[9]).as("guest TX packets = device tx_packets %d + TX drops %d", devTx, txDrops)
                            .isEqualTo(devTx + txDrops);
                    assertThat(tap.get("rx_packets") + tap.get("rx_dropped"))
                            .as("tap rx_packets + rx_dropped = device tx_packets").isEqualTo(devTx);
                    assertThat(tap.get("tx_packets")).as("tap tx_packets (read by the device) = device rx_packets "
                            + "%d + RX drops %d", devRx, rxDrops).isEqualTo(devRx + rxDrops);
                    assertThat(g2[1] + g2[2] + g2[3]).as("guest RX packets + errs + drops = device rx_packets")
                            .isEqualTo(devRx);
                    assertThat(VirtioNetd.counter(stats, "invalid_chains")).isZero();
                    assertThat(vm.awaitDone(Duration.ofSeconds(60))).as("guest command exit code").isZero();
                });
            } finally {
                server.close();
            }
        }
    }

    /** The 16 numbers of a /proc/net/dev line (rx bytes, packets, errs, drop, ..., tx bytes [8], packets [9]...). */
    static long[] netdev(String line) {
        String rest = line.substring(line.indexOf("eth0:") + 5).strip();
        String[] f = rest.split("\\s+");
        long[] v = new long[16];
        for (int i = 0; i < 16; i++) {
            v[i] = Long.parseLong(f[i]);
        }
        return v;
    }

    private static long sum(Map<String, Object> stats, List<String> names) {
        long s = 0;
        for (String n : names) {
            s += VirtioNetd.counter(stats, n);
        }
        return s;
    }

    private static Map<String, Long> tapStats(NetNs ns) {
        String[] names = {"rx_packets", "rx_dropped", "tx_packets", "tx_dropped"};
        String[] v = ns.exec("sh", "-c", "cd /sys/class/net/vnd0/statistics && echo $(cat rx_packets rx_dropped "
                + "tx_packets tx_dropped)").strip().split("\\s+");
        Map<String, Long> m = new java.util.LinkedHashMap<>();
        for (int i = 0; i < names.length; i++) {
            m.put(names[i], Long.parseLong(v[i]));
        }
        return m;
    }
}
