package org.virtionetd.glue.bhyve;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;
import org.xml.sax.InputSource;

import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.xpath.XPath;
import javax.xml.xpath.XPathConstants;
import javax.xml.xpath.XPathFactory;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code scripts/bhyve --emit-libvirt-xml}: the domain XML parsed back with the JDK's parser, element by element
 * (libvirt's domain format), and the option errors.
 */
class LibvirtDomainTest {
    private static final String BOOT = " --kernel /boot/vmlinuz --initrd /boot/initrd.img --append console=ttyS0 ";

    /** Runs the wrapper as scripts/bhyve does (on Linux); returns exit code, stdout, stderr. */
    record Run(int rc, String out, String err) {
    }

    static Run bhyve(List<String> args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = BhyveMain.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8), "Linux");
        return new Run(rc, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    static Run bhyve(String line) {
        return bhyve(Arrays.asList(line.trim().split("\\s+")));
    }

    static Document parse(String xml) throws Exception {
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setNamespaceAware(true);
        return f.newDocumentBuilder().parse(new InputSource(new StringReader(xml)));
    }

    static Document domain(String line) throws Exception {
        Run r = bhyve("--emit-libvirt-xml " + line);
        assertThat(r.rc()).as("exit code; stderr:\n%s", r.err()).isZero();
        return parse(r.out());
    }

    static String at(Document d, String xpath) throws Exception {
        return xpath().evaluate(xpath, d);
    }

    static List<Element> all(Document d, String xpath) throws Exception {
        NodeList nodes = (NodeList) xpath().evaluate(xpath, d, XPathConstants.NODESET);
        List<Element> out = new ArrayList<>();
        for (int i = 0; i < nodes.getLength(); i++) {
            out.add((Element) nodes.item(i));
        }
        return out;
    }

    private static XPath xpath() {
        return XPathFactory.newInstance().newXPath();
    }

    @Test
    void aVirtioNetSlotIsAVhostUserInterfaceOnItsVirtioNetdSocketInSharedMemory() throws Exception {
        List<String> args = new ArrayList<>(Arrays.asList(("--emit-libvirt-xml --run-dir /run/vnd -c 2 -m 1G "
                + "-s 0,hostbridge -s 2,virtio-net,tap0,mtu=9000 -s 31,lpc -l com1,stdio --kernel /boot/vmlinuz "
                + "--initrd /boot/initrd.img").split(" ")));
        // Every character XML must escape, in the command line and the VM name.
        args.addAll(List.of("--append", "console=ttyS0 vnd.x=\"a<b&c>'d\"", "my&vm<1>"));
        Run r = bhyve(args);
        assertThat(r.rc()).as("stderr:\n%s", r.err()).isZero();
        Document d = parse(r.out());
        assertThat(at(d, "/domain/@type")).isEqualTo("qemu");
        assertThat(at(d, "/domain/name")).isEqualTo("my&vm<1>");
        assertThat(at(d, "/domain/memory")).isEqualTo("1024");
        assertThat(at(d, "/domain/memory/@unit")).isEqualTo("MiB");
        assertThat(at(d, "/domain/vcpu")).isEqualTo("2");
        assertThat(at(d, "/domain/memoryBacking/source/@type")).isEqualTo("memfd");
        assertThat(at(d, "/domain/memoryBacking/access/@mode")).isEqualTo("shared");
        assertThat(at(d, "/domain/os/type")).isEqualTo("hvm");
        assertThat(at(d, "/domain/os/type/@machine")).isEqualTo("q35");
        assertThat(at(d, "/domain/os/kernel")).isEqualTo("/boot/vmlinuz");
        assertThat(at(d, "/domain/os/initrd")).isEqualTo("/boot/initrd.img");
        assertThat(at(d, "/domain/os/cmdline")).isEqualTo("console=ttyS0 vnd.x=\"a<b&c>'d\"");
        assertThat(at(d, "/domain/cpu/@mode")).isEqualTo("maximum");
        assertThat(at(d, "/domain/on_reboot")).isEqualTo("destroy");

        List<Element> nics = all(d, "/domain/devices/interface");
        assertThat(nics).hasSize(1);
        assertThat(at(d, "/domain/devices/interface/@type")).isEqualTo("vhostuser");
        assertThat(at(d, "/domain/devices/interface/source/@type")).isEqualTo("unix");
        assertThat(at(d, "/domain/devices/interface/source/@mode")).isEqualTo("client");
        assertThat(at(d, "/domain/devices/interface/source/@path")).isEqualTo("/run/vnd/net-2-0.sock");
        assertThat(at(d, "/domain/devices/interface/model/@type")).isEqualTo("virtio");
        assertThat(at(d, "/domain/devices/interface/mac/@address"))
                .isEqualTo(BhyveMac.format(BhyveMac.generate(2, 0, "my&vm<1>")));
        assertThat(at(d, "/domain/devices/interface/mtu/@size")).isEqualTo("9000");
        assertThat(at(d, "/domain/devices/interface/driver")).as("no <driver queues>: one queue pair").isEmpty();
        assertThat(at(d, "/domain/devices/interface/address/@type")).isEqualTo("pci");
        assertThat(at(d, "/domain/devices/interface/address/@bus")).isEqualTo("0x00");
        assertThat(at(d, "/domain/devices/interface/address/@slot")).isEqualTo("0x02");
        assertThat(at(d, "/domain/devices/interface/address/@function")).isEqualTo("0x0");
        assertThat(at(d, "/domain/devices/interface/address/@multifunction")).isEmpty();

        assertThat(at(d, "/domain/devices/serial/@type")).isEqualTo("pty");
        assertThat(at(d, "/domain/devices/serial/target/@port")).isEqualTo("0");
        assertThat(at(d, "/domain/devices/controller[@type='usb']/@model")).isEqualTo("none");
        assertThat(at(d, "/domain/devices/memballoon/@model")).isEqualTo("none");

        // Under TCG: vectors=0 on the NIC, through the override of its user alias.
        String alias = at(d, "/domain/devices/interface/alias/@name");
        assertThat(alias).isEqualTo("ua-net-2-0");
        List<Element> props = all(d, "/domain/*[local-name()='override']/*[local-name()='device']"
                + "/*[local-name()='frontend']/*[local-name()='property']");
        assertThat(props).hasSize(1);
        Element prop = props.get(0);
        assertThat(prop.getNamespaceURI()).isEqualTo("http://libvirt.org/schemas/domain/qemu/1.0");
        assertThat(((Element) prop.getParentNode().getParentNode()).getAttribute("alias")).isEqualTo(alias);
        assertThat(prop.getAttribute("name")).isEqualTo("vectors");
        assertThat(prop.getAttribute("value")).isEqualTo("0");

        // What must run first: in the metadata and on stderr, the same lines; stdout is the XML alone.
        List<Element> run = all(d, "/domain/metadata/*[local-name()='virtio-netd']/*[local-name()='run']");
        assertThat(run).extracting(Element::getNamespaceURI).containsOnly(LibvirtDomain.METADATA_NS);
        List<String> steps = run.stream().map(Element::getTextContent).toList();
        assertThat(steps).hasSize(2);
        assertThat(steps.get(0)).isEqualTo("mkdir -p /run/vnd");
        assertThat(steps.get(1)).contains("--socket /run/vnd/net-2-0.sock --backend tap:tap0 --mac "
                + BhyveMac.format(BhyveMac.generate(2, 0, "my&vm<1>")) + " --mtu 9000 --control /run/vnd/net-2-0.ctl")
                .endsWith(" >/run/vnd/net-2-0.log 2>&1 &");
        for (String s : steps) {
            assertThat(r.err()).contains("bhyve:   " + s + "\n");
        }
        assertThat(r.err()).contains("as a client", "libvirt-qemu", "docs/libvirt.md");
    }

    @Test
    void kvmOnRequestWithoutTheTcgOverride() throws Exception {
        Document d = domain("--libvirt-type kvm -s 0,hostbridge -s 2,virtio-net,tap0" + BOOT + "vm");
        assertThat(at(d, "/domain/@type")).isEqualTo("kvm");
        assertThat(all(d, "/domain/*[local-name()='override']")).isEmpty();
        assertThat(at(d, "/domain/devices/interface/@type")).isEqualTo("vhostuser");
    }

    @Test
    void functionsOfOneSlotKeepTheirAddressesAndFunctionZeroSaysMultifunction() throws Exception {
        Document d = domain("-s 0,hostbridge -s 3:0,virtio-net,tap1 -s 3:1,virtio-net,tap2 -s 4,virtio-net,tap3"
                + BOOT + "vm");
        List<Element> a = all(d, "/domain/devices/interface/address");
        assertThat(a).extracting(e -> e.getAttribute("slot") + "." + e.getAttribute("function") + "/"
                + e.getAttribute("multifunction")).containsExactly("0x03.0x0/on", "0x03.0x1/", "0x04.0x0/");
        assertThat(all(d, "/domain/devices/interface/source")).extracting(e -> e.getAttribute("path"))
                .containsExactly("/run/virtio-netd-bhyve/vm/net-3-0.sock", "/run/virtio-netd-bhyve/vm/net-3-1.sock",
                        "/run/virtio-netd-bhyve/vm/net-4-0.sock");
        assertThat(all(d, "/domain/*[local-name()='override']/*[local-name()='device']"))
                .extracting(e -> e.getAttribute("alias")).containsExactly("ua-net-3-0", "ua-net-3-1", "ua-net-4-0");
    }

    @Test
    void valeNicsShareOneVirtioNetdAndABackendLessNicGetsItsPrivateTapFirst() throws Exception {
        Document d = domain("-s 2,virtio-net,vale0:1 -s 3,virtio-net,vale0:2 -s 4,virtio-net" + BOOT + "vm");
        List<String> steps = all(d, "/domain/metadata/*/*[local-name()='run']").stream()
                .map(Element::getTextContent).toList();
        assertThat(steps).hasSize(4);
        assertThat(steps.get(0)).isEqualTo("mkdir -p /run/virtio-netd-bhyve/vm");
        assertThat(steps.get(1)).startsWith("ip tuntap add dev vnl");
        // In the order of their first NIC: the VALE process (slots 2 and 3), then slot 4's.
        assertThat(steps.get(2)).contains("--device socket=/run/virtio-netd-bhyve/vm/net-2-0.sock,backend=vale0:1",
                "--device socket=/run/virtio-netd-bhyve/vm/net-3-0.sock,backend=vale0:2");
        assertThat(steps.get(3)).contains("--backend tap:vnl");
        assertThat(all(d, "/domain/metadata/*/*[local-name()='teardown']").get(0).getTextContent())
                .startsWith("ip link del vnl");
        assertThat(all(d, "/domain/devices/interface")).hasSize(3);
    }

    @Test
    void disksRngAndSerialPortsMapToTheirDomainElements() throws Exception {
        Document d = domain("-s 0,hostbridge -s 4,virtio-blk,/vm/disk.img,nocache,ser=S1,sectorsize=512/4096 "
                + "-s 5,virtio-blk,/dev/zvol/vm1,ro,nodelete -s 6,ahci,hd:/vm/a.img,cd:/vm/b.iso -s 7,virtio-rnd "
                + "-s 31,lpc -l com2,tcp=127.0.0.1:4444 -l com3,/dev/ttyS5 -u -U 2b1f1a4e-7b0e-4c3b-9d0a-3c1e5f6a7b8c "
                + "-S" + BOOT + "vm");
        assertThat(at(d, "/domain/uuid")).isEqualTo("2b1f1a4e-7b0e-4c3b-9d0a-3c1e5f6a7b8c");
        assertThat(at(d, "/domain/clock/@offset")).isEqualTo("utc");
        assertThat(all(d, "/domain/memoryBacking/locked")).hasSize(1);
        assertThat(at(d, "/domain/devices/disk[target/@dev='vda']/source/@file")).isEqualTo("/vm/disk.img");
        assertThat(at(d, "/domain/devices/disk[target/@dev='vda']/driver/@cache")).isEqualTo("none");
        assertThat(at(d, "/domain/devices/disk[target/@dev='vda']/driver/@discard")).isEqualTo("unmap");
        assertThat(at(d, "/domain/devices/disk[target/@dev='vda']/serial")).isEqualTo("S1");
        assertThat(at(d, "/domain/devices/disk[target/@dev='vda']/blockio/@physical_block_size")).isEqualTo("4096");
        assertThat(at(d, "/domain/devices/disk[target/@dev='vda']/address/@slot")).isEqualTo("0x04");
        assertThat(at(d, "/domain/devices/disk[target/@dev='vdb']/@type")).isEqualTo("block");
        assertThat(at(d, "/domain/devices/disk[target/@dev='vdb']/source/@dev")).isEqualTo("/dev/zvol/vm1");
        assertThat(at(d, "/domain/devices/disk[target/@dev='vdb']/driver/@discard")).isEqualTo("ignore");
        assertThat(all(d, "/domain/devices/disk[target/@dev='vdb']/readonly")).hasSize(1);
        assertThat(at(d, "/domain/devices/controller[@type='sata']/@index")).isEqualTo("1");
        assertThat(at(d, "/domain/devices/controller[@type='sata']/address/@slot")).isEqualTo("0x06");
        assertThat(at(d, "/domain/devices/disk[target/@dev='sda']/@device")).isEqualTo("disk");
        assertThat(at(d, "/domain/devices/disk[target/@dev='sda']/address/@unit")).isEqualTo("0");
        assertThat(at(d, "/domain/devices/disk[target/@dev='sdb']/@device")).isEqualTo("cdrom");
        assertThat(at(d, "/domain/devices/disk[target/@dev='sdb']/address/@controller")).isEqualTo("1");
        assertThat(at(d, "/domain/devices/disk[target/@dev='sdb']/address/@unit")).isEqualTo("1");
        assertThat(at(d, "/domain/devices/rng/backend/@model")).isEqualTo("builtin");
        assertThat(at(d, "/domain/devices/rng/address/@slot")).isEqualTo("0x07");
        assertThat(at(d, "/domain/devices/serial[target/@port='1']/@type")).isEqualTo("tcp");
        assertThat(at(d, "/domain/devices/serial[target/@port='1']/source/@service")).isEqualTo("4444");
        assertThat(at(d, "/domain/devices/serial[target/@port='1']/source/@host")).isEqualTo("127.0.0.1");
        assertThat(at(d, "/domain/devices/serial[target/@port='2']/source/@path")).isEqualTo("/dev/ttyS5");
        assertThat(all(d, "/domain/devices/serial[target/@port='0']")).isEmpty();
        assertThat(all(d, "/domain/devices/interface")).isEmpty();
        assertThat(all(d, "/domain/*[local-name()='override']")).as("no NIC, nothing to override").isEmpty();
    }

    @ParameterizedTest
    @CsvSource({"'-c 4', 4, ''", "'-c 4,sockets=2,cores=2', 4, 2", "'-c sockets=2,threads=2', 4, 2"})
    void aTopologyOnlyWhenItMultipliesToTheVcpuCount(String cpu, String vcpus, String sockets) throws Exception {
        Document d = domain(cpu + " -s 0,hostbridge" + BOOT + "vm");
        assertThat(at(d, "/domain/vcpu")).isEqualTo(vcpus);
        assertThat(at(d, "/domain/cpu/topology/@sockets")).isEqualTo(sockets);
    }

    @Test
    void bootRomAndVarsAreTheLoaderAndNvram() throws Exception {
        Document d = domain("-s 0,hostbridge -s 31,lpc -l bootrom,/usr/share/OVMF/OVMF_CODE.fd,"
                + "/vm/OVMF_VARS.fd vm");
        assertThat(at(d, "/domain/os/loader")).isEqualTo("/usr/share/OVMF/OVMF_CODE.fd");
        assertThat(at(d, "/domain/os/loader/@type")).isEqualTo("pflash");
        assertThat(at(d, "/domain/os/nvram")).isEqualTo("/vm/OVMF_VARS.fd");
        assertThat(at(d, "/domain/os/kernel")).isEmpty();
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "--emit-libvirt-xml --dry-run|1|--emit-libvirt-xml starts nothing; it cannot be combined with --dry-run",
            "--emit-libvirt-xml --show-features|1|--emit-libvirt-xml starts nothing; it cannot be combined with "
                    + "--show-features",
            "--libvirt-type kvm|1|--libvirt-type kvm needs --emit-libvirt-xml",
            "--emit-libvirt-xml --libvirt-type xen|1|--libvirt-type xen: expected qemu (TCG) or kvm",
            "--emit-libvirt-xml -G 1234|4|-G 1234: the gdb stub has no libvirt domain element",
            "--emit-libvirt-xml -s 5,e1000|4|pci slot 0:5:0: device \"e1000\" has no QEMU equivalent"})
    void optionErrorsNameTheOptionAndPrintNoXml(String options, int exitCode, String message) {
        Run r = bhyve(options + " -s 0,hostbridge -s 2,virtio-net,tap0" + BOOT + "vm");
        assertThat(r.rc()).as("stderr:\n%s", r.err()).isEqualTo(exitCode);
        assertThat(r.out()).isEmpty();
        assertThat(r.err()).contains("bhyve: " + message);
    }

    @Test
    void aLibvirtDomainIsForALinuxHostAlsoWhenTheWrapperRunsOnFreeBsd() throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int rc = BhyveMain.run(Arrays.asList(("--emit-libvirt-xml -s 0,hostbridge -s 2,virtio-net,tap0" + BOOT + "vm")
                .trim().split("\\s+")), new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8), "FreeBSD");
        assertThat(rc).isZero();
        assertThat(at(parse(out.toString(StandardCharsets.UTF_8)), "/domain/devices/interface/@type"))
                .isEqualTo("vhostuser");
    }

    @ParameterizedTest
    @CsvSource({"0, a", "25, z", "26, aa", "27, ab", "701, zz", "702, aaa"})
    void driveNamesCountAsLibvirtDoes(int index, String letters) {
        assertThat(LibvirtDomain.driveLetters(index)).isEqualTo(letters);
    }
}
