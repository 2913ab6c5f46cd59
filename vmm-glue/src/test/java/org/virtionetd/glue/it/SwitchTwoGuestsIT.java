package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.virtionetd.glue.control.ControlServer;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testsupport.Cleanup;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * One virtio-netd process serving two devices on the in-process switch {@code switch:sw0}, two QEMU guests (TCG) on
 * their vhost-user sockets: they negotiate offloads, ping each other and run a short iperf3 between them, and
 * neither guest's kernel counts a TCP checksum error (the judge of a partial checksum or GSO metadata the switch
 * would have mishandled). The devices' counters show that frames larger than the MTU crossed the switch, i.e. GSO
 * frames went from one guest to the other in one piece.
 */
@Tag("integration")
class SwitchTwoGuestsIT {
    private static final Duration STEP = Duration.ofSeconds(120);
    private static final String IP_A = "10.77.0.2";
    private static final String IP_B = "10.77.0.3";

    @Test
    void twoGuestsOnOneSwitchPingAndRunIperfWithoutChecksumErrors() throws Exception {
        Path jar = GuestVm.projectRoot().resolve("vmm-glue/target/virtio-netd.jar");
        assertThat(jar).as("the jar (mvn -o -q -B package -DskipTests)").exists();
        Path dir = Files.createTempDirectory("vnd-switch-");
        Path sockA = dir.resolve("a.sock"), sockB = dir.resolve("b.sock");
        Path ctlA = dir.resolve("a.ctl"), ctlB = dir.resolve("b.ctl");
        List<String> argv = List.of("java", "-jar", jar.toString(),
                "--device", "socket=" + sockA + ",backend=switch:sw0,port=a,control=" + ctlA,
                "--device", "socket=" + sockB + ",backend=switch:sw0,port=b,control=" + ctlB);
        String csum = "echo VND-CSUM-BEFORE $(vnd-snmp Tcp InCsumErrors)";
        String csumAfter = "echo VND-CSUM-AFTER $(vnd-snmp Tcp InCsumErrors)";
        // B serves one iperf3 test and pings A; A pings B and retries its client until B's server listens.
        String cmdB = csum + "\n"
                + "iperf3 -s -1 -D\n"
                + "ping -c 3 -W 5 " + IP_A + "; echo VND-PING rc=$?\n"
                + "i=0; while ! netstat -tn | grep -q ':5201 .*ESTABLISHED' && [ $i -lt 1200 ]; do usleep 100000; i=$((i+1)); done\n"
                + "i=0; while pidof iperf3 >/dev/null && [ $i -lt 1200 ]; do usleep 100000; i=$((i+1)); done\n"
                + csumAfter;
        String cmdA = csum + "\n"
                + "i=0; until ping -c 1 -W 2 " + IP_B + " >/dev/null; do i=$((i+1)); [ $i -ge 60 ] && break; done\n"
                + "ping -c 3 -W 5 " + IP_B + "; echo VND-PING rc=$?\n"
                + "i=0; until iperf3 -c " + IP_B + " -t 4 -f m > /tmp/ip.txt 2>&1; do i=$((i+1)); [ $i -ge 30 ] && break; sleep 2; done\n"
                + "cat /tmp/ip.txt; echo VND-IPERF rc=$(grep -c receiver /tmp/ip.txt)\n"
                + csumAfter;
        try (Spawned daemon = Spawned.start(dir.resolve("virtio-netd.log"), argv)) {
            Poll.until("both vhost-user sockets", Duration.ofSeconds(60),
                    () -> Files.exists(sockA) && Files.exists(sockB) || !daemon.isAlive(),
                    () -> Cmd.tail(daemon.output(), 20));
            assertThat(daemon.isAlive()).as("virtio-netd running; output:\n%s", daemon.output()).isTrue();
            try (GuestVm b = GuestVm.builder().vhostUser(sockB).mac("52:54:00:00:00:0b").ip(IP_B + "/24")
                    .memoryMiB(448).command(cmdB).start();
                 GuestVm a = GuestVm.builder().vhostUser(sockA).mac("52:54:00:00:00:0a").ip(IP_A + "/24")
                         .memoryMiB(448).command(cmdA).start()) {
                for (GuestVm g : List.of(a, b)) {
                    long bits = GuestVm.featureBits(g.awaitFeatures(GuestVm.BOOT_TIMEOUT));
                    assertThat(VirtioNetFeature.names(bits)).as("offloads negotiated by %s", g)
                            .contains("VIRTIO_NET_F_CSUM", "VIRTIO_NET_F_GUEST_CSUM", "VIRTIO_NET_F_HOST_TSO4",
                                    "VIRTIO_NET_F_GUEST_TSO4", "VIRTIO_NET_F_MRG_RXBUF");
                }
                assertThat(a.awaitLine("VND-PING rc=", STEP)).as("A pings B; serial:\n%s", a.output())
                        .contains("VND-PING rc=0");
                assertThat(b.awaitLine("VND-PING rc=", STEP)).as("B pings A; serial:\n%s", b.output())
                        .contains("VND-PING rc=0");
                assertThat(a.awaitLine("VND-IPERF rc=", Duration.ofSeconds(180)))
                        .as("iperf3 A -> B finished with a receiver line; A serial:\n%s\nB serial:\n%s",
                                a.output(), b.output()).contains("VND-IPERF rc=1");
                Matcher m = Pattern.compile("([0-9.]+) Mbits/sec.*receiver").matcher(a.output());
                assertThat(m.find()).as("iperf3 receiver line in:\n%s", a.output()).isTrue();
                double mbps = Double.parseDouble(m.group(1));
                assertThat(mbps).as("guest-to-guest TCP Mbit/s").isGreaterThan(10);
                for (GuestVm g : List.of(a, b)) {
                    long before = Long.parseLong(g.awaitMatch("VND-CSUM-BEFORE (\\d+)", STEP).group(1));
                    long after = Long.parseLong(g.awaitMatch("VND-CSUM-AFTER (\\d+)", STEP).group(1));
                    assertThat(after - before).as("TcpInCsumErrors added in %s; serial:\n%s", g, g.output()).isZero();
                }
                // The receiver's device got frames averaging more than an MTU: GSO frames crossed the switch whole.
                String stats = ControlServer.query(ctlB, "stats json");
                long rxPackets = jsonLong(stats, "rx_packets"), rxBytes = jsonLong(stats, "rx_bytes");
                assertThat(rxPackets).as("B's device stats: %s", stats).isPositive();
                assertThat(rxBytes / rxPackets).as("mean frame B received (%d Mbit/s); stats %s", (long) mbps, stats)
                        .isGreaterThan(1514);
                String statsA = ControlServer.query(ctlA, "stats json");
                System.out.println("SwitchTwoGuestsIT: guest-to-guest " + mbps + " Mbit/s; B received " + rxPackets
                        + " frames, " + rxBytes + " bytes (mean " + rxBytes / rxPackets + "); A's sends refused by the switch "
                        + jsonLong(statsA, "tx_dropped_backend") + ", B waited for buffers "
                        + jsonLong(stats, "rx_waited_for_buffers") + " times");
                assertThat(jsonLong(statsA, "rx_bad_offload") + jsonLong(stats, "rx_bad_offload"))
                        .as("frames with offloads a driver did not accept: A %s B %s", statsA, stats).isZero();
                assertThat(a.awaitDone(STEP)).isZero();
                assertThat(b.awaitDone(STEP)).isZero();
            }
            assertThat(daemon.isAlive()).as("virtio-netd survived both guests; output:\n%s", daemon.output()).isTrue();
        } finally {
            Cleanup.deleteTree(dir);
        }
    }

    private static long jsonLong(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\":(\\d+)").matcher(json);
        if (!m.find()) {
            throw new AssertionError("no \"" + key + "\" in " + json);
        }
        return Long.parseLong(m.group(1));
    }
}
