package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.NetNs;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A real guest on virtio-netd (vhost-user, tap in a namespace) passes traffic: ping both ways, iperf3 TCP each way
 * for a few seconds with the default offloads (the guest's TSO/CSUM frames go to the tap with their vnet header),
 * no TCP checksum errors on either side (the kernels are the judges), a measurable throughput, and the device's
 * counters agree: packets both ways, no bad headers, no invalid chains.
 */
@Tag("integration")
class GuestTrafficIT {
    private static final System.Logger LOG = System.getLogger(GuestTrafficIT.class.getName());
    private static final int IPERF_SECONDS = 4;
    private static final String METRICS = "127.0.0.1:9464";
    private static final String METRICS_URL = "http://" + METRICS + "/metrics";

    @Test
    @Timeout(value = 12, unit = TimeUnit.MINUTES)
    void pingBothWaysAndTcpBothWaysWithoutChecksumErrors() {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            GuestTraffic traffic = new GuestTraffic(ns, IPERF_SECONDS);
            // The device also serves its counters to Prometheus (the namespace's own loopback).
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0", "--metrics-listen", METRICS)) {
                traffic.prepareHost();
                try (GuestVm vm = GuestVm.builder().vhostUser(device.socket()).ip(GuestTraffic.GUEST_IP + "/24")
                        .command(traffic.guestCommand()).start()) {
                    Failures.withContext(() -> device.describe(vm), () -> {
                        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
                        PrometheusScrape.requireParser();
                        PrometheusScrape before = scrape(ns);
                        GuestTraffic.Result r = traffic.run(vm);
                        Map<String, Object> stats = device.stats();
                        PrometheusScrape after = scrape(ns);
                        for (String c : List.of("virtio_netd_rx_packets", "virtio_netd_tx_packets",
                                "virtio_netd_rx_bytes", "virtio_netd_tx_bytes")) {
                            assertThat(after.family(c).type()).as("TYPE of %s", c).isEqualTo("counter");
                            assertThat(after.sum(c + "_total", "queue_pair", "0"))
                                    .as("%s_total scraped from %s after the traffic, against before it (%s)", c,
                                            METRICS_URL, after.output())
                                    .isGreaterThan(before.sum(c + "_total", "queue_pair", "0"));
                        }
                        assertThat(after.sum("virtio_netd_rx_packets_total", "queue_pair", "0"))
                                .as("scraped rx_packets against the stats command's (%s)", stats)
                                .isGreaterThanOrEqualTo(VirtioNetd.counter(stats, "rx_packets"));
                        LOG.log(System.Logger.Level.INFO, "guest -> host {0} Mbit/s, host -> guest {1} Mbit/s, "
                                        + "TcpInCsumErrors added: guest {2}, host {3}; stats {4}",
                                r.guestToHostBps() / 1e6, r.hostToGuestBps() / 1e6, r.guestCsumErrors(),
                                r.hostCsumErrors(), stats);
                        assertTraffic(r, stats);
                        // Default offloads: the guest's TCP stack hands the device TSO frames, so the average
                        // frame it sent to the tap is far above the 1514 bytes of an MTU-sized one.
                        assertThat(VirtioNetd.counter(stats, "tx_bytes") / VirtioNetd.counter(stats, "tx_packets"))
                                .as("average guest -> tap frame, bytes (TSO in use; %s)", stats)
                                .isGreaterThan(1514);
                        assertThat(vm.awaitDone(Duration.ofSeconds(120))).as("guest command exit code").isZero();
                    });
                }
            }
        }
    }

    /** The device's /metrics, parsed; the listener binds just after the sockets appear, so the first try may wait. */
    private static PrometheusScrape scrape(NetNs ns) {
        PrometheusScrape[] got = new PrometheusScrape[1];
        String[] last = {"no scrape yet"};
        Poll.until("a scrape of " + METRICS_URL, Duration.ofSeconds(30), () -> {
            try {
                got[0] = PrometheusScrape.scrape(ns, METRICS_URL);
                return true;
            } catch (AssertionError | RuntimeException e) {
                last[0] = e.getMessage();
                return false;
            }
        }, () -> "the last scrape: " + last[0]);
        return got[0];
    }

    /** The checks every traffic test shares: pings, throughput (when measured), checksum errors, counters. */
    static void assertTraffic(GuestTraffic.Result r, Map<String, Object> stats) {
        assertThat(r.guestPing()).as("guest -> host ping").contains("VND-PING rc=0");
        assertThat(r.hostPing()).as("host -> guest ping").startsWith("exit 0");
        if (r.guestToHostBps() >= 0) {
            assertThat(r.guestToHostBps()).as("TCP guest -> host, bit/s").isPositive();
            assertThat(r.hostToGuestBps()).as("TCP host -> guest, bit/s").isPositive();
        }
        assertThat(r.guestCsumErrors()).as("TcpInCsumErrors added in the guest").isZero();
        assertThat(r.hostCsumErrors()).as("TcpInCsumErrors added in the host namespace").isZero();
        assertThat(VirtioNetd.counter(stats, "tx_packets")).as("device tx_packets (%s)", stats).isPositive();
        assertThat(VirtioNetd.counter(stats, "rx_packets")).as("device rx_packets (%s)", stats).isPositive();
        assertThat(VirtioNetd.counter(stats, "tx_bad_header")).as("device tx_bad_header (%s)", stats).isZero();
        assertThat(VirtioNetd.counter(stats, "invalid_chains")).as("device invalid_chains (%s)", stats).isZero();
    }
}
