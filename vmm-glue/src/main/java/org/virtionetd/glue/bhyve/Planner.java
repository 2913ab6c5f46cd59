package org.virtionetd.glue.bhyve;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SortedSet;
import java.util.TreeSet;

/**
 * Turns a parsed bhyve command line into a {@link Plan} for this host's VMM.
 *
 * <p>On Linux the VMM is QEMU: machine q35 (its host bridge is at 0:0.0 and its LPC bridge at 0:31.0, where bhyve
 * users put hostbridge and lpc), TCG ({@code -accel tcg -cpu max}: KVM does not boot normal guests on the machines
 * this was made on), guest RAM in a shared memfd (a vhost-user back-end maps it), every virtio-net slot a
 * vhost-user NIC with {@code vectors=0} (QEMU 7.2 crashes starting a vhost-user NIC with MSI-X under TCG): a tap
 * NIC on its own virtio-netd; the VM's VALE NICs ({@code valeNAME:PORT}, bhyve(8) "-s 2,virtio-net,vale0:1") all on
 * ONE virtio-netd (repeated {@code --device}), because a VALE switch is virtio-netd's in-process switch and exists
 * only inside one process: two NICs of the VM on vale0 meet there, but two wrapper invocations (two VMs) each have
 * their own vale0 and do not share it. bhyve's other devices map to their QEMU equivalents at the same slot and function; a device
 * without one is refused with the slot named.
 *
 * <p>On FreeBSD the VMM is bhyve itself, given the same arguments (see {@link #forFreeBsd}).
 */
public final class Planner {
    /** VTNET_MIN_MTU (ETHERMIN) and VTNET_MAX_MTU of pci_virtio_net.c. */
    static final int BHYVE_MIN_MTU = 46;
    static final int BHYVE_MAX_MTU = 65535;
    /** virtio 1.2, 5.1.4.1: the device MUST set mtu between 68 and 65535 (virtio-netd follows the spec). */
    static final int VIRTIO_MIN_MTU = 68;
    static final Path DEFAULT_RUN_ROOT = Path.of("/run/virtio-netd-bhyve");
    static final String MAPPED = "hostbridge, amd_hostbridge, lpc, virtio-net, virtio-blk, virtio-rnd, ahci, ahci-hd, "
            + "ahci-cd";
    private static final int QEMU_AHCI_PORTS = 6;
    private static final int UNIX_PATH_MAX = 107;

    private final BhyveCommandLine.Parsed parsed;
    private final BhyveConfig config;
    private final WrapperOptions options;
    private final List<String> virtioNetd;
    private final List<String> notes = new ArrayList<>();

    private Planner(BhyveCommandLine.Parsed parsed, List<String> virtioNetd) {
        this.parsed = parsed;
        this.config = parsed.config();
        this.options = parsed.options();
        this.virtioNetd = List.copyOf(virtioNetd);
    }

    /**
     * The plan on Linux. {@code virtioNetd} is how to start the device, e.g.
     * {@code [/usr/lib/jvm/.../bin/java, -jar, /path/virtio-netd.jar]}.
     */
    public static Plan forLinux(BhyveCommandLine.Parsed parsed, List<String> virtioNetd) throws BhyveUsageException {
        return new Planner(parsed, virtioNetd).linux();
    }

    /**
     * The plan on FreeBSD: bhyve itself with the same bhyve arguments. bhyve has no vhost-user front-end, so its
     * own virtio-net serves the NICs until one exists (docs/freebsd.md says what it must forward); the network
     * semantics checked here are bhyve's own there.
     */
    public static Plan forFreeBsd(BhyveCommandLine.Parsed parsed) throws BhyveUsageException {
        WrapperOptions o = parsed.options();
        if (o.kernel() != null || o.initrd() != null || o.append() != null) {
            throw new BhyveUsageException(BhyveUsageException.USAGE,
                    "--kernel, --initrd and --append are QEMU-only (Linux); on FreeBSD load the guest with "
                            + "bhyveload(8) or -l bootrom,FIRMWARE");
        }
        if (o.showFeatures()) {
            throw new BhyveUsageException(BhyveUsageException.USAGE,
                    "--show-features needs virtio-netd serving the NICs; on FreeBSD bhyve's own virtio-net does "
                            + "until bhyve has a vhost-user front-end (docs/freebsd.md)");
        }
        List<String> vmm = new ArrayList<>(List.of("/usr/sbin/bhyve"));
        vmm.addAll(parsed.bhyveArgs());
        return new Plan(List.of(), List.of(), vmm, List.of(), List.of("FreeBSD: bhyve runs the VM and its own "
                + "virtio-net serves the NICs; virtio-netd attaches once bhyve has a vhost-user front-end "
                + "(docs/freebsd.md)"));
    }

    private static BhyveUsageException refuse(String message) {
        return new BhyveUsageException(BhyveUsageException.CONFIG, message);
    }

    private Plan linux() throws BhyveUsageException {
        String vm = parsed.vmName();
        long memory;
        CpuTopology cpu;
        try {
            memory = MemorySize.parse(config.get("memory.size"));
        } catch (IllegalArgumentException e) {
            throw new BhyveUsageException(BhyveUsageException.EX_USAGE, e.getMessage());
        }
        try {
            cpu = CpuTopology.of(config);
        } catch (IllegalArgumentException e) {
            throw refuse(e.getMessage());
        }
        refuseUnmappedOptions();
        Path runDir = options.runDir() != null ? options.runDir()
                : DEFAULT_RUN_ROOT.resolve(vm.replaceAll("[^A-Za-z0-9._-]", "_"));
        String size = MemorySize.toQemuMiB(memory);

        List<String> q = new ArrayList<>();
        q.add(options.qemu());
        q.addAll(List.of("-name", "guest=" + escape(vm)));
        q.addAll(List.of("-machine", "q35,memory-backend=mem"
                + (config.getBool("memory.guest_in_core", false) ? ",dump-guest-core=on" : "")));
        q.addAll(List.of("-accel", "tcg", "-cpu", "max"));
        q.addAll(List.of("-smp", "cpus=" + cpu.cpus() + ",sockets=" + cpu.sockets() + ",cores=" + cpu.cores()
                + ",threads=" + cpu.threads()));
        q.addAll(List.of("-m", size));
        q.addAll(List.of("-object", "memory-backend-memfd,id=mem,size=" + size + ",share=on"));
        // -nodefaults: no default NIC, VGA, serial or monitor; the guest gets only what the bhyve line names.
        // -no-reboot: bhyve exits when the guest reboots (the caller, e.g. vm-bhyve, restarts it).
        q.addAll(List.of("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"));
        // bhyve's RTC keeps local time unless -u (rtc.use_localtime=false).
        q.addAll(List.of("-rtc", "base=" + (config.getBool("rtc.use_localtime", true) ? "localtime" : "utc")));
        if (config.has("uuid")) {
            q.addAll(List.of("-uuid", config.get("uuid")));
        }
        if (config.getBool("memory.wired", false)) {
            q.addAll(List.of("-overcommit", "mem-lock=on")); // -S: guest memory cannot be swapped
        }
        if (config.has("gdb.port")) {
            String addr = config.get("gdb.address", "127.0.0.1");
            q.addAll(List.of("-gdb", "tcp:" + addr + ":" + config.get("gdb.port")));
            if (config.getBool("gdb.wait", false)) {
                q.add("-S");
            }
        }
        for (Map.Entry<String, String> e : config.asMap().entrySet()) {
            if (e.getKey().startsWith("fwcfg.")) {
                q.addAll(List.of("-fw_cfg", e.getKey().substring("fwcfg.".length())));
            }
        }
        serialPorts(q);
        boot(q);

        List<List<String>> setup = new ArrayList<>();
        List<List<String>> teardown = new ArrayList<>();
        List<Plan.Nic> nics = new ArrayList<>();
        SortedSet<PciAddress> functions = config.pciFunctions();
        Set<Integer> multifunctionSlots = multifunctionSlots(functions);
        for (PciAddress a : functions) {
            Map<String, String> dev = config.node(a.node());
            String kind = dev.get("device");
            String addr = String.format("%x.%x", a.slot(), a.func())
                    + (a.func() == 0 && multifunctionSlots.contains(a.slot()) ? ",multifunction=on" : "");
            if (a.bus() != 0) {
                throw refuse("pci slot " + a + ": device \"" + kind + "\" is on bus " + a.bus()
                        + "; this wrapper puts bhyve's slots on QEMU's bus 0 only");
            }
            boolean bridgeSlot = kind.equals("hostbridge") || kind.equals("amd_hostbridge") || kind.equals("lpc");
            if (a.slot() == 0 && !kind.equals("hostbridge") && !kind.equals("amd_hostbridge")) {
                throw refuse("pci slot " + a + ": device \"" + kind + "\" cannot be at slot 0 under QEMU: the q35 "
                        + "host bridge is there (bhyve's hostbridge belongs at slot 0)");
            }
            if (a.slot() == 31 && !kind.equals("lpc")) {
                throw refuse("pci slot " + a + ": device \"" + kind + "\" cannot be at slot 31 under QEMU: the q35 "
                        + "LPC bridge, SATA and SMBus functions are there; move it to a free slot");
            }
            switch (kind) {
                case "hostbridge":
                case "amd_hostbridge":
                    if (a.slot() != 0) {
                        notes.add("pci slot " + a + ": " + kind + " is QEMU's q35 host bridge at 0:0:0");
                    }
                    break;
                case "lpc":
                    if (a.slot() != 31) {
                        notes.add("pci slot " + a + ": lpc is QEMU's q35 ICH9 LPC bridge at 0:31:0");
                    }
                    break;
                case "virtio-net":
                    nics.add(nic(a, dev, runDir, setup, teardown));
                    Plan.Nic n = nics.get(nics.size() - 1);
                    String id = "net-" + a.slot() + "-" + a.func();
                    q.addAll(List.of("-chardev", "socket,id=chr-" + id + ",path=" + escape(n.socket().toString())));
                    q.addAll(List.of("-netdev", "vhost-user,id=" + id + ",chardev=chr-" + id + ",queues=1"));
                    q.addAll(List.of("-device", "virtio-net-pci,netdev=" + id + ",mac=" + n.mac() + ",vectors=0"
                            + (n.mtu() != null ? ",host_mtu=" + n.mtu() : "") + ",addr=" + addr));
                    break;
                case "virtio-blk":
                    virtioBlk(a, dev, addr, q);
                    break;
                case "ahci":
                    ahci(a, dev, addr, q);
                    break;
                case "virtio-rnd":
                    q.addAll(List.of("-device", "virtio-rng-pci,addr=" + addr));
                    break;
                default:
                    throw refuse("pci slot " + a + ": device \"" + kind + "\" has no QEMU equivalent in this wrapper "
                            + "(it maps " + MAPPED + ")");
            }
            if (bridgeSlot) {
                refuseOptions(a, kind, dev, Set.of("device"));
            }
        }
        return new Plan(setup, valeDaemon(nics, runDir), q, teardown, notes);
    }

    /**
     * The slots with more than function 0: function 0 there must say multifunction=on (QEMU and libvirt alike), and
     * must exist.
     */
    static Set<Integer> multifunctionSlots(SortedSet<PciAddress> functions) throws BhyveUsageException {
        Set<Integer> slots = new TreeSet<>();
        for (PciAddress a : functions) {
            if (a.func() != 0) {
                if (!functions.contains(new PciAddress(a.bus(), a.slot(), 0))) {
                    throw refuse("pci slot " + a + ": QEMU needs a device at function 0 of slot " + a.slot()
                            + " before function " + a.func());
                }
                slots.add(a.slot());
            }
        }
        return slots;
    }

    /** bhyve creates the COM ports of -l comN only with an lpc slot (pci_lpc.c); so does this wrapper. */
    static boolean hasLpc(BhyveConfig config) {
        return config.pciFunctions().stream().anyMatch(a -> "lpc".equals(config.get(a.node() + ".device")));
    }

    /**
     * The VALE NICs (planned with an empty command) get the one virtio-netd that holds their switches: one
     * {@code --device socket=S,backend=valeX:P,mac=M,control=C} each. --mtu is per process, so they must agree.
     */
    private List<Plan.Nic> valeDaemon(List<Plan.Nic> nics, Path runDir) throws BhyveUsageException {
        List<Plan.Nic> vale = nics.stream().filter(n -> n.tap() == null).toList();
        if (vale.isEmpty()) {
            return nics;
        }
        List<String> cmd = new ArrayList<>(virtioNetd);
        Integer mtu = vale.get(0).mtu();
        Set<String> ports = new TreeSet<>();
        Set<String> switches = new TreeSet<>();
        for (Plan.Nic n : vale) {
            if (!java.util.Objects.equals(n.mtu(), mtu)) {
                throw refuse("pci slot " + n.at() + ": mtu " + (n.mtu() == null ? "(none)" : n.mtu()) + " differs from "
                        + "pci slot " + vale.get(0).at() + "'s " + (mtu == null ? "(none)" : mtu) + "; the VALE NICs of "
                        + "a VM share one virtio-netd, whose --mtu applies to all of them");
            }
            if (!ports.add(n.backend())) {
                throw refuse("pci slot " + n.at() + ": VALE port " + n.backend() + " is used by another slot too");
            }
            switches.add(n.backend().substring(0, n.backend().indexOf(':')));
            for (Path p : List.of(n.socket(), n.control())) {
                if (p.toString().contains(",")) {
                    throw refuse("pci slot " + n.at() + ": path " + p + " has a ',' (virtio-netd's --device separates "
                            + "its options with commas); choose another --run-dir");
                }
            }
            cmd.addAll(List.of("--device", "socket=" + n.socket() + ",backend=" + n.backend() + ",mac=" + n.mac()
                    + ",control=" + n.control()));
        }
        if (mtu != null) {
            cmd.addAll(List.of("--mtu", mtu.toString()));
        }
        notes.add("VALE ports " + String.join(", ", ports) + " (switch" + (switches.size() > 1 ? "es " : " ")
                + String.join(", ", switches) + ") are served by one virtio-netd; its switches exist in that process "
                + "only, so another VM started by another wrapper invocation does not share them");
        List<String> shared = List.copyOf(cmd);
        Path log = runDir.resolve("vale.log");
        List<Plan.Nic> out = new ArrayList<>();
        for (Plan.Nic n : nics) {
            out.add(n.tap() != null ? n : new Plan.Nic(n.at(), n.backend(), null, false, n.mac(), n.mtu(), n.socket(),
                    n.control(), log, shared));
        }
        return out;
    }

    /** bhyve options that have no QEMU equivalent here: refused, not silently dropped. */
    private void refuseUnmappedOptions() throws BhyveUsageException {
        for (String k : config.asMap().keySet()) {
            if (k.startsWith("vcpu.pin.")) {
                throw refuse("-p " + k.substring("vcpu.pin.".length())
                        + ": vCPU pinning has no equivalent in this wrapper (QEMU has no per-vCPU host pinning option)");
            }
        }
        if (config.has("restore")) {
            throw refuse("-r " + config.get("restore") + ": bhyve checkpoints cannot be restored by QEMU");
        }
        if (config.has("lpc.tpm.type")) {
            throw refuse("-l tpm," + config.get("lpc.tpm.type") + ": no TPM mapping in this wrapper");
        }
        if (config.getBool("lpc.pc-testdev", false)) {
            throw refuse("-l pc-testdev: no mapping in this wrapper");
        }
        for (String flag : List.of("x86.vmexit_on_hlt", "x86.vmexit_on_pause", "x86.strictmsr", "x86.strictio",
                "x86.x2apic", "x86.mptable", "virtio_msix", "destroy_on_poweroff", "keyboard.layout")) {
            if (config.has(flag)) {
                notes.add(flag + "=" + config.get(flag) + ": no effect under QEMU/TCG");
            }
        }
    }

    /** -l comN,PATH: QEMU numbers -serial options COM1, COM2... in order, so gaps get "null". */
    private void serialPorts(List<String> q) throws BhyveUsageException {
        int highest = 0;
        for (int n = 1; n <= 4; n++) {
            if (config.has("lpc.com" + n + ".path")) {
                highest = n;
            }
        }
        if (highest > 0 && !hasLpc(config)) {
            notes.add("-l com" + highest + " without an lpc slot: bhyve creates no COM ports then, and neither does "
                    + "this wrapper (add -s 31,lpc)");
            return;
        }
        for (int n = 1; n <= highest; n++) {
            String path = config.get("lpc.com" + n + ".path");
            q.addAll(List.of("-serial", path == null ? "null" : serial("com" + n, path)));
        }
    }

    private static String serial(String port, String path) throws BhyveUsageException {
        if (path.equals("stdio")) {
            return "stdio";
        }
        if (path.startsWith("tcp=")) {
            return "tcp:" + path.substring(4) + ",server=on,wait=off";
        }
        if (path.startsWith("/dev/nmdm")) {
            throw refuse("-l " + port + "," + path + ": nmdm(4) null-modem devices exist only on FreeBSD; use "
                    + port + ",stdio or " + port + ",tcp=127.0.0.1:PORT");
        }
        if (path.startsWith("/dev/")) {
            return path; // a host tty
        }
        throw refuse("-l " + port + "," + path + ": expected stdio, tcp=HOST:PORT or a /dev tty");
    }

    /** bhyve boots a guest loaded by bhyveload/grub-bhyve, or a boot ROM; QEMU needs the ROM or a kernel. */
    private void boot(List<String> q) throws BhyveUsageException {
        String rom = config.get("lpc.bootrom");
        if (rom != null) {
            q.addAll(List.of("-drive", "if=pflash,format=raw,readonly=on,file=" + escape(rom)));
            if (config.has("lpc.bootvars")) {
                q.addAll(List.of("-drive", "if=pflash,format=raw,file=" + escape(config.get("lpc.bootvars"))));
            }
        }
        if (options.kernel() != null) {
            q.addAll(List.of("-kernel", options.kernel().toString()));
            if (options.initrd() != null) {
                q.addAll(List.of("-initrd", options.initrd().toString()));
            }
            if (options.append() != null) {
                q.addAll(List.of("-append", options.append()));
            }
        } else if (options.initrd() != null || options.append() != null) {
            throw new BhyveUsageException(BhyveUsageException.USAGE, "--initrd and --append need --kernel");
        }
        if (rom == null && options.kernel() == null) {
            throw new BhyveUsageException(BhyveUsageException.USAGE, "nothing to boot: bhyve runs what bhyveload(8) "
                    + "or grub-bhyve loaded, which QEMU cannot; give -l bootrom,FIRMWARE (UEFI, e.g. OVMF) or the "
                    + "wrapper's QEMU-only --kernel FILE [--initrd FILE] [--append STRING]");
        }
    }

    private Plan.Nic nic(PciAddress a, Map<String, String> dev, Path runDir, List<List<String>> setup,
                         List<List<String>> teardown) throws BhyveUsageException {
        String backend = dev.containsKey("type") ? dev.get("type") : dev.get("backend");
        String vale = backend == null ? null : valePort(a, backend, dev.get("backend"));
        String tap = backend == null || vale != null ? null : tapFor(a, backend, dev.get("backend"));
        refuseOptions(a, "virtio-net", dev, Set.of("device", "backend", "type", "mac", "mtu"));
        String mac;
        if (dev.containsKey("mac")) {
            try {
                mac = BhyveMac.format(BhyveMac.parse(dev.get("mac")));
            } catch (IllegalArgumentException e) {
                // bhyve prints "Invalid MAC ..." from net_parsemac, then fails the device's init (EINVAL).
                throw refuse(e.getMessage() + "\nDevice emulation initialization error: Invalid argument (pci slot "
                        + a + " virtio-net)");
            }
        } else {
            mac = BhyveMac.format(BhyveMac.generate(a.slot(), a.func(), parsed.vmName()));
        }
        Integer mtu = null;
        if (dev.containsKey("mtu")) {
            mtu = parseMtu(a, dev.get("mtu"));
        }
        boolean privateTap = false;
        if (tap == null && vale == null) {
            // bhyve permits a NIC without a backend: the guest sees the card, nothing it sends goes anywhere.
            // Here: a private tap the wrapper creates and never brings up.
            tap = privateTapName(a);
            privateTap = true;
            setup.add(List.of("ip", "tuntap", "add", "dev", tap, "mode", "tap"));
            teardown.add(List.of("ip", "link", "del", tap));
            notes.add("pci slot " + a + ": no backend: virtio-netd on private tap " + tap + ", left down (no link)");
        }
        String base = "net-" + a.slot() + "-" + a.func();
        Path socket = runDir.resolve(base + ".sock");
        Path control = runDir.resolve(base + ".ctl");
        Path log = runDir.resolve(base + ".log");
        if (socket.toString().length() > UNIX_PATH_MAX) {
            throw refuse("pci slot " + a + ": socket path " + socket + " is longer than " + UNIX_PATH_MAX
                    + " bytes; choose a shorter --run-dir");
        }
        if (vale != null) {
            return new Plan.Nic(a, vale, null, false, mac, mtu, socket, control, log, List.of()); // see valeDaemon
        }
        List<String> cmd = new ArrayList<>(virtioNetd);
        cmd.addAll(List.of("--socket", socket.toString(), "--backend", "tap:" + tap, "--mac", mac));
        if (mtu != null) {
            cmd.addAll(List.of("--mtu", mtu.toString()));
        }
        cmd.addAll(List.of("--control", control.toString()));
        return new Plan.Nic(a, "tap:" + tap, tap, privateTap, mac, mtu, socket, control, log, cmd);
    }

    /**
     * net_parsemtu (strtoul base 0, no sign, whole string) then VTNET_MIN_MTU..VTNET_MAX_MTU; bhyve fails the
     * device's init with EINVAL and prints no detail, so the message adds it.
     */
    private static int parseMtu(PciAddress a, String text) throws BhyveUsageException {
        String detail = null;
        long v = -1;
        if (text.isEmpty() || text.startsWith("-")) {
            detail = "mtu '" + text + "' is not a number";
        } else {
            try {
                if (text.startsWith("0x") || text.startsWith("0X")) {
                    v = Long.parseLong(text.substring(2), 16);
                } else if (text.length() > 1 && text.startsWith("0")) {
                    v = Long.parseLong(text.substring(1), 8);
                } else {
                    v = Long.parseLong(text.startsWith("+") ? text.substring(1) : text);
                }
            } catch (NumberFormatException e) {
                detail = "mtu '" + text + "' is not a number";
            }
        }
        if (detail == null && (v < BHYVE_MIN_MTU || v > BHYVE_MAX_MTU)) {
            detail = "mtu " + text + " is outside " + BHYVE_MIN_MTU + ".." + BHYVE_MAX_MTU;
        }
        if (detail != null) {
            throw refuse("Device emulation initialization error: Invalid argument (pci slot " + a + " virtio-net: "
                    + detail + ")");
        }
        if (v < VIRTIO_MIN_MTU) {
            throw refuse("pci slot " + a + ": mtu " + v + " is valid for bhyve (" + BHYVE_MIN_MTU + ".."
                    + BHYVE_MAX_MTU + ") but not for virtio-netd, which follows virtio 1.2 5.1.4.1 (68..65535)");
        }
        return (int) v;
    }

    /** bhyve's VALE port names: valeNAME:PORT (netmap(4): "vale" + switch name, ':' + port name). */
    private static final java.util.regex.Pattern VALE = java.util.regex.Pattern.compile(
            "vale[A-Za-z0-9_.-]{0,28}:[A-Za-z0-9_.-]{1,32}");

    /** The VALE port a backend names (served by virtio-netd's in-process switch of that name), or null. */
    private static String valePort(PciAddress a, String type, String name) throws BhyveUsageException {
        String v = name != null ? name : type;
        if (!type.startsWith("vale")) {
            return null;
        }
        if (!VALE.matcher(v).matches()) {
            throw refuse("pci slot " + a + ": backend '" + v + "' is not a VALE port valeNAME:PORT (switch and port "
                    + "names of letters, digits, '_', '.', '-'; the switch name at most 32 characters)");
        }
        return v;
    }

    /** netbe_init picks the backend whose prefix the name starts with: tap, vmnet, netmap, vale, netgraph, slirp. */
    private static String tapFor(PciAddress a, String type, String name) throws BhyveUsageException {
        String shown = name != null ? name : type;
        if (type.startsWith("tap") || type.startsWith("vmnet")) {
            String ifname = name != null ? name : type;
            if (ifname.isEmpty() || ifname.length() > 15 || !ifname.matches("[A-Za-z0-9_.-]+")) {
                throw refuse("pci slot " + a + ": backend '" + ifname + "' is not a Linux interface name (1..15 of "
                        + "letters, digits, '_', '.', '-')");
            }
            return ifname;
        }
        if (type.startsWith("netmap") || type.startsWith("vale")) {
            throw refuse("pci slot " + a + ": backend '" + shown + "' is a netmap port of a host interface; virtio-netd "
                    + "has no equivalent (use valeNAME:PORT for its in-process switch, or tapN or vmnetN)");
        }
        if (type.startsWith("netgraph") || type.startsWith("slirp")) {
            throw refuse("pci slot " + a + ": backend '" + shown + "' has no virtio-netd equivalent yet (use tapN or "
                    + "vmnetN)");
        }
        throw refuse("pci slot " + a + ": unknown backend '" + shown + "'");
    }

    /** vnl + 6 hex digits of MD5(vmname) + slot (2 hex) + function: 12 characters, stable across runs. */
    private String privateTapName(PciAddress a) {
        try {
            byte[] d = MessageDigest.getInstance("MD5").digest(parsed.vmName().getBytes(StandardCharsets.UTF_8));
            return "vnl" + HexFormat.of().formatHex(d, 0, 3) + String.format("%02x%d", a.slot(), a.func());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("MD5 is missing from this JVM", e);
        }
    }

    private static void refuseOptions(PciAddress a, String kind, Map<String, String> dev, Set<String> known)
            throws BhyveUsageException {
        for (String k : dev.keySet()) {
            if (!known.contains(k)) {
                throw refuse("pci slot " + a + ": " + kind + " option '" + k + "=" + dev.get(k)
                        + "' has no mapping in this wrapper (it knows " + String.join(", ", new TreeSet<>(known))
                        + ")");
            }
        }
    }

    /** blockif options of bhyve(8) that map onto QEMU drive and device properties. */
    private static final Set<String> BLOCK_OPTIONS = Set.of("path", "ro", "nocache", "direct", "sectorsize", "ser",
            "nodelete", "bootindex");

    private static void virtioBlk(PciAddress a, Map<String, String> dev, String addr, List<String> q)
            throws BhyveUsageException {
        Map<String, String> opts = new LinkedHashMap<>(dev);
        opts.remove("device");
        String id = "blk-" + a.slot() + "-" + a.func();
        String[] dd = block(a, "virtio-blk", opts, id);
        q.addAll(List.of("-drive", dd[0], "-device", "virtio-blk-pci,drive=" + id + dd[1] + ",addr=" + addr));
    }

    private static void ahci(PciAddress a, Map<String, String> dev, String addr, List<String> q)
            throws BhyveUsageException {
        String ctl = "sata-" + a.slot() + "-" + a.func();
        q.addAll(List.of("-device", "ahci,id=" + ctl + ",addr=" + addr));
        Map<Integer, Map<String, String>> ports = new java.util.TreeMap<>();
        for (Map.Entry<String, String> e : dev.entrySet()) {
            String[] p = e.getKey().split("\\.", 3);
            if (e.getKey().equals("device")) {
                continue;
            }
            if (p.length != 3 || !p[0].equals("port") || !p[1].matches("[0-9]+")) {
                throw refuse("pci slot " + a + ": ahci option '" + e.getKey() + "=" + e.getValue()
                        + "' has no mapping in this wrapper (ports are port.N.type and port.N.path)");
            }
            ports.computeIfAbsent(Integer.parseInt(p[1]), k -> new LinkedHashMap<>()).put(p[2], e.getValue());
        }
        if (ports.isEmpty()) {
            throw refuse("pci slot " + a + ": ahci has no port (ahci,hd:PATH or ahci-hd,PATH)");
        }
        for (Map.Entry<Integer, Map<String, String>> e : ports.entrySet()) {
            int port = e.getKey();
            Map<String, String> opts = new LinkedHashMap<>(e.getValue());
            String type = opts.remove("type");
            if (!"hd".equals(type) && !"cd".equals(type)) {
                throw refuse("pci slot " + a + ": ahci port " + port + " has type '" + type + "'; expected hd or cd");
            }
            if (port >= QEMU_AHCI_PORTS) {
                throw refuse("pci slot " + a + ": ahci port " + port + ": QEMU's ahci has ports 0.."
                        + (QEMU_AHCI_PORTS - 1));
            }
            String id = ctl + "-" + port;
            String[] dd = block(a, "ahci port " + port, opts, id);
            boolean cd = type.equals("cd");
            String drive = dd[0] + (cd ? ",media=cdrom" + (dd[0].contains("readonly=on") ? "" : ",readonly=on") : "");
            q.addAll(List.of("-drive", drive, "-device",
                    (cd ? "ide-cd" : "ide-hd") + ",drive=" + id + ",bus=" + ctl + "." + port + dd[1]));
        }
    }

    /** Returns {drive options, extra device properties} for bhyve's blockif options. */
    private static String[] block(PciAddress a, String what, Map<String, String> opts, String id)
            throws BhyveUsageException {
        for (String k : opts.keySet()) {
            if (!BLOCK_OPTIONS.contains(k)) {
                throw refuse("pci slot " + a + ": " + what + " option '" + k + "=" + opts.get(k)
                        + "' has no mapping in this wrapper (it knows " + String.join(", ", new TreeSet<>(BLOCK_OPTIONS))
                        + ")");
            }
        }
        String path = opts.get("path");
        if (path == null || path.isEmpty() || path.equals("true")) {
            throw refuse("pci slot " + a + ": " + what + " needs a backing file or device");
        }
        StringBuilder drive = new StringBuilder("file=").append(escape(path)).append(",if=none,id=").append(id)
                .append(",format=raw");
        if (opts.containsKey("ro")) {
            drive.append(",readonly=on");
        }
        boolean nocache = opts.containsKey("nocache");
        boolean direct = opts.containsKey("direct");
        // bhyve: nocache = O_DIRECT (bypass the host cache), direct = O_SYNC (write through).
        if (nocache && direct) {
            drive.append(",cache=directsync");
        } else if (nocache) {
            drive.append(",cache=none");
        } else if (direct) {
            drive.append(",cache=writethrough");
        }
        // bhyve passes guest TRIM/DELETE to the backing store unless nodelete.
        drive.append(opts.containsKey("nodelete") ? ",discard=ignore" : ",discard=unmap");
        StringBuilder device = new StringBuilder();
        if (opts.containsKey("sectorsize")) {
            String[] s = opts.get("sectorsize").split("/", -1);
            if (s.length > 2 || !s[0].matches("[0-9]+") || (s.length == 2 && !s[1].matches("[0-9]+"))) {
                throw refuse("pci slot " + a + ": " + what + " sectorsize '" + opts.get("sectorsize")
                        + "': expected LOGICAL or LOGICAL/PHYSICAL");
            }
            device.append(",logical_block_size=").append(s[0]).append(",physical_block_size=")
                    .append(s.length == 2 ? s[1] : s[0]);
        }
        if (opts.containsKey("ser")) {
            device.append(",serial=").append(escape(opts.get("ser")));
        }
        if (opts.containsKey("bootindex")) {
            device.append(",bootindex=").append(opts.get("bootindex"));
        }
        return new String[] {drive.toString(), device.toString()};
    }

    /** QEMU option values: a comma inside a value is written twice. */
    static String escape(String value) {
        return value.replace(",", ",,");
    }
}
