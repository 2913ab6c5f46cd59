package org.virtionetd.glue.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.virtionetd.glue.control.ControlServer;
import org.virtionetd.glue.vhostuser.LifecycleCounters;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.testdriver.InMemoryBackend;
import org.virtionetd.virtio.testsupport.NetFixture;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;

import static org.assertj.core.api.Assertions.assertThat;

/** The command line: wrong input names the wrong part; features/stats answer through the control socket. */
class MainTest {
    record Run(int exit, String out, String err) {
    }

    static Run run(String... args) {
        CommandLine cl = Main.commandLine();
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int exit = cl.execute(args);
        return new Run(exit, out.toString(), err.toString());
    }

    @Test
    void wrongOptionsNameTheWrongPart() {
        assertThat(run("--socket", "/tmp/s", "--backend", "tap:t0", "--mtu", "20").err()).contains("mtu 20");
        assertThat(run("--socket", "/tmp/s", "--backend", "tap:t0", "--mac", "52:54:00:12:34").err())
                .contains("must have 6 parts");
        assertThat(run("--socket", "/tmp/s", "--backend", "tap:t0", "--mac", "52:54:00:12:34:gg").err())
                .contains("part 6 'gg'");
        assertThat(run("--socket", "/tmp/s", "--backend", "tap:t0", "--queues", "0").err()).contains("--queues 0");
        assertThat(run("--socket", "/tmp/s", "--backend", "carrier-pigeon:1").err()).contains("carrier-pigeon");
        assertThat(run("--socket", "/tmp/s", "--backend", "tap:t0", "--no-offload", "--software-offload").err())
                .contains("exclude each other");
        Run r = run("--backend", "tap:t0");
        assertThat(r.exit()).isEqualTo(2);
        assertThat(r.err()).contains("--socket").contains("--help");
        assertThat(run("features").err()).contains("--control");
    }

    @Test
    void versionAndHelp() {
        assertThat(run("--version").out()).startsWith("virtio-netd ");
        assertThat(run("--help").out()).contains("--socket").contains("--backend").contains("features");
    }

    @Test
    void featuresAndStatsComeFromTheRunningDevice(@TempDir Path dir) throws Exception {
        InMemoryBackend backend = new InMemoryBackend("mem", VirtioNetFeature.OFFLOADS);
        Path ctl = dir.resolve("ctl");
        try (NetFixture f = NetFixture.builder().backend(p -> backend).memory(8 << 20).build();
             ControlServer server = new ControlServer(ctl, Main.handlers("test-device", f.device,
                     new LifecycleCounters()))) {
            assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(ctl))).isEqualTo("rw-------");
            f.driver.start();
            Run table = run("features", "--control", ctl.toString());
            assertThat(table.exit()).as(table.err()).isZero();
            assertThat(table.out()).contains("VIRTIO_NET_F_HOST_TSO4").contains("yes").contains("IN EFFECT");
            Run json = run("features", "--control", ctl.toString(), "--json");
            assertThat(json.out()).contains("\"acked\":[").contains("\"negotiated\":[")
                    .contains("\"offered\":[").contains("\"backend_offloads\":[")
                    .contains("\"VIRTIO_F_VERSION_1\"");
            Run stats = run("stats", "--control", ctl.toString(), "--json");
            assertThat(stats.out()).contains("\"tx_packets\":0").contains("\"pair\":0");
            assertThat(stats.out()).as("lifecycle counters, a top-level object after the queue pairs")
                    .contains("],\"lifecycle\":{\"connections\":0,\"reconnects\":0,\"disconnects\":0,"
                            + "\"resets\":0,\"memory_table_changes\":0,\"memory_regions\":0,\"mapped_bytes\":0,"
                            + "\"log_base_changes\":0,\"dirty_pages_logged\":0}}");
            assertThat(stats.out()).as("the device's memory, one region, before the lifecycle")
                    .contains("],\"memory\":[{\"guest_address\":0,\"size\":8388608,\"rx_buffers\":0}],"
                            + "\"lifecycle\":{");
            backend.deliver(new byte[] {0x52, 0x54, 0, 0x12, 0x34, 0x56, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 1, 2});
            f.driver.awaitPackets(0, 1);
            assertThat(run("stats", "--control", ctl.toString(), "--json").out())
                    .contains("\"memory\":[{\"guest_address\":0,\"size\":8388608,\"rx_buffers\":1}]");
            String statsTable = run("stats", "--control", ctl.toString()).out();
            assertThat(statsTable).contains("rx_packets");
            assertThat(statsTable).containsPattern("LIFECYCLE +device\n(?s).*\nreconnects +0\n(?s).*"
                    + "\ndirty_pages_logged +0\n");
            assertThat(statsTable).containsPattern("\nMEMORY +size +rx_buffers\n0x0 +0x800000 +1\nLIFECYCLE");
        }
    }
}
