package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.Cleanup;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A driver that stops refilling its RX ring while the host floods the tap: DPDK's virtio_user (interactive
 * testpmd) starts its port, which posts one ring of buffers, but does not forward, so nothing is ever taken off
 * the ring again. The namespace floods frames at the tap for several seconds. virtio-netd fills the ring, then
 * waits for the driver's kick with the tap fd out of its epoll set: its CPU stays low, its memory flat, it holds
 * no more than a ring's worth of frames, and the excess is dropped (and counted) by the kernel's tap queue, not
 * buffered in the device. When testpmd starts forwarding, frames flow again.
 */
@Tag("integration")
class RxBackpressureIT {
    private static final System.Logger LOG = System.getLogger(RxBackpressureIT.class.getName());
    private static final String DRIVER_MAC = "52:54:00:12:34:57";
    private static final Pattern RX_PACKETS = Pattern.compile("RX-packets:\\s+(\\d+)");
    private static final int FLOOD_SECONDS = 6;

    /** testpmd in interactive mode: commands go to its stdin, its output to a log file. */
    private static final class Testpmd implements AutoCloseable {
        final Spawned spawned;
        final Process process;

        Testpmd(NetNs ns, Path socket, String prefix) {
            // stdbuf: testpmd prints with stdio, which buffers fully into a file; answers must show at once.
            spawned = ns.spawnWithInput("testpmd", "stdbuf", "-oL", "-eL", "dpdk-testpmd", "--lcores", "0@1,1@0",
                    "--no-huge", "-m", "256", "--no-pci", "--file-prefix=" + prefix,
                    "--vdev", "net_virtio_user0,path=" + socket + ",queues=1,queue_size=256,mac=" + DRIVER_MAC,
                    "--", "-i", "--forward-mode=rxonly", "--nb-cores=1", "--total-num-mbufs=8192");
            process = spawned.process();
        }

        void command(String line) {
            spawned.send(line);
        }

        String output() {
            return spawned.output();
        }

        /** The RX-packets of port 0 now ({@code show port stats 0}). */
        long rxPackets() {
            int before = (int) output().lines().count();
            command("show port stats 0");
            long[] got = {-1};
            Poll.until("testpmd port statistics", Duration.ofSeconds(30), () -> {
                List<String> lines = output().lines().skip(before).toList();
                for (String l : lines) {
                    var m = RX_PACKETS.matcher(l);
                    if (m.find()) {
                        got[0] = Long.parseLong(m.group(1));
                        return true;
                    }
                }
                return !process.isAlive();
            }, () -> Cmd.tail(output(), 20));
            if (got[0] < 0) {
                throw new AssertionError("testpmd exited:\n" + Cmd.indent(Cmd.tail(output(), 30)));
            }
            return got[0];
        }

        /** Asks testpmd to quit, then ends it (and its children) if it is still running after 10 s. */
        @Override
        public void close() {
            if (process.isAlive()) {
                try {
                    command("quit");
                    process.waitFor(10, TimeUnit.SECONDS);
                } catch (AssertionError e) {
                    // fall through to the signal
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            spawned.close();
        }
    }

    @Test
    @Timeout(value = 8, unit = TimeUnit.MINUTES)
    void stalledRxRingMakesTheTapDropWhileTheDeviceIdles() {
        String prefix = "vnd-it-bp-" + ProcessHandle.current().pid();
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", GuestTraffic.HOST_IP + "/24");
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0");
                 Testpmd testpmd = new Testpmd(ns, device.socket(), prefix)) {
                long pid = device.process().pid();
                Failures.withContext(() -> "testpmd output tail:\n" + Cmd.indent(Cmd.tail(testpmd.output(), 40))
                        + "\n" + device.describe(), () -> {
                    // The port is started (its RX ring posted) once testpmd shows its prompt; no 'start' yet.
                    Poll.until("testpmd prompt", Duration.ofSeconds(90),
                            () -> testpmd.output().contains("testpmd>") || !testpmd.process.isAlive(),
                            () -> Cmd.tail(testpmd.output(), 20));
                    assertThat(testpmd.process.isAlive()).as("testpmd running").isTrue();
                    GuestFeaturesIT.awaitAcked(device);
                    long rssBefore = ProcStat.rssKiB(pid);
                    Map<String, Long> tapBefore = tapStats(ns);

                    // ---- flood while nobody takes frames off the ring
                    Spawned flood = ns.spawn("flood", "python3", "-c", FLOOD, "vnd0", DRIVER_MAC,
                            Integer.toString(FLOOD_SECONDS));
                    Poll.until("the flood to start", Duration.ofSeconds(30),
                            () -> tapStats(ns).get("tx_packets") > tapBefore.get("tx_packets") || !flood.isAlive());
                    double cpu = ProcStat.cpuShare(pid, Duration.ofSeconds(FLOOD_SECONDS - 2));
                    int exit = flood.awaitExit(Duration.ofSeconds(60));
                    String sent = flood.output().strip();
                    Map<String, Object> stalled = device.stats();
                    Map<String, Long> tapAfter = tapStats(ns);
                    long rssAfter = ProcStat.rssKiB(pid);
                    String qdisc = ns.exec("tc", "-s", "qdisc", "show", "dev", "vnd0");
                    LOG.log(System.Logger.Level.INFO, "flood: {0} (exit {1}); device CPU {2}; RSS {3} -> {4} KiB; "
                            + "tap {5} -> {6}; qdisc {7}; device {8}", sent, exit, cpu, rssBefore, rssAfter,
                            tapBefore, tapAfter, qdisc, stalled);
                    assertThat(exit).as("flood exit code: %s", sent).isZero();
                    long floodFrames = Long.parseLong(sent.replaceAll(".*sent (\\d+).*", "$1"));
                    long rx = VirtioNetd.counter(stalled, "rx_packets");
                    assertThat(cpu).as("virtio-netd CPU time / wall time while the ring is full and the tap floods")
                            .isLessThan(0.2);
                    assertThat(rx).as("frames the device put in the stalled ring (256 buffers)").isBetween(1L, 256L);
                    assertThat(VirtioNetd.counter(stalled, "rx_waited_for_buffers"))
                            .as("times the device waited for buffers").isPositive();
                    long kernelDrops = tapAfter.get("tx_dropped") - tapBefore.get("tx_dropped") + qdiscDrops(qdisc);
                    assertThat(kernelDrops).as("frames the kernel dropped at the tap (tap tx_dropped + qdisc drops)"
                            + " of %s flooded", floodFrames).isGreaterThan(floodFrames / 2);
                    assertThat(rssAfter - rssBefore).as("device RSS growth during the flood, KiB")
                            .isLessThan(32 * 1024);

                    // ---- the driver starts taking frames: they flow again
                    testpmd.command("start");
                    long got0 = testpmd.rxPackets();
                    ns.run(Duration.ofSeconds(60), "python3", "-c", FLOOD, "vnd0", DRIVER_MAC, "0", "200").orFail();
                    Poll.until("200 more frames in testpmd after 'start'", Duration.ofSeconds(60),
                            () -> testpmd.rxPackets() - got0 >= 200, () -> "testpmd RX-packets " + testpmd.rxPackets()
                                    + ", device " + device.stats());
                    assertThat(VirtioNetd.counter(device.stats(), "rx_packets")).as("device rx_packets after start")
                            .isGreaterThanOrEqualTo(rx + 200);
                    testpmd.command("stop");
                });
            }
        } finally {
            Cleanup.deleteTree(Path.of("/var/run/dpdk", prefix));
        }
    }

    /**
     * Sends 60-byte frames of EtherType 0x88b5 to argv[2] out of argv[1]: as fast as possible for argv[3] seconds,
     * or exactly argv[4] frames; prints "sent N". Send errors (a full queue: ENOBUFS) are counted, not fatal.
     */
    private static final String FLOOD = String.join("\n",
            "import socket, sys, time",
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
            "s.bind((sys.argv[1], 0))",
            "f = bytes.fromhex(sys.argv[2].replace(':', '')) + s.getsockname()[4] + b'\\x88\\xb5' + bytes(46)",
            "secs = float(sys.argv[3]); count = int(sys.argv[4]) if len(sys.argv) > 4 else 0",
            "end = time.time() + secs; n = 0; err = 0",
            "while (count and n < count) or (not count and time.time() < end):",
            "    try:",
            "        s.send(f); n += 1",
            "    except OSError:",
            "        err += 1",
            "        if count: time.sleep(0.001)",
            "print('sent', n, 'errors', err)");

    private static Map<String, Long> tapStats(NetNs ns) {
        String out = ns.exec("sh", "-c", "cd /sys/class/net/vnd0/statistics && echo $(cat tx_packets tx_dropped)");
        String[] v = out.strip().split("\\s+");
        return Map.of("tx_packets", Long.parseLong(v[0]), "tx_dropped", Long.parseLong(v[1]));
    }

    /** The "dropped N" of the root qdisc's statistics (0 without a qdisc, e.g. noqueue). */
    static long qdiscDrops(String tcOutput) {
        var m = Pattern.compile("dropped (\\d+)").matcher(tcOutput);
        return m.find() ? Long.parseLong(m.group(1)) : 0;
    }
}
