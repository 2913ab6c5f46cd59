package org.virtionetd.glue.bhyve;

import org.w3c.dom.Document;
import org.w3c.dom.Element;

import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.parsers.ParserConfigurationException;
import javax.xml.transform.OutputKeys;
import javax.xml.transform.Transformer;
import javax.xml.transform.TransformerException;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMSource;
import javax.xml.transform.stream.StreamResult;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The libvirt domain (libvirt's domain XML format, formatdomain.html) of a bhyve command line: what
 * {@code scripts/bhyve --emit-libvirt-xml} prints. It describes the machine of {@link Planner}'s QEMU plan, which
 * checks the command line first: q35, guest RAM in a shared memfd ({@code <memoryBacking>}: the vhost-user
 * back-end maps it, QEMU docs/interop/vhost-user.rst), every virtio-net slot an {@code <interface type='vhostuser'>}
 * on the socket of the virtio-netd serving it, libvirt's QEMU being the client: virtio-netd listens and must run
 * before the domain starts. Those commands go into {@code <metadata>} ({@link #METADATA_NS}). docs/libvirt.md has
 * the steps.
 *
 * <p>Mapped: hostbridge and lpc (q35's own), virtio-net, virtio-blk, virtio-rnd, ahci (hd and cd ports), com1..com4
 * (stdio becomes a pty: {@code virsh console}), -m, -c, -U, -S, -u, -l bootrom, the wrapper's
 * --kernel/--initrd/--append. Refused with the option named: -G (gdb) and -l fwcfg, which have no domain element.
 */
public final class LibvirtDomain {
    /** libvirt's QEMU namespace, for {@code <qemu:override>} (libvirt 8.2 and later). */
    static final String QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0";
    /** The namespace of the wrapper's {@code <metadata>} entry (libvirt keeps namespaced metadata as given). */
    public static final String METADATA_NS = "urn:virtio-netd:bhyve-wrapper";

    private final BhyveConfig config;
    private final WrapperOptions options;
    private final Plan plan;
    private final Document doc;
    private final Element devices;
    private final List<String> nicAliases = new ArrayList<>();
    private int virtioDisks;
    private int sataDisks;
    private int sataControllers;

    private LibvirtDomain(BhyveCommandLine.Parsed parsed, Plan plan, Document doc) {
        this.config = parsed.config();
        this.options = parsed.options();
        this.plan = plan;
        this.doc = doc;
        this.devices = doc.createElement("devices");
    }

    /** The domain of {@code parsed}, whose Linux plan (from {@link Planner#forLinux}) is {@code plan}. */
    public static Document document(BhyveCommandLine.Parsed parsed, Plan plan) throws BhyveUsageException {
        Document doc;
        try {
            DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
            f.setNamespaceAware(true);
            doc = f.newDocumentBuilder().newDocument();
        } catch (ParserConfigurationException e) {
            throw new IllegalStateException("the JDK's XML document builder is missing", e);
        }
        new LibvirtDomain(parsed, plan, doc).build(parsed.vmName());
        return doc;
    }

    /** {@link #document} as text, indented, without an XML declaration (as {@code virsh dumpxml} prints it). */
    public static String xml(BhyveCommandLine.Parsed parsed, Plan plan) throws BhyveUsageException {
        return text(document(parsed, plan));
    }

    static String text(Document doc) {
        try {
            TransformerFactory tf = TransformerFactory.newInstance();
            tf.setAttribute(XMLConstants.ACCESS_EXTERNAL_DTD, "");
            tf.setAttribute(XMLConstants.ACCESS_EXTERNAL_STYLESHEET, "");
            Transformer t = tf.newTransformer();
            t.setOutputProperty(OutputKeys.OMIT_XML_DECLARATION, "yes");
            t.setOutputProperty(OutputKeys.INDENT, "yes");
            t.setOutputProperty("{http://xml.apache.org/xslt}indent-amount", "2");
            StringWriter w = new StringWriter();
            t.transform(new DOMSource(doc), new StreamResult(w));
            return w.toString();
        } catch (TransformerException e) {
            throw new IllegalStateException("cannot serialize the domain XML: " + e.getMessage(), e);
        }
    }

    private void build(String name) throws BhyveUsageException {
        refuseUnmapped();
        String type = options.libvirtType();
        Element domain = doc.createElement("domain");
        doc.appendChild(domain);
        domain.setAttribute("type", type);
        domain.setAttributeNS(XMLConstants.XMLNS_ATTRIBUTE_NS_URI, "xmlns:qemu", QEMU_NS);
        add(domain, "name", name);
        if (config.has("uuid")) {
            add(domain, "uuid", config.get("uuid"));
        }
        metadata(add(domain, "metadata"));
        long mib = MemorySize.toMiB(MemorySize.parse(config.get("memory.size")));
        Element memory = add(domain, "memory", Long.toString(mib), "unit", "MiB");
        if (config.getBool("memory.guest_in_core", false)) {
            memory.setAttribute("dumpCore", "on");
        }
        Element backing = add(domain, "memoryBacking");
        add(backing, "source", null, "type", "memfd");
        add(backing, "access", null, "mode", "shared");
        if (config.getBool("memory.wired", false)) {
            add(backing, "locked");
        }
        CpuTopology cpu = CpuTopology.of(config);
        add(domain, "vcpu", Integer.toString(cpu.cpus()), "placement", "static");
        os(add(domain, "os"));
        Element features = add(domain, "features");
        add(features, "acpi");
        add(features, "apic");
        // mode maximum is QEMU's -cpu max, as the QEMU plan. libvirt refuses a topology whose sockets x dies x
        // cores x threads is not the vCPU count; bhyve's -c N alone means N vCPUs on a 1x1x1 topology, so then
        // libvirt's own (N sockets) stands in.
        Element cpuElement = add(domain, "cpu", null, "mode", "maximum", "check", "none");
        if ((long) cpu.sockets() * cpu.cores() * cpu.threads() == cpu.cpus()) {
            add(cpuElement, "topology", null, "sockets", Integer.toString(cpu.sockets()), "dies", "1", "cores",
                    Integer.toString(cpu.cores()), "threads", Integer.toString(cpu.threads()));
        }
        add(domain, "clock", null, "offset", config.getBool("rtc.use_localtime", true) ? "localtime" : "utc");
        // bhyve exits when the guest powers off, reboots or crashes (vm-bhyve restarts it): libvirt destroys it.
        for (String event : List.of("on_poweroff", "on_reboot", "on_crash")) {
            add(domain, event, "destroy");
        }
        domain.appendChild(devices);
        if (!options.qemu().equals(WrapperOptions.DEFAULT_QEMU)) {
            add(devices, "emulator", options.qemu());
        }
        pciDevices();
        serialPorts();
        // Only what the bhyve line names: libvirt's default USB controller and balloon would add PCI devices.
        add(devices, "controller", null, "type", "usb", "model", "none");
        add(devices, "memballoon", null, "model", "none");
        if (type.equals("qemu") && !nicAliases.isEmpty()) {
            vectorsOff(add(domain, "qemu:override"));
        }
    }

    /** bhyve options whose QEMU mapping has no libvirt domain element. */
    private void refuseUnmapped() throws BhyveUsageException {
        if (config.has("gdb.port")) {
            throw refuse("-G " + config.get("gdb.port") + ": the gdb stub has no libvirt domain element; leave it "
                    + "out of --emit-libvirt-xml (virsh qemu-monitor-command NAME --hmp gdbserver starts one)");
        }
        for (String k : config.asMap().keySet()) {
            if (k.startsWith("fwcfg.")) {
                throw refuse("-l fwcfg," + k.substring("fwcfg.".length()) + ": no mapping in --emit-libvirt-xml");
            }
        }
    }

    /**
     * The shell lines to run before the domain starts: the socket directories, the wrapper's setup (private taps),
     * then each virtio-netd in the background with its output in its log.
     */
    public static List<String> firstSteps(Plan plan) {
        List<String> out = new ArrayList<>();
        plan.nics().stream().map(n -> n.socket().toAbsolutePath().getParent()).distinct()
                .forEach(dir -> out.add(Plan.shellLine(List.of("mkdir", "-p", dir.toString()))));
        plan.setup().forEach(c -> out.add(Plan.shellLine(c)));
        for (Plan.Daemon d : plan.daemons()) {
            out.add(Plan.shellLine(d.command()) + " >" + Plan.shellLine(List.of(d.log().toString())) + " 2>&1 &");
        }
        return out;
    }

    /** What must run before the domain starts ({@link #firstSteps}), and what to undo after it ends. */
    private void metadata(Element metadata) {
        Element vnd = doc.createElementNS(METADATA_NS, "vnd:virtio-netd");
        metadata.appendChild(vnd);
        for (String line : firstSteps(plan)) {
            vnd.appendChild(text(doc.createElementNS(METADATA_NS, "vnd:run"), line));
        }
        for (List<String> c : plan.teardown()) {
            vnd.appendChild(text(doc.createElementNS(METADATA_NS, "vnd:teardown"), Plan.shellLine(c)));
        }
    }

    private void os(Element os) {
        add(os, "type", "hvm", "arch", "x86_64", "machine", "q35");
        String rom = config.get("lpc.bootrom");
        if (rom != null) {
            add(os, "loader", rom, "readonly", "yes", "type", "pflash");
            if (config.has("lpc.bootvars")) {
                add(os, "nvram", config.get("lpc.bootvars"));
            }
        }
        // Planner has checked that something boots and that --initrd/--append come with --kernel.
        if (options.kernel() != null) {
            add(os, "kernel", options.kernel().toAbsolutePath().toString());
            if (options.initrd() != null) {
                add(os, "initrd", options.initrd().toAbsolutePath().toString());
            }
            if (options.append() != null) {
                add(os, "cmdline", options.append());
            }
        }
    }

    private void pciDevices() throws BhyveUsageException {
        Set<Integer> multifunction = Planner.multifunctionSlots(config.pciFunctions());
        for (PciAddress a : config.pciFunctions()) {
            Map<String, String> dev = config.node(a.node());
            switch (dev.get("device")) {
                case "hostbridge", "amd_hostbridge", "lpc" -> {
                    // q35's host bridge (0:0:0) and ICH9 LPC bridge (0:31:0), as in the QEMU plan
                }
                case "virtio-net" -> nic(a, multifunction);
                case "virtio-blk" -> {
                    Element disk = disk(dev, "disk", "vd" + driveLetters(virtioDisks++), "virtio");
                    pciAddress(disk, a, multifunction);
                }
                case "virtio-rnd" -> {
                    Element rng = add(devices, "rng", null, "model", "virtio");
                    add(rng, "backend", null, "model", "builtin"); // QEMU's default for virtio-rng-pci
                    pciAddress(rng, a, multifunction);
                }
                case "ahci" -> ahci(a, dev, multifunction);
                default -> throw refuse("pci slot " + a + ": device \"" + dev.get("device") + "\" has no libvirt "
                        + "mapping in this wrapper");
            }
        }
    }

    private void nic(PciAddress a, Set<Integer> multifunction) {
        Plan.Nic n = plan.nics().stream().filter(x -> x.at().equals(a)).findFirst()
                .orElseThrow(() -> new IllegalStateException("no planned NIC at pci slot " + a));
        Element nic = add(devices, "interface", null, "type", "vhostuser");
        add(nic, "mac", null, "address", n.mac());
        Element source = add(nic, "source", null, "type", "unix", "path", socket(n).toString(), "mode", "client");
        // Like reconnect=1 on QEMU's chardev (README): a restarted virtio-netd is picked up again.
        add(source, "reconnect", null, "enabled", "yes", "timeout", "1");
        add(nic, "model", null, "type", "virtio");
        if (n.mtu() != null) {
            add(nic, "mtu", null, "size", n.mtu().toString()); // host_mtu: VIRTIO_NET_F_MTU
        }
        // bhyve's virtio-net has one queue pair (no <driver queues=...>). A user alias (libvirt wants "ua-")
        // names the device for <qemu:override>.
        String alias = "ua-net-" + a.slot() + "-" + a.func();
        add(nic, "alias", null, "name", alias);
        nicAliases.add(alias);
        add(nic, "rom", null, "enabled", "no"); // bhyve's virtio-net has no option ROM either
        pciAddress(nic, a, multifunction);
    }

    /**
     * Under TCG, QEMU 7.2 crashes starting a vhost-user NIC with MSI-X, so the QEMU plan says vectors=0; libvirt
     * has no attribute for it, only the override of a device property.
     */
    private void vectorsOff(Element override) {
        for (String alias : nicAliases) {
            Element device = add(override, "qemu:device", null, "alias", alias);
            add(add(device, "qemu:frontend"), "qemu:property", null, "name", "vectors", "type", "unsigned",
                    "value", "0");
        }
    }

    /** The blockif options of a virtio-blk slot or an ahci port (Planner.block has their QEMU meaning). */
    private Element disk(Map<String, String> opts, String device, String target, String bus) {
        String path = opts.get("path");
        boolean blockDevice = path.startsWith("/dev/");
        Element disk = add(devices, "disk", null, "type", blockDevice ? "block" : "file", "device", device);
        Element driver = add(disk, "driver", null, "name", "qemu", "type", "raw");
        boolean nocache = opts.containsKey("nocache");
        boolean direct = opts.containsKey("direct");
        if (nocache || direct) {
            driver.setAttribute("cache", nocache && direct ? "directsync" : nocache ? "none" : "writethrough");
        }
        driver.setAttribute("discard", opts.containsKey("nodelete") ? "ignore" : "unmap");
        add(disk, "source", null, blockDevice ? "dev" : "file", Path.of(path).toAbsolutePath().toString());
        add(disk, "target", null, "dev", target, "bus", bus);
        if (opts.containsKey("sectorsize")) {
            String[] s = opts.get("sectorsize").split("/", -1);
            add(disk, "blockio", null, "logical_block_size", s[0], "physical_block_size", s.length == 2 ? s[1] : s[0]);
        }
        if (opts.containsKey("ser")) {
            add(disk, "serial", opts.get("ser"));
        }
        if (opts.containsKey("bootindex")) {
            add(disk, "boot", null, "order", opts.get("bootindex"));
        }
        if (opts.containsKey("ro") || device.equals("cdrom")) {
            add(disk, "readonly");
        }
        return disk;
    }

    /** An ahci slot: a SATA controller there (q35's own is index 0, at 0:31:2), one disk per port. */
    private void ahci(PciAddress a, Map<String, String> dev, Set<Integer> multifunction) {
        int index = ++sataControllers;
        pciAddress(add(devices, "controller", null, "type", "sata", "index", Integer.toString(index)), a,
                multifunction);
        Map<Integer, Map<String, String>> ports = new TreeMap<>();
        dev.forEach((k, v) -> {
            String[] p = k.split("\\.", 3);
            if (p.length == 3 && p[0].equals("port")) { // Planner has refused every other key
                ports.computeIfAbsent(Integer.parseInt(p[1]), x -> new TreeMap<>()).put(p[2], v);
            }
        });
        for (Map.Entry<Integer, Map<String, String>> e : ports.entrySet()) {
            boolean cd = "cd".equals(e.getValue().get("type"));
            Element disk = disk(e.getValue(), cd ? "cdrom" : "disk", "sd" + driveLetters(sataDisks++), "sata");
            add(disk, "address", null, "type", "drive", "controller", Integer.toString(index), "bus", "0", "target",
                    "0", "unit", e.getKey().toString());
        }
    }

    /** -l comN: libvirt's isa-serial port N-1; stdio becomes a pty (libvirtd owns QEMU's stdio). */
    private void serialPorts() {
        if (!Planner.hasLpc(config)) {
            return;
        }
        for (int n = 1; n <= 4; n++) {
            String path = config.get("lpc.com" + n + ".path");
            if (path == null) {
                continue;
            }
            Element serial;
            if (path.equals("stdio")) {
                serial = add(devices, "serial", null, "type", "pty");
            } else if (path.startsWith("tcp=")) {
                String hostPort = path.substring(4);
                int colon = hostPort.lastIndexOf(':');
                serial = add(devices, "serial", null, "type", "tcp");
                add(serial, "source", null, "mode", "bind", "host",
                        hostPort.substring(0, colon).replaceAll("^\\[|\\]$", ""), "service",
                        hostPort.substring(colon + 1));
                add(serial, "protocol", null, "type", "raw");
            } else {
                serial = add(devices, "serial", null, "type", "dev"); // a /dev tty (Planner refused the rest)
                add(serial, "source", null, "path", path);
            }
            Element target = add(serial, "target", null, "type", "isa-serial", "port", Integer.toString(n - 1));
            add(target, "model", null, "name", "isa-serial");
        }
    }

    private void pciAddress(Element parent, PciAddress a, Set<Integer> multifunction) {
        Element address = add(parent, "address", null, "type", "pci", "domain", "0x0000", "bus",
                String.format("0x%02x", a.bus()), "slot", String.format("0x%02x", a.slot()), "function",
                String.format("0x%x", a.func()));
        if (a.func() == 0 && multifunction.contains(a.slot())) {
            address.setAttribute("multifunction", "on");
        }
    }

    /** Drive names as libvirt counts them: a..z, aa..zz, ... */
    static String driveLetters(int index) {
        StringBuilder s = new StringBuilder();
        for (int i = index + 1; i > 0; i = (i - 1) / 26) {
            s.insert(0, (char) ('a' + (i - 1) % 26));
        }
        return s.toString();
    }

    private Path socket(Plan.Nic n) {
        return n.socket().toAbsolutePath();
    }

    /** A child element with optional text and attributes (name, value, ...); "qemu:" names are in QEMU_NS. */
    private Element add(Element parent, String name, String text, String... attributes) {
        Element e = name.startsWith("qemu:") ? doc.createElementNS(QEMU_NS, name) : doc.createElement(name);
        for (int i = 0; i < attributes.length; i += 2) {
            e.setAttribute(attributes[i], attributes[i + 1]);
        }
        if (text != null) {
            text(e, text);
        }
        parent.appendChild(e);
        return e;
    }

    private Element add(Element parent, String name) {
        return add(parent, name, null);
    }

    private Element text(Element e, String text) {
        e.appendChild(doc.createTextNode(text));
        return e;
    }

    private static BhyveUsageException refuse(String message) {
        return new BhyveUsageException(BhyveUsageException.CONFIG, message);
    }
}
