package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Memory added to a running guest: QEMU started with {@code -m 512M,slots=4,maxmem=2G}, then two memfd-backed
 * {@code pc-dimm}s plugged through QMP ({@code object-add} of a {@code memory-backend-memfd} with share=on + {@code device_add
 * pc-dimm}). QEMU tells the device (vhost-user ADD_MEM_REG, or a new SET_MEM_TABLE), and the device maps each one
 * ({@code virtio-netd stats}: memory regions). The guest onlines the first for the kernel, so that its receive
 * buffers, allocated after that, come from it (the device counts the receive buffers it filled per region), and the
 * second as movable memory, which it can give back: {@code device_del} of that DIMM takes the region out of the
 * device again (REM_MEM_REG). Seeded bytes both ways, hashes compared, before, in between and after.
 */
@Tag("integration")
class MemoryHotplugIT {
    private static final System.Logger LOG = System.getLogger(MemoryHotplugIT.class.getName());
    private static final Duration STEP = Duration.ofSeconds(120);
    private static final String HOST = "10.77.0.1";
    private static final long DIMM = 256L << 20;

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void hotPluggedMemoryIsMappedCarriesReceiveBuffersAndIsUnmappedWhenUnplugged() {
        try (NetNs ns = NetNs.create()) {
            ns.addTap("vnd0", HOST + "/24");
            Path qmp = ns.dir().resolve("qmp.sock");
            try (VirtioNetd device = VirtioNetd.start(ns, "vnd0");
                 GuestPeer peer = GuestPeer.start(ns);
                 GuestVm vm = GuestVm.builder().vhostUser(device.socket()).qmp(qmp).memorySlots(4, 2048)
                         .ip("10.77.0.2/24").command(GuestPeer.agentCommand(HOST)).start()) {
                Failures.withContext(() -> "guest " + vm + " serial log tail:\n" + Cmd.indent(Cmd.tail(vm.output(), 40))
                        + "\nguest peer:\n" + Cmd.indent(peer.log()) + "\n" + device.describe(),
                        () -> run(device, peer, vm, qmp));
            }
        }
    }

    private static void run(VirtioNetd device, GuestPeer peer, GuestVm vm, Path qmp) {
        vm.awaitReady(GuestVm.BOOT_TIMEOUT);
        traffic(peer, vm, "before", 1 << 20);
        List<Map<String, Object>> before = regions(device);
        long changesBefore = (Long) JsonText.at(device.stats(), "lifecycle", "memory_table_changes");

        plug(qmp, "1");
        Map<String, Object> dimm1 = awaitNewRegion(device, before, "dimm1");
        String onlined1 = peer.run(vm, online("online"), STEP);
        traffic(peer, vm, "dimm1", 32 << 20);
        long rxInNew = rxBuffers(device, dimm1);
        LOG.log(System.Logger.Level.INFO, "dimm1 {0}; onlined {1}; regions now {2}", dimm1, onlined1.strip(),
                regions(device));
        assertThat(rxInNew).as("receive buffers the device filled in the hot-plugged region %s (onlined: %s)",
                dimm1, onlined1.strip()).isPositive();

        List<Map<String, Object>> withDimm1 = regions(device);
        plug(qmp, "2");
        Map<String, Object> dimm2 = awaitNewRegion(device, withDimm1, "dimm2");
        peer.run(vm, online("online_movable"), STEP);
        traffic(peer, vm, "dimm2", 1 << 20);

        GuestVm.qmp(qmp, GuestVm.qmpCommand("device_del", "{\"id\": \"dimm2\"}"));
        Poll.until("the device to unmap dimm2's region " + dimm2 + " after device_del", STEP,
                () -> regions(device).stream().noneMatch(r -> r.get("guest_address").equals(dimm2.get("guest_address"))),
                () -> "regions " + regions(device) + "; QEMU: " + GuestVm.qmp(qmp, "query-memory-devices"));
        traffic(peer, vm, "unplugged", 1 << 20);
        assertThat((Long) JsonText.at(device.stats(), "lifecycle", "memory_table_changes") - changesBefore)
                .as("memory table changes: two plugs and one unplug").isGreaterThanOrEqualTo(3);
        assertThat(VirtioNetd.counter(device.stats(), "invalid_chains")).as("invalid chains").isZero();
    }

    private static void plug(Path qmp, String n) {
        GuestVm.qmp(qmp,
                GuestVm.qmpCommand("object-add", "{\"qom-type\": \"memory-backend-memfd\", \"id\": \"hp" + n
                        + "\", \"size\": " + DIMM + ", \"share\": true}"),
                GuestVm.qmpCommand("device_add", "{\"driver\": \"pc-dimm\", \"id\": \"dimm" + n + "\", \"memdev\": \"hp"
                        + n + "\"}"));
    }

    /** Guest shell: every offline memory block onlined as {@code how}; prints how many were and are online. */
    private static String online(String how) {
        return String.join("\n",
                "n=0; for f in /sys/devices/system/memory/memory*/state; do",
                "  if [ \"$(cat $f)\" = offline ]; then echo " + how + " > $f || exit 1; n=$((n+1)); fi",
                "done",
                "echo VND-ONLINED $n $(grep -l online /sys/devices/system/memory/memory*/state | wc -l)",
                "grep MemTotal /proc/meminfo");
    }

    private static void traffic(GuestPeer peer, GuestVm vm, String tag, int bytes) {
        peer.run(vm, String.join("\n", "[ -e /tmp/small.bin ] || head -c 262144 /dev/urandom > /tmp/small.bin",
                GuestPeer.download(tag + "-d", bytes, HOST), GuestPeer.upload(tag + "-u", HOST, "/tmp/small.bin")),
                STEP);
        peer.assertSameBytes(vm, tag + "-d", bytes, STEP);
        peer.assertSameBytes(vm, tag + "-u", 262144, STEP);
    }

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> regions(VirtioNetd device) {
        return (List<Map<String, Object>>) device.stats().get("memory");
    }

    private static Map<String, Object> awaitNewRegion(VirtioNetd device, List<Map<String, Object>> before,
                                                      String what) {
        Object[] found = new Object[1];
        Poll.until("the device to map " + what + " (" + DIMM + " bytes)", STEP, () -> {
            for (Map<String, Object> r : regions(device)) {
                boolean old = before.stream().anyMatch(b -> b.get("guest_address").equals(r.get("guest_address")));
                if (!old && ((Long) r.get("size")) == DIMM) {
                    found[0] = r;
                    return true;
                }
            }
            return false;
        }, () -> "regions " + regions(device));
        @SuppressWarnings("unchecked")
        Map<String, Object> r = (Map<String, Object>) found[0];
        return r;
    }

    private static long rxBuffers(VirtioNetd device, Map<String, Object> region) {
        for (Map<String, Object> r : regions(device)) {
            if (r.get("guest_address").equals(region.get("guest_address"))) {
                return (Long) r.get("rx_buffers");
            }
        }
        throw new AssertionError("region " + region + " is gone: " + regions(device));
    }
}
