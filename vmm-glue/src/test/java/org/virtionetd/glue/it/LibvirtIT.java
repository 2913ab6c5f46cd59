package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.glue.bhyve.BhyveMain;
import org.virtionetd.glue.bhyve.LibvirtDomain;
import org.virtionetd.virtio.testsupport.Cleanup;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.LogWatch;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.xml.sax.InputSource;

import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMSource;
import javax.xml.transform.stream.StreamResult;
import javax.xml.xpath.XPathConstants;
import javax.xml.xpath.XPathFactory;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The test guest started by a real libvirtd (Debian's libvirt-daemon-system, {@code qemu:///system}, TCG) from the
 * domain XML of {@code scripts/bhyve --emit-libvirt-xml} (the same {@link BhyveMain#run} call the script makes), its
 * NIC an {@code <interface type='vhostuser'>} on virtio-netd (on a tap in the test's namespace). The one change to
 * that XML: com1 becomes a {@code <serial type='file'>}, for the test to read the guest's serial protocol (the
 * wrapper maps bhyve's stdio to a pty, for {@code virsh console}).
 *
 * <p>Checks: ping both ways, a byte-checked TCP stream each way ({@link GuestPeer}), {@code virsh domiflist} lists
 * the vhostuser interface on the device's socket with the MAC; {@code virsh domifstat}: libvirt 9.0 takes a
 * vhostuser interface's counters from Open vSwitch (ovs-vsctl, by the interface's target name), so on a socket of
 * virtio-netd it fails; the test logs what it says, and the device's own counters (virtio-netd stats) are the
 * ones checked. Permissions as docs/libvirt.md says: QEMU runs as libvirt's QEMU user (Debian: libvirt-qemu),
 * which must reach the socket, so the socket's directory is searchable and the socket is given to that user;
 * libvirt does not relabel a vhostuser socket. Everything libvirt's QEMU opens is in that directory (copies of the
 * kernel and the guest image: libvirt chowns what it boots while the domain runs).
 */
@Tag("integration")
class LibvirtIT {
    private static final System.Logger LOG = System.getLogger(LibvirtIT.class.getName());
    private static final String HOST_IP = GuestTraffic.HOST_IP;
    private static final String GUEST_IP = GuestTraffic.GUEST_IP;
    private static final String VM = "vnd-it-" + ProcessHandle.current().pid();
    private static final int STREAM_BYTES = 4_000_000;
    private static final Duration STEP = Duration.ofSeconds(120);

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void theWrappersDomainBootsOnVirtioNetdUnderLibvirtdAndMovesTraffic() throws Exception {
        Path dir = Files.createTempDirectory("vnd-libvirt-");
        try (Libvirtd libvirtd = Libvirtd.ensureRunning(dir); NetNs ns = NetNs.create()) {
            // Searchable by QEMU's user, not listable; the socket and the boot files inside.
            Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx--x--x"));
            Path kernel = copy(GuestVm.kernel(), dir.resolve("vmlinuz"));
            Path initrd = copy(GuestVm.image(), dir.resolve("initrd.img"));
            Path serial = dir.resolve("serial.log");
            ns.addTap("tap0", HOST_IP + "/24");
            String append = GuestVm.builder().ip(GUEST_IP + "/24").command(guestCommand()).kernelCommandLine();

            Document domain = emit(List.of("--emit-libvirt-xml", "--run-dir", dir.toString(), "-c", "1", "-m", "512M",
                    "-s", "0,hostbridge", "-s", "2,virtio-net,tap0", "-s", "31,lpc", "-l", "com1,stdio",
                    "--kernel", kernel.toString(), "--initrd", initrd.toString(), "--append", append, VM));
            Path socket = Path.of(xpath(domain, "/domain/devices/interface[@type='vhostuser']/source/@path"));
            String mac = xpath(domain, "/domain/devices/interface/mac/@address");
            assertThat(socket).as("the NIC's socket").isEqualTo(dir.resolve("net-2-0.sock"));
            serialToFile(domain, serial);
            Path xml = dir.resolve("domain.xml");
            Files.writeString(xml, text(domain));

            try (VirtioNetd device = VirtioNetd.startAt(ns, "tap0", socket, dir.resolve("net-2-0.ctl"), "--mac", mac);
                 GuestPeer peer = GuestPeer.start(ns)) {
                String qemuUser = Libvirtd.qemuUser();
                Cmd.check("chown", qemuUser + ":", socket.toString());
                try (TransientDomain vm = TransientDomain.create(xml, serial)) {
                    Failures.withContext(() -> vm.describe() + "\n" + device.describe() + "\npeer log:\n"
                            + Cmd.indent(peer.log()) + "\n" + libvirtd.logTail(20), () -> {
                        LOG.log(System.Logger.Level.INFO, "{0}: QEMU pid {1} runs as uid {2} ({3} expected)", VM,
                                vm.qemu.pid(), vm.qemuUid(), qemuUser);
                        vm.await("VND-READY", GuestVm.BOOT_TIMEOUT);
                        checkDomiflist(socket, mac);
                        traffic(vm, ns, peer);
                        checkCounters(device, mac);
                        assertThat(Libvirtd.virsh("dumpxml", VM).orFail().output())
                                .as("libvirt keeps the wrapper's metadata").contains(LibvirtDomain.METADATA_NS);
                    });
                }
            }
        } finally {
            Cleanup.deleteTree(dir);
        }
    }

    /** Ping, wait for the host's pings, a download and an upload through the peer; then idle until destroyed. */
    private static String guestCommand() {
        return String.join("\n",
                "ping -c 3 -W 5 " + HOST_IP + "; echo VND-PING rc=$?",
                "i=0; while [ \"$(vnd-snmp Icmp InEchos)\" -lt 3 ] && [ $i -lt 1200 ]; do usleep 100000; "
                        + "i=$((i+1)); done",
                "echo VND-HOST-PINGED echos=$(vnd-snmp Icmp InEchos)",
                GuestPeer.download("down", STREAM_BYTES, HOST_IP),
                "head -c " + STREAM_BYTES + " /dev/urandom > /tmp/up.bin",
                GuestPeer.upload("up", HOST_IP, "/tmp/up.bin"),
                "echo VND-TRAFFIC-DONE",
                "sleep 600");
    }

    private static void traffic(TransientDomain vm, NetNs ns, GuestPeer peer) {
        assertThat(vm.await("VND-PING rc=\\d+", STEP)).as("guest -> host ping").endsWith("rc=0");
        Cmd.Result hostPing = ns.ping(GUEST_IP, 3);
        assertThat(hostPing.exitCode()).as("host -> guest ping:\n%s", hostPing.output()).isZero();
        assertThat(vm.await("VND-HOST-PINGED echos=\\d+", STEP)).as("echo requests the guest answered")
                .containsPattern("echos=([3-9]|\\d\\d+)");
        for (String name : List.of("down", "up")) {
            GuestPeer.Transfer t = peer.awaitTransfer(name, STEP);
            String guest = vm.await("VND-(GOT|PUT) " + name + " \\S+", STEP);
            assertThat(guest).as("SHA-256 of stream %s in the guest vs at the host (%s %d bytes)", name, t.kind(),
                    t.bytes()).endsWith(" " + t.sha256());
            assertThat(t.bytes()).as("bytes of stream %s", name).isEqualTo(STREAM_BYTES);
        }
        vm.await("VND-TRAFFIC-DONE", STEP);
    }

    private static void checkDomiflist(Path socket, String mac) {
        String list = Libvirtd.virsh("domiflist", VM).orFail().output();
        LOG.log(System.Logger.Level.INFO, "virsh domiflist {0}:\n{1}", VM, list);
        assertThat(list).as("virsh domiflist " + VM).containsPattern("(?m)^\\s*\\S+\\s+vhostuser\\s+"
                + Pattern.quote(socket.toString()) + "\\s+virtio\\s+" + Pattern.quote(mac) + "\\s*$");
    }

    /** virsh domifstat if libvirt has counters for the NIC (logged either way); the device's own must move. */
    private static void checkCounters(VirtioNetd device, String mac) {
        Cmd.Result ifstat = Libvirtd.virsh("domifstat", VM, mac);
        LOG.log(System.Logger.Level.INFO, "virsh domifstat {0} {1} (exit {2}):\n{3}", VM, mac, ifstat.exitCode(),
                ifstat.output());
        if (ifstat.ok()) {
            assertThat(ifstat.output()).as("virsh domifstat").containsPattern("rx_bytes [1-9]");
        }
        Map<String, Object> stats = device.stats();
        LOG.log(System.Logger.Level.INFO, "virtio-netd stats: {0}", stats);
        long streams = 2L * STREAM_BYTES;
        assertThat(VirtioNetd.counter(stats, "tx_bytes") + VirtioNetd.counter(stats, "rx_bytes"))
                .as("bytes the device moved both ways (%s)", stats).isGreaterThan(streams);
        assertThat(VirtioNetd.counter(stats, "tx_packets")).as("device tx_packets (%s)", stats).isPositive();
        assertThat(VirtioNetd.counter(stats, "rx_packets")).as("device rx_packets (%s)", stats).isPositive();
        assertThat(VirtioNetd.counter(stats, "tx_bad_header")).as("device tx_bad_header (%s)", stats).isZero();
        assertThat(VirtioNetd.counter(stats, "invalid_chains")).as("device invalid_chains (%s)", stats).isZero();
    }

    /** What the wrapper prints, through the same entry point scripts/bhyve runs; fails with its stderr. */
    private static Document emit(List<String> args) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = BhyveMain.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8), "Linux");
        assertThat(rc).as("bhyve --emit-libvirt-xml exit code; stderr:\n%s", err.toString(StandardCharsets.UTF_8))
                .isZero();
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setNamespaceAware(true);
        return f.newDocumentBuilder().parse(new InputSource(new StringReader(out.toString(StandardCharsets.UTF_8))));
    }

    /** COM1 (port 0) into a file libvirt creates; it stays root's, and QEMU gets it as an open descriptor. */
    private static void serialToFile(Document domain, Path file) throws Exception {
        Element com1 = (Element) XPathFactory.newInstance().newXPath().evaluate(
                "/domain/devices/serial[target/@port='0']", domain, XPathConstants.NODE);
        assertThat(com1).as("com1 in the wrapper's domain").isNotNull();
        assertThat(com1.getAttribute("type")).as("com1,stdio in the wrapper's domain").isEqualTo("pty");
        com1.setAttribute("type", "file");
        Element source = domain.createElement("source");
        source.setAttribute("path", file.toString());
        com1.insertBefore(source, com1.getFirstChild());
    }

    private static String xpath(Document d, String expression) throws Exception {
        return XPathFactory.newInstance().newXPath().evaluate(expression, d);
    }

    private static String text(Document d) throws Exception {
        java.io.StringWriter w = new java.io.StringWriter();
        TransformerFactory.newInstance().newTransformer().transform(new DOMSource(d), new StreamResult(w));
        return w.toString();
    }

    private static Path copy(Path from, Path to) throws Exception {
        Files.copy(from, to, StandardCopyOption.REPLACE_EXISTING);
        Files.setPosixFilePermissions(to, PosixFilePermissions.fromString("rw-r--r--"));
        return to;
    }

    /** A domain from {@code virsh create} (transient: gone from libvirt once destroyed); close destroys it. */
    private static final class TransientDomain implements AutoCloseable {
        private static final Path PID_DIR = Path.of("/run/libvirt/qemu");
        private final Path serial;
        private final ProcessHandle qemu;

        private TransientDomain(Path serial, ProcessHandle qemu) {
            this.serial = serial;
            this.qemu = qemu;
        }

        static TransientDomain create(Path xml, Path serial) {
            Cmd.Result r = Libvirtd.virsh("create", xml.toString());
            if (!r.ok()) {
                throw new AssertionError("virsh create " + xml + " exited " + r.exitCode() + ":\n"
                        + Cmd.indent(r.output()) + "\nQEMU log (/var/log/libvirt/qemu/" + VM + ".log) tail:\n"
                        + Cmd.indent(Cmd.tail(Spawned.readLog(Path.of("/var/log/libvirt/qemu", VM + ".log")), 20)));
            }
            TransientDomain d = new TransientDomain(serial, qemuProcess());
            Cleanup.register(d);
            return d;
        }

        /** libvirt writes QEMU's pid to /run/libvirt/qemu/NAME.pid. */
        private static ProcessHandle qemuProcess() {
            Path pidFile = PID_DIR.resolve(VM + ".pid");
            try {
                long pid = Long.parseLong(Files.readString(pidFile).strip());
                return ProcessHandle.of(pid).orElseThrow(() -> new AssertionError("QEMU pid " + pid + " of " + pidFile
                        + " is not running"));
            } catch (java.io.IOException | NumberFormatException e) {
                throw new AssertionError("no QEMU pid in " + pidFile + ": " + e, e);
            }
        }

        String output() {
            return Spawned.readLog(serial);
        }

        /** Waits for a serial line matching {@code regex}; fails early on VND-ERROR or when QEMU has gone. */
        String await(String regex, Duration timeout) {
            return LogWatch.await(this::output, Pattern.compile(regex), Pattern.compile("VND-ERROR"), timeout,
                    qemu::isAlive, () -> "domain " + VM + (qemu.isAlive() ? " (QEMU running)" : " (QEMU gone)"), 0)
                    .line();
        }

        String qemuUid() {
            try {
                return Files.readAllLines(Path.of("/proc", Long.toString(qemu.pid()), "status")).stream()
                        .filter(l -> l.startsWith("Uid:")).findFirst().orElse("Uid: ?").substring(4).strip();
            } catch (java.io.IOException e) {
                return "(" + e.getMessage() + ")";
            }
        }

        String describe() {
            return "domain " + VM + " serial log tail:\n" + Cmd.indent(Cmd.tail(output(), 40))
                    + "\nvirsh domstate: " + Libvirtd.virsh("domstate", VM).output().strip()
                    + "\nQEMU log tail:\n" + Cmd.indent(Cmd.tail(Spawned.readLog(
                    Path.of("/var/log/libvirt/qemu", VM + ".log")), 20));
        }

        /** Destroys the domain if it still runs (a transient domain is then gone from libvirt). */
        @Override
        public void close() {
            Cleanup.unregister(this);
            if (Libvirtd.virsh("domstate", VM).ok()) {
                Cmd.Result r = Libvirtd.virsh("destroy", VM);
                if (!r.ok() && Libvirtd.virsh("domstate", VM).ok()) {
                    throw new Cmd.Failure("virsh destroy " + VM + " exited " + r.exitCode() + ": " + r.output());
                }
            }
        }

        @Override
        public String toString() {
            return "libvirt domain " + VM;
        }
    }
}
