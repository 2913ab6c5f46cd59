package org.virtionetd.glue.bhyve;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Parses a bhyve(8) command line into bhyve's configuration tree (bhyve_config(5)) the way bhyve does: getopt(3)
 * with bhyve's option string (flags may be grouped, {@code -AHP}; an argument may be attached, {@code -c2}; options
 * stop at the first operand), then exactly one operand, the VM name, unless {@code -o name=} gave it.
 *
 * <p>Errors carry bhyve's message and exit code: {@code Invalid PCI slot info field "..."},
 * {@code pci slot B:S:F: unknown device "..."}, {@code pci slot B:S:F already occupied!} (exit 4),
 * {@code invalid configuration option '...'}, {@code invalid lpc device configuration '...'},
 * {@code invalid cpu topology '...'} (exit 64), usage errors (exit 1).
 */
public final class BhyveCommandLine {
    /** bhyve's getopt string on amd64 (bhyverun_machdep.c), with -r (snapshot builds). */
    static final String OPTSTRING = "aehuwxACDHIPSWYk:f:o:p:G:c:s:m:l:K:U:r:";

    /** Every PCI emulation bhyve on amd64 knows (pci_devemu_set), so unknown names get bhyve's own error. */
    static final Set<String> BHYVE_DEVICES = Set.of("ahci", "ahci-cd", "ahci-hd", "amd_hostbridge", "dummy", "e1000",
            "fbuf", "hda", "hostbridge", "lpc", "nvme", "passthru", "uart", "virtio-9p", "virtio-blk",
            "virtio-console", "virtio-input", "virtio-net", "virtio-rnd", "virtio-scsi", "xhci");

    /** The LPC devices of -l (pci_lpc.c): com1..com4, bootrom, fwcfg, pc-testdev, tpm. */
    static final Set<String> LPC_DEVICES = Set.of("com1", "com2", "com3", "com4", "bootrom", "fwcfg", "pc-testdev",
            "tpm");

    /** The result: bhyve's configuration, the wrapper's options, the bhyve arguments alone (for bhyve itself). */
    public record Parsed(BhyveConfig config, WrapperOptions options, List<String> bhyveArgs, String vmName) {
    }

    private BhyveCommandLine() {
    }

    public static Parsed parse(List<String> args) throws BhyveUsageException {
        BhyveConfig config = BhyveConfig.withDefaults();
        List<String> bhyveArgs = new ArrayList<>();
        List<String> operands = new ArrayList<>();
        boolean dryRun = false;
        boolean showFeatures = false;
        boolean help = false;
        boolean emitLibvirtXml = false;
        String libvirtType = null;
        Path kernel = null;
        Path initrd = null;
        String append = null;
        Path runDir = null;
        String qemu = WrapperOptions.DEFAULT_QEMU;
        int wait = WrapperOptions.DEFAULT_WAIT_SECONDS;
        boolean optionsEnded = false;
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            // The wrapper's own --options may stand anywhere before a "--" (they cannot be bhyve's: bhyve has no
            // long options).
            if (a.startsWith("--") && a.length() > 2) {
                String name = a;
                String value = null;
                int eq = a.indexOf('=');
                if (eq > 0) {
                    name = a.substring(0, eq);
                    value = a.substring(eq + 1);
                }
                switch (name) {
                    case "--dry-run": dryRun = true; continue;
                    case "--show-features": showFeatures = true; continue;
                    case "--emit-libvirt-xml": emitLibvirtXml = true; continue;
                    case "--help": help = true; continue;
                    default:
                        break;
                }
                if (value == null) {
                    if (i + 1 >= args.size()) {
                        throw usage("option " + name + " needs a value");
                    }
                    value = args.get(++i);
                }
                switch (name) {
                    case "--kernel": kernel = Path.of(value); break;
                    case "--initrd": initrd = Path.of(value); break;
                    case "--append": append = value; break;
                    case "--run-dir": runDir = Path.of(value); break;
                    case "--qemu": qemu = value; break;
                    case "--libvirt-type":
                        if (!value.equals("qemu") && !value.equals("kvm")) {
                            throw usage("--libvirt-type " + value + ": expected qemu (TCG) or kvm");
                        }
                        libvirtType = value;
                        break;
                    case "--wait":
                        try {
                            wait = Integer.parseInt(value);
                        } catch (NumberFormatException e) {
                            wait = -1;
                        }
                        if (wait <= 0) {
                            throw usage("--wait " + value + " is not a positive number of seconds");
                        }
                        break;
                    default:
                        throw usage("unknown wrapper option " + name);
                }
                continue;
            }
            if (optionsEnded) {
                operands.add(a);
                bhyveArgs.add(a);
                continue;
            }
            if (a.equals("--")) {
                optionsEnded = true;
                bhyveArgs.add(a);
                continue;
            }
            if (!a.startsWith("-") || a.length() == 1) {
                optionsEnded = true; // BSD getopt does not permute: the first operand ends the options
                operands.add(a);
                bhyveArgs.add(a);
                continue;
            }
            bhyveArgs.add(a);
            for (int j = 1; j < a.length(); j++) {
                char c = a.charAt(j);
                int at = OPTSTRING.indexOf(c);
                if (c == ':' || at < 0) {
                    throw usage("bhyve: illegal option -- " + c);
                }
                boolean takesArgument = at + 1 < OPTSTRING.length() && OPTSTRING.charAt(at + 1) == ':';
                if (!takesArgument) {
                    flag(c, config);
                    if (c == 'h') {
                        help = true;
                    }
                    continue;
                }
                String optarg;
                if (j + 1 < a.length()) {
                    optarg = a.substring(j + 1);
                } else if (i + 1 < args.size()) {
                    optarg = args.get(++i);
                    bhyveArgs.add(optarg);
                } else {
                    throw usage("bhyve: option requires an argument -- " + c);
                }
                option(c, optarg, config);
                break;
            }
        }
        if (emitLibvirtXml && (dryRun || showFeatures)) {
            throw usage("--emit-libvirt-xml starts nothing; it cannot be combined with "
                    + (dryRun ? "--dry-run" : "--show-features"));
        }
        if (libvirtType != null && !emitLibvirtXml) {
            throw usage("--libvirt-type " + libvirtType + " needs --emit-libvirt-xml");
        }
        String type = libvirtType != null ? libvirtType : WrapperOptions.DEFAULT_LIBVIRT_TYPE;
        if (help) {
            return new Parsed(config, new WrapperOptions(dryRun, showFeatures, kernel, initrd, append, runDir, qemu,
                    wait, emitLibvirtXml, type, true), bhyveArgs, null);
        }
        if (operands.size() > 1) {
            throw usage("one VM name expected last, got " + operands.size() + " operands: " + operands);
        }
        if (operands.size() == 1) {
            config.set("name", operands.get(0));
        }
        String vmName = config.get("name");
        if (vmName == null) {
            throw usage("the VM name is missing (the last argument, or -o name=NAME)");
        }
        return new Parsed(config, new WrapperOptions(dryRun, showFeatures, kernel, initrd, append, runDir, qemu, wait,
                emitLibvirtXml, type, false), bhyveArgs, vmName);
    }

    private static BhyveUsageException usage(String message) {
        return new BhyveUsageException(BhyveUsageException.USAGE, message);
    }

    private static BhyveUsageException exUsage(String message) {
        return new BhyveUsageException(BhyveUsageException.EX_USAGE, message);
    }

    /** The flags, as bhyve_optparse sets them (several are no-ops in bhyve itself today: -A, -I). */
    private static void flag(char c, BhyveConfig config) {
        switch (c) {
            case 'a': config.set("x86.x2apic", "false"); break;
            case 'x': config.set("x86.x2apic", "true"); break;
            case 'A': break; // ACPI tables are always generated (bhyve ignores -A now)
            case 'I': break; // an ioapic is always present (deprecated flag)
            case 'C': config.set("memory.guest_in_core", "true"); break;
            case 'D': config.set("destroy_on_poweroff", "true"); break;
            case 'e': config.set("x86.strictio", "true"); break;
            case 'H': config.set("x86.vmexit_on_hlt", "true"); break;
            case 'P': config.set("x86.vmexit_on_pause", "true"); break;
            case 'S': config.set("memory.wired", "true"); break;
            case 'u': config.set("rtc.use_localtime", "false"); break;
            case 'w': config.set("x86.strictmsr", "false"); break;
            case 'W': config.set("virtio_msix", "false"); break;
            case 'Y': config.set("x86.mptable", "false"); break;
            case 'h': break;
            default: throw new IllegalStateException("flag -" + c + " is in OPTSTRING but not handled");
        }
    }

    private static void option(char c, String optarg, BhyveConfig config) throws BhyveUsageException {
        switch (c) {
            case 'c':
                try {
                    CpuTopology.parseOption(optarg, config);
                } catch (IllegalArgumentException e) {
                    throw exUsage(e.getMessage());
                }
                break;
            case 'm': config.set("memory.size", optarg); break;
            case 's': parseSlot(optarg, config); break;
            case 'l': parseLpc(optarg, config); break;
            case 'o':
                if (!parseConfigOption(optarg, config)) {
                    throw exUsage("invalid configuration option '" + optarg + "'");
                }
                break;
            case 'k': parseConfigFile(optarg, config); break;
            case 'U': config.set("uuid", optarg); break;
            case 'K': config.set("keyboard.layout", optarg); break;
            case 'G': parseGdb(optarg, config); break;
            case 'p': config.set("vcpu.pin." + optarg, "true"); break; // refused by the planner: no QEMU equivalent
            case 'f': config.set("fwcfg." + optarg, "true"); break;
            case 'r': config.set("restore", optarg); break;
            default: throw new IllegalStateException("option -" + c + " is in OPTSTRING but not handled");
        }
    }

    /** bhyve_parse_config_option: {@code key=value}, with a key and a non-empty value. */
    static boolean parseConfigOption(String option, BhyveConfig config) {
        int eq = option.indexOf('=');
        if (eq <= 0 || eq == option.length() - 1) {
            return false;
        }
        config.set(option.substring(0, eq), option.substring(eq + 1));
        return true;
    }

    /** -k: a flat file of key=value lines; '#' starts a comment line (bhyve_parse_simple_config_file). */
    private static void parseConfigFile(String path, BhyveConfig config) throws BhyveUsageException {
        List<String> lines;
        try {
            lines = Files.readAllLines(Path.of(path));
        } catch (IOException e) {
            throw new BhyveUsageException(4, "Failed to open configuration file " + path + ": " + e.getMessage());
        }
        int n = 0;
        for (String line : lines) {
            n++;
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            if (!parseConfigOption(line, config)) {
                throw new BhyveUsageException(4, path + " line " + n + ": invalid config option '" + line + "'");
            }
        }
    }

    /** -G [w][bind:]port (bhyve_parse_gdb_options). */
    private static void parseGdb(String opt, BhyveConfig config) {
        String o = opt;
        if (o.startsWith("w")) {
            config.set("gdb.wait", "true");
            o = o.substring(1);
        }
        int colon = o.lastIndexOf(':');
        if (colon >= 0) {
            config.set("gdb.address", o.substring(0, colon));
            o = o.substring(colon + 1);
        }
        config.set("gdb.port", o);
    }

    /**
     * -s, as pci_parse_slot: {@code <bus>:<slot>:<func>}, {@code <slot>:<func>} or {@code <slot>} (each read with
     * sscanf's %d), then the emulation, then its legacy configuration string.
     */
    static void parseSlot(String opt, BhyveConfig config) throws BhyveUsageException {
        BhyveUsageException invalid = new BhyveUsageException(BhyveUsageException.CONFIG,
                "Invalid PCI slot info field \"" + opt + "\"");
        int comma = opt.indexOf(',');
        if (comma < 0) {
            throw invalid;
        }
        String where = opt.substring(0, comma);
        String emul = opt.substring(comma + 1);
        String conf = null;
        int c2 = emul.indexOf(',');
        if (c2 >= 0) {
            conf = emul.substring(c2 + 1);
            emul = emul.substring(0, c2);
        }
        int[] v = new int[3];
        int n = Sscanf.ints(where, 3, v);
        int bus;
        int slot;
        int func;
        if (n == 3) {
            bus = v[0];
            slot = v[1];
            func = v[2];
        } else {
            bus = 0;
            n = Sscanf.ints(where, 2, v);
            if (n == 2) {
                slot = v[0];
                func = v[1];
            } else {
                func = 0;
                slot = Sscanf.ints(where, 1, v) == 1 ? v[0] : -1;
            }
        }
        if (bus < 0 || bus >= PciAddress.MAX_BUSES || slot < 0 || slot >= PciAddress.MAX_SLOTS || func < 0
                || func >= PciAddress.MAX_FUNCS) {
            throw invalid;
        }
        PciAddress at = new PciAddress(bus, slot, func);
        if (!BHYVE_DEVICES.contains(emul)) {
            throw new BhyveUsageException(BhyveUsageException.CONFIG,
                    "pci slot " + at + ": unknown device \"" + emul + "\"");
        }
        if (config.hasNode(at.node())) {
            throw new BhyveUsageException(BhyveUsageException.CONFIG, "pci slot " + at + " already occupied!");
        }
        String node = at.node();
        switch (emul) {
            case "virtio-net":
            case "e1000":
                netLegacyConfig(node, conf, config);
                config.set(node + ".device", emul);
                break;
            case "virtio-blk":
            case "nvme":
                blockLegacyConfig(node, conf, config);
                config.set(node + ".device", emul);
                break;
            case "ahci-hd":
            case "ahci-cd":
                // pe_alias "ahci": the device node says ahci, port 0 carries the disk (pci_ahci.c).
                config.set(node + ".device", "ahci");
                config.set(node + ".port.0.type", emul.substring(5));
                blockLegacyConfig(node + ".port.0", conf, config);
                break;
            case "ahci":
                config.set(node + ".device", "ahci");
                ahciLegacyConfig(node, conf, config);
                break;
            default:
                config.set(node + ".device", emul);
                legacyConfig(node, conf, config);
                break;
        }
    }

    /** pci_parse_legacy_config: {@code name[=value]} items; a bare name is the boolean true. */
    static void legacyConfig(String node, String opt, BhyveConfig config) {
        if (opt == null) {
            return;
        }
        for (String item : opt.split(",", -1)) {
            int eq = item.indexOf('=');
            if (eq >= 0) {
                config.set(node + "." + item.substring(0, eq), item.substring(eq + 1));
            } else {
                config.set(node + "." + item, "true");
            }
        }
    }

    /** netbe_legacy_config: the first item is the backend unless it is a {@code key=value}. */
    static void netLegacyConfig(String node, String opt, BhyveConfig config) {
        if (opt == null) {
            return;
        }
        int comma = opt.indexOf(',');
        int eq = opt.indexOf('=');
        if (eq >= 0 && (comma < 0 || eq < comma)) {
            legacyConfig(node, opt, config);
            return;
        }
        if (comma < 0) {
            config.set(node + ".backend", opt);
            return;
        }
        config.set(node + ".backend", opt.substring(0, comma));
        legacyConfig(node, opt.substring(comma + 1), config);
    }

    /** blockif_legacy_config: the first item is the path, the rest are options. */
    static void blockLegacyConfig(String node, String opt, BhyveConfig config) {
        if (opt == null) {
            return;
        }
        int comma = opt.indexOf(',');
        if (comma < 0) {
            config.set(node + ".path", opt);
            return;
        }
        config.set(node + ".path", opt.substring(0, comma));
        legacyConfig(node, opt.substring(comma + 1), config);
    }

    /** pci_ahci_legacy_config: {@code hd:PATH[,opts],cd:PATH[,opts]...}, one port per hd:/cd: item. */
    static void ahciLegacyConfig(String node, String opt, BhyveConfig config) {
        if (opt == null) {
            return;
        }
        int port = -1;
        for (String item : opt.split(",", -1)) {
            if (item.startsWith("hd:") || item.startsWith("cd:")) {
                port++;
                config.set(node + ".port." + port + ".type", item.substring(0, 2));
                config.set(node + ".port." + port + ".path", item.substring(3));
            } else if (port >= 0) {
                legacyConfig(node + ".port." + port, item, config);
            } else {
                legacyConfig(node, item, config);
            }
        }
    }

    /**
     * -l, as lpc_device_parse: {@code comN,PATH}, {@code bootrom,ROM[,VARS]}, {@code fwcfg,bhyve|qemu},
     * {@code pc-testdev}, {@code tpm,...}. "help" is handled by the caller.
     */
    static void parseLpc(String opt, BhyveConfig config) throws BhyveUsageException {
        BhyveUsageException invalid = exUsage("invalid lpc device configuration '" + opt + "'");
        int comma = opt.indexOf(',');
        String dev = comma < 0 ? opt : opt.substring(0, comma);
        String rest = comma < 0 ? null : opt.substring(comma + 1);
        String lower = dev.toLowerCase(java.util.Locale.ROOT);
        if (!LPC_DEVICES.contains(lower)) {
            throw invalid;
        }
        switch (lower) {
            case "bootrom": {
                if (rest == null || rest.isEmpty()) {
                    throw invalid;
                }
                int c = rest.indexOf(',');
                config.set("lpc.bootrom", c < 0 ? rest : rest.substring(0, c));
                if (c >= 0) {
                    config.set("lpc.bootvars", rest.substring(c + 1));
                }
                break;
            }
            case "fwcfg":
                if (rest == null || !(rest.equals("bhyve") || rest.equals("qemu"))) {
                    throw invalid;
                }
                config.set("lpc.fwcfg", rest);
                break;
            case "pc-testdev":
                config.set("lpc.pc-testdev", "true");
                break;
            default: // com1..com4, tpm
                if (rest == null || rest.isEmpty()) {
                    throw invalid;
                }
                if (lower.equals("tpm")) {
                    config.set("lpc.tpm.type", rest);
                } else {
                    config.set("lpc." + lower + ".path", rest);
                }
                break;
        }
    }

    /** sscanf with a format of {@code count} "%d" separated by ':', as pci_parse_slot uses it. */
    static final class Sscanf {
        private Sscanf() {
        }

        /** Returns how many conversions succeeded (sscanf's return value, 0 if none). */
        static int ints(String s, int count, int[] out) {
            int pos = 0;
            for (int k = 0; k < count; k++) {
                if (k > 0) {
                    if (pos >= s.length() || s.charAt(pos) != ':') {
                        return k;
                    }
                    pos++;
                }
                int i = pos;
                while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                    i++;
                }
                int sign = 1;
                if (i < s.length() && (s.charAt(i) == '-' || s.charAt(i) == '+')) {
                    sign = s.charAt(i) == '-' ? -1 : 1;
                    i++;
                }
                int start = i;
                long v = 0;
                while (i < s.length() && Character.isDigit(s.charAt(i))) {
                    v = Math.min(v * 10 + (s.charAt(i) - '0'), 1L << 40); // saturate: out of range anyway
                    i++;
                }
                if (i == start) {
                    return k;
                }
                out[k] = (int) Math.max(Integer.MIN_VALUE, Math.min(Integer.MAX_VALUE, sign * v));
                pos = i;
            }
            return count;
        }
    }

}
