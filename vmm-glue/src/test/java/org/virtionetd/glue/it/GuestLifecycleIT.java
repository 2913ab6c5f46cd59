package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;

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
 * One guest through the events of a VM's life, with data checked end to end after each: 20 reboots (the guest's
 * {@code reboot -f} and QMP {@code system_reset}, taking turns), 20 reloads of its virtio_net driver, offloads
 * switched off and on under traffic ({@code ethtool -K}), 10 hot-unplugs and plugs of a NIC ({@code device_del}
 * under traffic, {@code device_add} on the same vhost-user netdev, packed and split ring taking turns), and at last
 * the device killed and started again while the guest reboots. The guest has two NICs, each on its own device of
 * one virtio-netd process: eth0 (split ring) and eth1 (packed ring). After every event: seeded bytes through both
 * NICs with their SHA-256 compared at both ends (both ways on each; after a reboot down one and up the other,
 * swapped the next time), and the process holds the same fds, guest-memory mappings and loop threads as after the
 * first boot.
 */
@Tag("integration")
class GuestLifecycleIT {
    private static final System.Logger LOG = System.getLogger(GuestLifecycleIT.class.getName());
    private static final Duration STEP = Duration.ofSeconds(120);
    private static final Duration SETTLE = Duration.ofSeconds(30);
    private static final String HOST0 = "10.77.0.1";
    private static final String HOST1 = "10.78.0.1";
    private static final String MAC1 = "52:54:00:12:34:58";
    private static final int REBOOTS = 20;
    private static final int RELOADS = 20;
    private static final int HOTPLUGS = 10;
    private static final int BYTES = 256 * 1024;
    private static final Pattern FEATURES = Pattern.compile("VND-ETH1 (\\S+) ([01]+)");
    private static final Pattern UPTIME = Pattern.compile("VND-UPTIME (\\S+)");

    /** eth1 up (waiting for it, bounded), a small upload file; prints eth1's MAC and features. */
    private static final String ETH1_UP = String.join("\n",
            "i=0; while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done",
            "ip addr add 10.78.0.2/24 dev eth1 && ip link set eth1 up || exit 3",
            "[ -e /tmp/small.bin ] || head -c " + BYTES + " /dev/urandom > /tmp/small.bin",
            "echo VND-ETH1 $(cat /sys/class/net/eth1/address) $(cat /sys/class/net/eth1/device/features)",
            "echo VND-UPTIME $(cut -d' ' -f1 /proc/uptime)",
            "ping -c 1 -W 10 " + HOST1 + " > /dev/null || exit 4");

    private record Side(NetNs ns, VirtioNetd eth0, VirtioNetd eth1) {
        String describe() {
            return "eth0: " + eth0.describe() + "\neth1: " + eth1.describe();
        }
    }

    @Test
    @Timeout(value = 20, unit = TimeUnit.MINUTES)
    void rebootsDriverReloadsOffloadChangesAndHotPlugsLeaveTheDeviceServingAndLeakNothing() {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("x0", HOST0 + "/24");
            ns.addTap("x1", HOST1 + "/24");
            List<VirtioNetd> devices = VirtioNetd.startDevices(ns, "lc", List.of("x0", "x1"));
            List<VirtioNetd> started = new ArrayList<>(devices);
            Side side = new Side(ns, devices.get(0), devices.get(1));
            Path qmp = ns.dir().resolve("qmp.sock");
            try (GuestPeer peer = GuestPeer.start(ns);
                 GuestVm vm = GuestVm.builder().vhostUser(side.eth0().socket()).reconnect(true).qmp(qmp).rebootAllowed(true)
                         .moreVhostUserNic(side.eth1().socket(), MAC1, "packed=on")
                         .ip("10.77.0.2/24").command(GuestPeer.agentCommand(HOST0)).start()) {
                Failures.withContext(() -> "guest " + vm + " serial log tail:\n" + Cmd.indent(Cmd.tail(vm.output(), 40))
                        + "\nguest peer:\n" + Cmd.indent(peer.log()) + "\n" + side.describe(),
                        () -> run(side, peer, vm, qmp, started));
            } finally {
                started.forEach(VirtioNetd::close);
            }
        }
    }

    private static void run(Side side, GuestPeer peer, GuestVm vm, Path qmp, List<VirtioNetd> started) {
        long pid = side.eth0().process().pid();
        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
        assertPacked(traffic(peer, vm, ETH1_UP, "boot0", true), true);
        DeviceResources first = DeviceResources.of(pid);
        LOG.log(System.Logger.Level.INFO, "after the first boot: {0}", first);
        long resetsBefore = resets(side.eth0());

        for (int i = 1; i <= REBOOTS; i++) {
            int from = vm.lineCount();
            if (i % 2 == 1) {
                int id = peer.post("reboot -f");
                vm.awaitLine("VND-AGENT-BEGIN " + id + "$", STEP, from);
            } else {
                GuestVm.qmp(qmp, "system_reset");
            }
            long t0 = System.nanoTime();
            vm.awaitLine("VND-READY", GuestVm.BOOT_TIMEOUT, from);
            long t1 = System.nanoTime();
            // Both NICs, both directions, in two transfers: down one NIC and up the other, swapped each time.
            String out = traffic(peer, vm, ETH1_UP, "boot" + i,
                    i % 2 == 1 ? List.of("-d0", "-u1") : List.of("-d1", "-u0"));
            long t2 = System.nanoTime();
            awaitSameHoldings(pid, first, "reboot " + i + (i % 2 == 1 ? " (reboot -f)" : " (system_reset)"));
            Matcher up = UPTIME.matcher(out);
            LOG.log(System.Logger.Level.INFO, "reboot {0}: boot {1} ms (guest uptime then {2} s), traffic {3} ms, "
                    + "holdings {4} ms", i, (t1 - t0) / 1_000_000, up.find() ? up.group(1) : "?",
                    (t2 - t1) / 1_000_000, (System.nanoTime() - t2) / 1_000_000);
        }
        assertThat(resets(side.eth0()) - resetsBefore).as("device resets eth0's device counted over %d reboots",
                REBOOTS).isGreaterThanOrEqualTo(REBOOTS);

        for (int i = 1; i <= RELOADS; i++) {
            peer.run(vm, String.join("\n",
                    "rmmod virtio_net || exit 1",
                    "[ ! -e /sys/class/net/eth0 ] || exit 2",
                    "insmod /lib/modules/virtio_net.ko || exit 3",
                    "i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done",
                    "ip addr add 10.77.0.2/24 dev eth0 && ip link set eth0 up || exit 4",
                    "ping -c 1 -W 10 " + HOST0 + " > /dev/null || exit 5"), STEP);
            traffic(peer, vm, ETH1_UP, "reload" + i, true);
            awaitSameHoldings(pid, first, "driver reload " + i);
        }

        offloadsOffAndOnUnderTraffic(side, peer, vm);
        awaitSameHoldings(pid, first, "the offload changes");

        for (int i = 1; i <= HOTPLUGS; i++) {
            boolean packed = i % 2 == 0;
            peer.run(vm, GuestPeer.downloadStream("unplug" + i, HOST1), STEP);
            long rx = VirtioNetd.counter(side.eth1().stats(), "rx_packets");
            Poll.until("traffic on eth1 before unplug " + i, STEP,
                    () -> VirtioNetd.counter(side.eth1().stats(), "rx_packets") > rx + 20, side.eth1()::describe);
            GuestVm.qmp(qmp, GuestVm.qmpCommand("device_del", "{\"id\": \"nic1\"}"));
            Poll.until("QEMU to remove nic1 (the guest ejects it)", STEP,
                    () -> !GuestVm.qmp(qmp, GuestVm.qmpCommand("qom-list", "{\"path\": \"/machine/peripheral\"}"))
                            .contains("\"nic1\""),
                    () -> GuestVm.qmp(qmp, GuestVm.qmpCommand("qom-list", "{\"path\": \"/machine/peripheral\"}")));
            peer.run(vm, "[ ! -e /sys/class/net/eth1 ] || exit 1", STEP);
            GuestVm.qmp(qmp, GuestVm.qmpCommand("device_add", "{\"driver\": \"virtio-net-pci\", \"id\": \"nic1\", "
                    + "\"netdev\": \"n1\", \"mac\": \"" + MAC1 + "\", \"vectors\": 0, \"romfile\": \"\", "
                    + "\"packed\": " + packed + "}"));
            assertPacked(traffic(peer, vm, ETH1_UP, "plug" + i, false), packed);
            awaitSameHoldings(pid, first, "hot-plug " + i);
        }
        LOG.log(System.Logger.Level.INFO, "after it all: {0}; eth0 lifecycle {1}; eth1 lifecycle {2}",
                DeviceResources.of(pid), side.eth0().stats().get("lifecycle"), side.eth1().stats().get("lifecycle"));

        // The device killed (SIGKILL) right after a system_reset, and started again on its sockets while the guest
        // boots: QEMU reconnects (reconnect=1) and the guest, once up, has both NICs moving data.
        int from = vm.lineCount();
        GuestVm.qmp(qmp, "system_reset");
        Cmd.check("kill", "-KILL", Long.toString(pid));
        assertThat(side.eth0().process().awaitExit(Duration.ofSeconds(30))).as("virtio-netd after SIGKILL")
                .isEqualTo(137);
        List<VirtioNetd> again = VirtioNetd.startDevices(side.ns(), "lc", List.of("x0", "x1"));
        started.addAll(again);
        vm.awaitLine("VND-READY", GuestVm.BOOT_TIMEOUT, from);
        traffic(peer, vm, ETH1_UP, "restarted", true);
        Poll.until("the new virtio-netd to serve both NICs", STEP,
                () -> VirtioNetd.counter(again.get(0).stats(), "rx_packets") > 0
                        && VirtioNetd.counter(again.get(1).stats(), "rx_packets") > 0, again.get(0)::describe);
    }

    /**
     * Runs {@code first} in the guest, then seeded bytes down and up through eth1, and through eth0 too when
     * {@code both}; hashes compared. Returns what the guest printed.
     */
    private static String traffic(GuestPeer peer, GuestVm vm, String first, String tag, boolean both) {
        return traffic(peer, vm, first, tag, both ? List.of("-d1", "-u1", "-d0", "-u0") : List.of("-d1", "-u1"));
    }

    /**
     * Runs {@code first} in the guest, then the transfers named by {@code which}: -dN seeded bytes down through
     * ethN, -uN up; hashes compared. Returns what the guest printed.
     */
    private static String traffic(GuestPeer peer, GuestVm vm, String first, String tag, List<String> which) {
        StringBuilder s = new StringBuilder(first).append('\n');
        for (String w : which) {
            String host = w.endsWith("1") ? HOST1 : HOST0;
            s.append(w.startsWith("-d") ? GuestPeer.download(tag + w, BYTES, host)
                    : GuestPeer.upload(tag + w, host, "/tmp/small.bin")).append('\n');
        }
        String out = peer.run(vm, s.toString(), STEP);
        for (String w : which) {
            peer.assertSameBytes(vm, tag + w, BYTES, STEP);
        }
        return out;
    }

    /**
     * Streams both ways on both NICs while the guest turns TSO, GSO and checksum offload off on each NIC and on
     * again (the device then gets plain frames, then GSO frames with partial checksums again).
     */
    private static void offloadsOffAndOnUnderTraffic(Side side, GuestPeer peer, GuestVm vm) {
        peer.run(vm, String.join("\n", GuestPeer.downloadStream("k-d0", HOST0), GuestPeer.downloadStream("k-d1", HOST1),
                GuestPeer.uploadStream("k-u0", HOST0), GuestPeer.uploadStream("k-u1", HOST1)), STEP);
        peer.run(vm, String.join("\n",
                "sleep 1",
                "for d in eth0 eth1; do ethtool -K $d tso off gso off tx off || exit 1; done",
                "echo VND-OFFLOADS-OFF $(ethtool -k eth0 | grep -c ': off') $(ethtool -k eth1 | grep -c ': off')",
                "sleep 2",
                "for d in eth0 eth1; do ethtool -K $d tso on gso on tx on || exit 2; done",
                "sleep 2",
                GuestPeer.stopUploadStream("k-u0"), GuestPeer.stopUploadStream("k-u1")), STEP);
        peer.stopDownloadStream("k-d0");
        peer.stopDownloadStream("k-d1");
        for (String n : List.of("k-d0", "k-d1", "k-u0", "k-u1")) {
            peer.assertSameBytes(vm, n, 1 << 20, STEP);
        }
        for (VirtioNetd d : List.of(side.eth0(), side.eth1())) {
            Map<String, Object> s = d.stats();
            assertThat(VirtioNetd.counter(s, "tx_bad_header")).as("%s tx_bad_header", d).isZero();
            assertThat(VirtioNetd.counter(s, "invalid_chains")).as("%s invalid_chains", d).isZero();
        }
    }

    private static void assertPacked(String eth1Output, boolean packed) {
        Matcher m = FEATURES.matcher(eth1Output);
        assertThat(m.find()).as("VND-ETH1 line in:%n%s", eth1Output).isTrue();
        assertThat(m.group(1)).as("eth1's MAC").isEqualTo(MAC1);
        long features = GuestVm.featureBits(m.group(2));
        assertThat((features & VirtioFeature.bit(VirtioFeature.RING_PACKED)) != 0)
                .as("eth1 negotiated VIRTIO_F_RING_PACKED (features %s)", m.group(2)).isEqualTo(packed);
    }

    private static long resets(VirtioNetd d) {
        return (Long) JsonText.at(d.stats(), "lifecycle", "resets");
    }

    /** Waits (bounded) until the process holds what it held after the first boot; says what differs. */
    private static void awaitSameHoldings(long pid, DeviceResources first, String after) {
        DeviceResources[] last = new DeviceResources[1];
        Poll.until("virtio-netd to hold after " + after + " what it held after the first boot " + first, SETTLE,
                () -> (last[0] = DeviceResources.of(pid)).sameHoldings(first), () -> "now " + last[0]);
    }
}
