package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.virtionetd.glue.bhyve.BhyveMac;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * scripts/bhyve as a bhyve user runs it: a bhyve(8) command line (hostbridge, a virtio-net slot on a tap, a
 * virtio-net slot with no backend, lpc, com1 on stdio) plus the wrapper's QEMU-only --kernel/--initrd/--append,
 * run inside a namespace. The test guest must come up on virtio-netd, have bhyve's generated MAC, ping the tap's
 * address and be pinged back; --show-features must print both slots' feature tables; the wrapper must create the
 * private tap of the backend-less slot, leave it down, and remove it and the sockets when the VM powers off.
 */
@Tag("integration")
class BhyveWrapperIT {
    private static final Duration STEP = Duration.ofSeconds(120);
    private static final String VM = "bhyveit";

    @Test
    void bootsTheTestGuestThroughTheWrapper() throws Exception {
        String guestCommand = String.join("\n",
                "echo VND-MAC $(cat /sys/class/net/eth0/address)",
                "ping -c 3 -W 5 10.77.0.1; echo VND-GUEST-PING rc=$?",
                "i=0",
                "while [ \"$(vnd-snmp Icmp InEchos)\" -lt 3 ] && [ $i -lt 600 ]; do usleep 100000; i=$((i+1)); done",
                "echo VND-HOST-PINGED echos=$(vnd-snmp Icmp InEchos)");
        String append = GuestVm.builder().ip("10.77.0.2/24").command(guestCommand).kernelCommandLine();
        Path root = GuestVm.projectRoot();
        try (NetNs ns = NetNs.create()) {
            // bhyve backend names start with tap or vmnet; in the test's own namespace tap0 is ours.
            ns.addTap("tap0", "10.77.0.1/24");
            Path runDir = ns.dir().resolve("run");
            List<String> argv = new ArrayList<>(List.of(root.resolve("scripts/bhyve").toString(), "--show-features",
                    "--run-dir", runDir.toString(), "--wait", "180",
                    "-c", "1", "-m", "512M", "-AHPw", "-s", "0,hostbridge", "-s", "2,virtio-net,tap0", "-s",
                    "3,virtio-net", "-s", "31,lpc", "-l", "com1,stdio",
                    "--kernel", GuestVm.kernel().toString(), "--initrd", GuestVm.image().toString(),
                    "--append", append, VM));
            try (Spawned wrapper = ns.spawn("bhyve", argv.toArray(new String[0]))) {
                // The backend-less slot's private tap exists (and is down) while the VM runs.
                String privateTap = "vnl" + md5Hex(VM).substring(0, 6) + "030";
                Poll.until("private tap " + privateTap + " in " + ns.name(), Duration.ofSeconds(180),
                        () -> ns.run("ip", "link", "show", "dev", privateTap).ok() || !wrapper.isAlive(),
                        wrapper::output);
                assertThat(wrapper.isAlive()).as("wrapper running; its output:\n%s", Cmd.tail(wrapper.output(), 40))
                        .isTrue();
                String link = ns.run("ip", "-o", "link", "show", "dev", privateTap).orFail().output();
                assertThat(link).as("private tap of the NIC without backend").contains("state DOWN")
                        .doesNotContainPattern("<[^>]*\\bUP\\b");

                // Whole MAC only: the serial log may hold half a line when first read.
                String mac = wrapper.awaitMatch("VND-MAC ([0-9a-f]{2}(?::[0-9a-f]{2}){5})\\b", GuestVm.BOOT_TIMEOUT)
                        .group(1);
                assertThat(mac).as("guest eth0 MAC: bhyve's net_genmac for slot 2 function 0 of " + VM)
                        .isEqualTo(BhyveMac.format(BhyveMac.generate(2, 0, VM)));
                String pingRc = wrapper.awaitMatch("VND-GUEST-PING rc=(\\d+)\\b", STEP).group(1);
                assertThat(pingRc).as("guest -> host ping exit code; output:\n%s", Cmd.tail(wrapper.output(), 30))
                        .isEqualTo("0");
                assertThat(wrapper.output()).as("guest -> host ping")
                        .containsPattern("3 packets transmitted, [123] packets received");
                Cmd.Result hostPing = ns.ping("10.77.0.2", 3);
                assertThat(hostPing.exitCode()).as("host -> guest ping:\n%s", hostPing.output()).isZero();

                int rc = wrapper.awaitExit(STEP);
                String out = wrapper.output();
                assertThat(rc).as("wrapper exit code (QEMU's); output:\n%s", Cmd.tail(out, 60)).isZero();
                assertThat(out).contains("VND-DONE rc=0").containsPattern("VND-HOST-PINGED echos=([3-9]|\\d\\d+)");
                // --show-features: one table per virtio-net slot, served by virtio-netd on the right backend.
                assertThat(out).contains("--- pci slot 0:2:0 virtio-net", "--- pci slot 0:3:0 virtio-net",
                        "device net-2-0.sock (tap:tap0)", "device net-3-0.sock (tap:" + privateTap + ")");
                assertThat(out).containsPattern("VIRTIO_F_VERSION_1\\s+yes\\s+yes\\s+yes")
                        .containsPattern("VIRTIO_NET_F_MRG_RXBUF\\s+yes\\s+yes\\s+yes");
            }
            // Cleaned up on exit: no private tap, no sockets.
            assertThat(ns.run("ip", "link", "show", "dev", "vnl" + md5Hex(VM).substring(0, 6) + "030").ok())
                    .as("private tap removed").isFalse();
            try (Stream<Path> left = Files.exists(runDir) ? Files.list(runDir) : Stream.empty()) {
                assertThat(left.map(p -> p.getFileName().toString()).filter(n -> !n.endsWith(".log")))
                        .as("sockets left in " + runDir).isEmpty();
            }
        }
    }

    @Test
    void dryRunThroughTheScriptPrintsThePlanAndStartsNothing() {
        Path root = GuestVm.projectRoot();
        Cmd.Result r = Cmd.run(Duration.ofMinutes(5), List.of(root.resolve("scripts/bhyve").toString(), "--dry-run",
                "-c", "2", "-m", "1G", "-s", "0,hostbridge", "-s", "2,virtio-net,tap0,mtu=9000", "-s",
                "4,virtio-blk,/vm/disk.img", "-s", "31,lpc", "-l", "com1,stdio", "--kernel", "/boot/vmlinuz", "dryvm"));
        assertThat(r.exitCode()).as("dry run output:\n%s", r.output()).isZero();
        Matcher m = Pattern.compile("(?m)^.*--socket /run/virtio-netd-bhyve/dryvm/net-2-0.sock --backend tap:tap0 "
                + "--mac 00:a0:98:\\S+ --mtu 9000 --control /run/virtio-netd-bhyve/dryvm/net-2-0.ctl$").matcher(r.output());
        assertThat(m.find()).as("virtio-netd line in:\n%s", r.output()).isTrue();
        assertThat(r.output()).containsPattern("(?m)^qemu-system-x86_64 .*-accel tcg -cpu max .*"
                + "-device virtio-net-pci,netdev=net-2-0,mac=00:a0:98:[0-9a-f:]+,vectors=0,host_mtu=9000,addr=2.0");
        assertThat(Files.exists(Path.of("/run/virtio-netd-bhyve/dryvm"))).as("dry run created its run dir").isFalse();
    }

    private static String md5Hex(String s) throws Exception {
        byte[] d = java.security.MessageDigest.getInstance("MD5").digest(s.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        return java.util.HexFormat.of().formatHex(d);
    }
}
