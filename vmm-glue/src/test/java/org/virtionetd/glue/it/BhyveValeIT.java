package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * scripts/bhyve with two VALE slots on one switch ({@code -s 2,virtio-net,vale0:1 -s 3,virtio-net,vale0:2}): the
 * wrapper starts ONE virtio-netd for both (repeated --device; its log is vale.log), the guest's two NICs meet on its
 * in-process switch vale0: the ARP broadcasts eth0 sends arrive at eth1, its only peer there (Linux would not answer
 * an ARP between two of its own addresses: the source is local, a martian). --show-features prints a table per slot
 * from the one process, and everything is removed when the VM powers off.
 */
@Tag("integration")
class BhyveValeIT {
    private static final Duration STEP = Duration.ofSeconds(120);
    private static final String VM = "valeit";

    @Test
    void twoValeSlotsShareOneVirtioNetdAndMeetOnItsSwitch() throws Exception {
        String guestCommand = String.join("\n",
                "ip link set eth1 up; echo VND-ETH1 rc=$?",
                "b=$(cat /sys/class/net/eth1/statistics/rx_packets)",
                "arping -I eth0 -c 3 -w 4 10.77.0.99",
                "a=$(cat /sys/class/net/eth1/statistics/rx_packets); echo VND-ETH1-RX $((a-b))");
        String append = GuestVm.builder().ip("10.77.0.2/24").command(guestCommand).kernelCommandLine();
        Path root = GuestVm.projectRoot();
        try (NetNs ns = NetNs.create()) {
            Path runDir = ns.dir().resolve("run");
            List<String> argv = new ArrayList<>(List.of(root.resolve("scripts/bhyve").toString(), "--show-features",
                    "--run-dir", runDir.toString(), "--wait", "180",
                    "-c", "1", "-m", "512M", "-AHPw", "-s", "0,hostbridge", "-s", "2,virtio-net,vale0:1", "-s",
                    "3,virtio-net,vale0:2", "-s", "31,lpc", "-l", "com1,stdio",
                    "--kernel", GuestVm.kernel().toString(), "--initrd", GuestVm.image().toString(),
                    "--append", append, VM));
            try (Spawned wrapper = ns.spawn("bhyve", argv.toArray(new String[0]))) {
                Poll.until("both VALE sockets in " + runDir, Duration.ofSeconds(180),
                        () -> Files.exists(runDir.resolve("net-2-0.sock")) && Files.exists(runDir.resolve("net-3-0.sock"))
                                || !wrapper.isAlive(), () -> Cmd.tail(wrapper.output(), 30));
                // One virtio-netd for both slots: exactly one java process in the namespace serves them.
                String procs = ns.run("sh", "-c", "ps -eww -o args | grep -c '[-]-device socket=" + runDir + "/net-2-0.sock'")
                        .output().strip();
                assertThat(procs).as("virtio-netd processes serving the VALE slots").isEqualTo("1");
                assertThat(runDir.resolve("vale.log")).exists();
                assertThat(runDir.resolve("net-2-0.log")).doesNotExist();
                String eth1 = wrapper.awaitMatch("VND-ETH1 rc=(\\d+)\\b", GuestVm.BOOT_TIMEOUT).group(1);
                assertThat(eth1).as("eth1 configured; output:\n%s", Cmd.tail(wrapper.output(), 30)).isEqualTo("0");
                // eth1's only peer on vale0 is eth0: what it receives crossed the switch from the other NIC.
                long rx = Long.parseLong(wrapper.awaitMatch("VND-ETH1-RX (\\d+)\\b", STEP).group(1));
                assertThat(rx).as("frames eth1 received while eth0 sent 3 ARP broadcasts; output:\n%s",
                        Cmd.tail(wrapper.output(), 30)).isGreaterThanOrEqualTo(3);
                int rc = wrapper.awaitExit(STEP);
                String out = wrapper.output();
                assertThat(rc).as("wrapper exit code (QEMU's); output:\n%s", Cmd.tail(out, 60)).isZero();
                assertThat(out).contains("--- pci slot 0:2:0 virtio-net", "--- pci slot 0:3:0 virtio-net",
                        "device net-2-0.sock (switch:vale0,port=1)", "device net-3-0.sock (switch:vale0,port=2)");
                assertThat(out).contains("another wrapper invocation does not share them");
            }
            try (Stream<Path> left = Files.exists(runDir) ? Files.list(runDir) : Stream.empty()) {
                assertThat(left.map(p -> p.getFileName().toString()).filter(n -> !n.endsWith(".log")))
                        .as("sockets left in " + runDir).isEmpty();
            }
        }
    }
}
