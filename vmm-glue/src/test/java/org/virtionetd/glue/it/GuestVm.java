package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cleanup;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.LogWatch;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Objects;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

/**
 * The test guest: a Debian cloud kernel with the busybox initramfs of {@code scripts/build-guest}, booted by QEMU
 * under TCG with one virtio-net-pci NIC on a vhost-user socket or on a tap (QEMU's own device, the anchor).
 *
 * <p>The guest speaks on its serial port (see scripts/lib/guest-init.sh): {@code VND-FEATURES <bits>},
 * {@code VND-READY}, the output of the command, {@code VND-DONE rc=N}, or {@code VND-ERROR ...}; then it powers
 * off and QEMU exits.
 *
 * <p>QEMU options and why: TCG because /dev/kvm here cannot boot a Debian kernel; guest RAM in a shared memfd
 * because a vhost-user back-end maps it; {@code vectors=0} because QEMU 7.2 segfaults starting a vhost-user NIC
 * with MSI-X under TCG.
 */
public final class GuestVm implements AutoCloseable {
    /** The boot under TCG takes ~3 s on an idle machine; builds on the same 2 cores can make it many times that. */
    public static final Duration BOOT_TIMEOUT = Duration.ofSeconds(180);
    private static final Pattern GUEST_ERROR = Pattern.compile("VND-ERROR");
    private static final int CMDLINE_LIMIT = 2000; // x86 COMMAND_LINE_SIZE is 2048

    private static Path image;
    private static Path kernel;

    private final Spawned qemu;
    private final Path dir;
    private final Path serial;
    private final String description;
    private final long startNanos = System.nanoTime();

    private GuestVm(Spawned qemu, Path dir, Path serial, String description) {
        this.qemu = qemu;
        this.dir = dir;
        this.serial = serial;
        this.description = description;
    }

    /** The project root: the nearest directory, from the working directory up, that has scripts/build-guest. */
    public static Path projectRoot() {
        Path start = Path.of("").toAbsolutePath();
        for (Path p = start; p != null; p = p.getParent()) {
            if (Files.isRegularFile(p.resolve("scripts/build-guest"))) {
                return p;
            }
        }
        throw new IllegalStateException("no scripts/build-guest in " + start + " or any parent directory");
    }

    /** The guest initramfs, built (or found in the cache) by scripts/build-guest once per JVM. */
    public static synchronized Path image() {
        if (image == null) {
            image = Path.of(lastLine(Cmd.check(Duration.ofMinutes(10),
                    projectRoot().resolve("scripts/build-guest").toString())));
            if (!Files.isRegularFile(image)) {
                throw new IllegalStateException("scripts/build-guest printed " + image + ", which is not a file");
            }
        }
        return image;
    }

    /** The kernel the guest boots (/boot/vmlinuz-*-cloud-amd64, newest). */
    public static synchronized Path kernel() {
        if (kernel == null) {
            kernel = Path.of(lastLine(Cmd.check(Duration.ofMinutes(10),
                    projectRoot().resolve("scripts/build-guest").toString(), "--kernel")));
        }
        return kernel;
    }

    private static String lastLine(String output) {
        List<String> lines = output.strip().lines().toList();
        return lines.isEmpty() ? "" : lines.get(lines.size() - 1).strip();
    }

    public static Builder builder() {
        return new Builder();
    }

    /** How to start a guest. One of {@link #vhostUser} or {@link #tap} is required, and {@link #ip}. */
    public static final class Builder {
        private Path socket;
        private boolean reconnect;
        private Path qmp;
        private String tap;
        private NetNs netns;
        private String ip;
        private Integer mtu;
        private boolean ethtool;
        private String command;
        private final List<String> deviceProperties = new ArrayList<>();
        private String mac = "52:54:00:12:34:56";
        private int queues = 1;
        private int cpus = 1;
        private int memoryMiB = 512;
        private int memorySlots;
        private int maxMemoryMiB;
        private String incoming;
        private boolean rebootAllowed;
        private boolean paused;
        private String cpuModel = "max";
        private final List<String> extraAppend = new ArrayList<>();
        private final List<String[]> moreNics = new ArrayList<>();

        private Builder() {
        }

        /** The NIC is a vhost-user front-end on this socket; the back-end listens there (QEMU is the client). */
        public Builder vhostUser(Path socketPath) {
            this.socket = socketPath;
            return this;
        }

        /** {@code reconnect=1} on the vhost-user chardev: QEMU retries every second when the back-end goes. */
        public Builder reconnect(boolean on) {
            this.reconnect = on;
            return this;
        }

        /** A QMP server socket at this path ({@link GuestVm#qmp(Path, String...)} sends commands to it). */
        public Builder qmp(Path socketPath) {
            this.qmp = socketPath;
            return this;
        }

        /** The NIC is QEMU's built-in virtio-net on this tap (vnet header, vhost=off); use {@link #netns}. */
        public Builder tap(String ifname) {
            this.tap = ifname;
            return this;
        }

        /** Run QEMU inside this namespace (required for a tap that lives there). */
        public Builder netns(NetNs ns) {
            this.netns = ns;
            return this;
        }

        /** The guest's eth0 address, e.g. {@code 10.77.0.2/24}. */
        public Builder ip(String cidr) {
            this.ip = cidr;
            return this;
        }

        public Builder mtu(int bytes) {
            this.mtu = bytes;
            return this;
        }

        /** Print {@code ethtool -k eth0} between VND-ETHTOOL-BEGIN and VND-ETHTOOL-END before VND-READY. */
        public Builder ethtool(boolean on) {
            this.ethtool = on;
            return this;
        }

        /**
         * A busybox sh script the guest runs after VND-READY (output on the serial log, then VND-DONE rc=N).
         * It travels base64-encoded on the kernel command line, so keep it under ~1.4 KB. Helpers in the guest:
         * {@code vnd-snmp PROTO [FIELD]}, iperf3, ethtool, busybox applets (ping, nc, ip, usleep, timeout, ...).
         */
        public Builder command(String shellScript) {
            this.command = shellScript;
            return this;
        }

        /**
         * One more virtio-net-pci NIC (eth1, eth2, ... in the order given) on another vhost-user socket, with its
         * MAC and extra device properties (may be empty); {@link #reconnect} applies to its chardev too. The guest
         * configures only eth0: the command brings the others up.
         */
        public Builder moreVhostUserNic(Path socketPath, String nicMac, String properties) {
            return moreVhostUserNic(socketPath, nicMac, properties, 1);
        }

        /** Like {@link #moreVhostUserNic(Path, String, String)}, with {@code pairs} queue pairs ({@code mq=on}). */
        public Builder moreVhostUserNic(Path socketPath, String nicMac, String properties, int pairs) {
            this.moreNics.add(new String[] {socketPath.toString(), nicMac, properties, Integer.toString(pairs)});
            return this;
        }

        /** Extra virtio-net-pci properties, e.g. {@code "mrg_rxbuf=off"}, {@code "csum=off,guest_csum=off"},
         *  {@code "disable-modern=on,disable-legacy=off"}. May be called repeatedly. */
        public Builder deviceProperties(String commaSeparated) {
            this.deviceProperties.add(commaSeparated);
            return this;
        }

        public Builder mac(String mac) {
            this.mac = mac;
            return this;
        }

        /** Queue pairs of the vhost-user netdev ({@code mq=on} on the device when more than one). */
        public Builder queues(int n) {
            this.queues = n;
            return this;
        }

        /** Virtual CPUs ({@code -smp N}); a multiqueue guest needs one per queue pair to spread its flows. */
        public Builder cpus(int n) {
            this.cpus = n;
            return this;
        }

        public Builder memoryMiB(int mib) {
            this.memoryMiB = mib;
            return this;
        }

        /**
         * Room for memory hot-plug: {@code -m SIZE,slots=N,maxmem=MAX}; a {@code pc-dimm} added at run time (QMP
         * {@code object_add} + {@code device_add}) takes one slot.
         */
        public Builder memorySlots(int slots, int maxMiB) {
            this.memorySlots = slots;
            this.maxMemoryMiB = maxMiB;
            return this;
        }

        /**
         * The destination of a live migration: QEMU starts paused, waiting for the source's stream at {@code uri}
         * (e.g. {@code unix:/path}); start it with the same options as the source, other sockets aside.
         */
        public Builder incoming(String uri) {
            this.incoming = uri;
            return this;
        }

        /**
         * QEMU's {@code -S}: the CPUs do not start until QMP {@code cont}; with {@link #incoming} the destination
         * stays paused after the migration (its devices not started), so that its memory can be read as it came.
         */
        /** QEMU's {@code -cpu} model (default {@code max}: every feature TCG emulates). */
        public Builder cpuModel(String model) {
            this.cpuModel = model;
            return this;
        }

        public Builder paused(boolean on) {
            this.paused = on;
            return this;
        }

        /**
         * A guest reboot ({@code reboot -f}, QMP {@code system_reset}) resets the machine and boots it again, with
         * the same kernel command line; by default ({@code -no-reboot}) QEMU exits instead.
         */
        public Builder rebootAllowed(boolean on) {
            this.rebootAllowed = on;
            return this;
        }

        /** Extra words for the kernel command line. */
        public Builder append(String words) {
            this.extraAppend.add(words);
            return this;
        }

        public GuestVm start() {
            if ((socket == null) == (tap == null)) {
                throw new IllegalArgumentException("give exactly one of vhostUser(socket) or tap(ifname); got socket="
                        + socket + ", tap=" + tap);
            }
            Objects.requireNonNull(ip, "ip(cidr) is required: the guest configures eth0 from it");
            String append = kernelCommandLine();
            Path img = image();
            Path vmlinuz = kernel();
            Path dir;
            try {
                dir = Files.createTempDirectory("vnd-guest-");
            } catch (IOException e) {
                throw new Cmd.Failure("cannot create a temp dir for the guest", e);
            }
            Path serial = dir.resolve("serial.log");
            List<String> argv = new ArrayList<>(List.of(
                    "qemu-system-x86_64", "-accel", "tcg", "-cpu", cpuModel,
                    "-m", memoryMiB + "M" + (memorySlots > 0 ? ",slots=" + memorySlots + ",maxmem=" + maxMemoryMiB + "M" : ""),
                    "-smp", Integer.toString(cpus), "-nographic",
                    "-monitor", "none", "-serial", "file:" + serial,
                    "-object", "memory-backend-memfd,id=mem,size=" + memoryMiB + "M,share=on",
                    "-numa", "node,memdev=mem"));
            if (!rebootAllowed) {
                argv.add("-no-reboot");
            }
            if (qmp != null) {
                argv.addAll(List.of("-qmp", "unix:" + qmp + ",server=on,wait=off"));
            }
            if (incoming != null) {
                argv.addAll(List.of("-incoming", incoming));
            }
            if (paused) {
                argv.add("-S");
            }
            // The ids (nic0, nic1, ...) name the NICs for QMP device_del; romfile= leaves out iPXE's option ROM,
            // which the guest boots without and which costs time at every boot under TCG.
            String device = "virtio-net-pci,id=nic0,netdev=n0,mac=" + mac + ",vectors=0,romfile=";
            if (socket != null) {
                argv.addAll(List.of("-chardev", "socket,id=c0,path=" + socket + (reconnect ? ",reconnect=1" : ""),
                        "-netdev", "vhost-user,id=n0,chardev=c0,queues=" + queues));
            } else {
                argv.addAll(List.of("-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no,vhost=off"));
            }
            if (queues > 1) {
                device += ",mq=on";
            }
            for (String p : deviceProperties) {
                device += "," + p;
            }
            argv.addAll(List.of("-device", device));
            for (int i = 0; i < moreNics.size(); i++) {
                String[] nic = moreNics.get(i);
                String id = Integer.toString(i + 1);
                argv.addAll(List.of("-chardev",
                        "socket,id=c" + id + ",path=" + nic[0] + (reconnect ? ",reconnect=1" : ""),
                        "-netdev", "vhost-user,id=n" + id + ",chardev=c" + id + ",queues=" + nic[3],
                        "-device", "virtio-net-pci,id=nic" + id + ",netdev=n" + id + ",mac=" + nic[1] + ",vectors=0,romfile="
                                + (nic[3].equals("1") ? "" : ",mq=on") + (nic[2].isEmpty() ? "" : "," + nic[2])));
                device += "; vhost-user " + nic[0] + " " + nic[1] + " " + nic[2];
            }
            argv.addAll(List.of("-kernel", vmlinuz.toString(), "-initrd", img.toString(), "-append", append));
            if (netns != null) {
                argv = netns.wrap(argv);
            }
            String description = "guest (" + (socket != null ? "vhost-user " + socket : "tap " + tap)
                    + (netns != null ? " in " + netns.name() : "") + ", device " + device + ")";
            Spawned qemu = Spawned.start(dir.resolve("qemu.log"), argv);
            return new GuestVm(qemu, dir, serial, description);
        }

        String kernelCommandLine() {
            // no_timer_check: under TCG on a busy host the kernel's check that the 8254 timer ticks through the
            // IO-APIC can time out, and it panics ("IO-APIC + timer doesn't work!"); seen here at load 7.
            // mitigations=off: the test guest runs only our code, and without them a boot under TCG is ~0.6 s
            // (a sixth) shorter.
            StringBuilder a = new StringBuilder("console=ttyS0 quiet panic=-1 no_timer_check mitigations=off vnd.ip=")
                    .append(ip);
            if (mtu != null) {
                a.append(" vnd.mtu=").append(mtu);
            }
            if (ethtool) {
                a.append(" vnd.ethtool=1");
            }
            for (String w : extraAppend) {
                a.append(' ').append(w);
            }
            if (command != null) {
                a.append(" vnd.cmd=").append(Base64.getEncoder().encodeToString(
                        (command + "\n").getBytes(StandardCharsets.UTF_8)));
            }
            if (a.length() > CMDLINE_LIMIT) {
                throw new IllegalArgumentException("the guest kernel command line would be " + a.length()
                        + " bytes (limit " + CMDLINE_LIMIT + "): shorten the guest command");
            }
            return a.toString();
        }
    }

    /**
     * Runs QMP commands one after the other on the socket of {@link Builder#qmp}; each returns when QEMU answered
     * it. A command is a name without arguments ({@code stop}, {@code cont}) or a whole QMP object
     * ({@code {"execute": "migrate", "arguments": {...}}}). Returns one line per command, the command then QEMU's
     * answer as JSON; fails with QEMU's answers when one is an error.
     */
    public static String qmp(Path socket, String... commands) {
        String script = String.join("\n",
                "import json, socket, sys",
                "s = socket.socket(socket.AF_UNIX)",
                "s.settimeout(60)",
                "s.connect(sys.argv[1])",
                "f = s.makefile('rw')",
                "def answer():",
                "    while True:",
                "        m = json.loads(f.readline())",
                "        if 'event' not in m:",
                "            return m",
                "answer()",
                "for c in ['qmp_capabilities'] + sys.argv[2:]:",
                "    f.write((c if c.startswith('{') else json.dumps({'execute': c})) + '\\n')",
                "    f.flush()",
                "    r = answer()",
                "    print(c, json.dumps(r))",
                "    if 'error' in r:",
                "        sys.exit(1)");
        List<String> argv = new ArrayList<>(List.of("python3", "-c", script, socket.toString()));
        argv.addAll(List.of(commands));
        return Cmd.run(Duration.ofSeconds(120), argv).orFail().output();
    }

    /** A QMP command object: {@code execute} with {@code arguments} given as JSON object text (may be "{}"). */
    public static String qmpCommand(String execute, String argumentsJson) {
        return "{\"execute\": \"" + execute + "\", \"arguments\": " + argumentsJson + "}";
    }

    /** The serial log file (kept until {@link #close()}). */
    public Path serialLog() {
        return serial;
    }

    /** What the guest printed on its serial port so far, without carriage returns. */
    public String output() {
        return Spawned.readLog(serial);
    }

    /** Number of complete or partial lines printed so far; pass it to {@link #awaitLine(String, Duration, int)}. */
    public int lineCount() {
        return (int) output().lines().count();
    }

    /** Time since {@link Builder#start()}. */
    public Duration uptime() {
        return Duration.ofNanos(System.nanoTime() - startNanos);
    }

    public boolean isAlive() {
        return qemu.isAlive();
    }

    public long pid() {
        return qemu.pid();
    }

    /**
     * Waits (bounded, polling every 50 ms) for a serial line containing a match of {@code regex} and returns the
     * whole line. Fails at once, with the log tail, if the guest prints VND-ERROR (unless that is what is awaited)
     * or QEMU exits first.
     */
    public String awaitLine(String regex, Duration timeout) {
        return await(regex, timeout, 0).line();
    }

    /** Like {@link #awaitLine(String, Duration)}, only considering lines from index {@code fromLine} on. */
    public String awaitLine(String regex, Duration timeout, int fromLine) {
        return await(regex, timeout, fromLine).line();
    }

    /** Like {@link #awaitLine(String, Duration)} but returns the match, for its groups. */
    public MatchResult awaitMatch(String regex, Duration timeout) {
        return await(regex, timeout, 0).match();
    }

    private LogWatch.Hit await(String regex, Duration timeout, int fromLine) {
        Pattern wanted = Pattern.compile(regex);
        Pattern failFast = wanted.matcher("VND-ERROR").find() ? null : GUEST_ERROR;
        return LogWatch.await(this::output, wanted, failFast, timeout, qemu::isAlive, this::state, fromLine);
    }

    private String state() {
        String q = Cmd.tail(qemu.output(), 10);
        return description + (qemu.isAlive() ? ", QEMU running" : ", QEMU exited")
                + " after " + uptime().toMillis() + " ms" + (q.isBlank() ? "" : "; QEMU said:\n" + Cmd.indent(q)) + "\n";
    }

    /** Waits for {@code VND-FEATURES} and returns the 64 characters of 0/1 (bit 0 first). */
    public String awaitFeatures(Duration timeout) {
        return awaitMatch("VND-FEATURES ([01]+)", timeout).group(1);
    }

    /** Waits for {@code VND-READY}: eth0 is configured and up. */
    public void awaitReady(Duration timeout) {
        awaitLine("VND-READY", timeout);
    }

    /** Waits for the command's end and returns its exit code ({@code VND-DONE rc=N}). */
    public int awaitDone(Duration timeout) {
        return Integer.parseInt(awaitMatch("VND-DONE rc=(\\d+)", timeout).group(1));
    }

    /** The feature bits of a VND-FEATURES string (bit 0 first, as in /sys/bus/virtio/devices/N/features). */
    public static long featureBits(String zeroOneString) {
        if (!zeroOneString.matches("[01]{1,64}")) {
            throw new IllegalArgumentException("not a virtio features string (up to 64 chars of 0/1): '"
                    + zeroOneString + "'");
        }
        long bits = 0;
        for (int i = 0; i < zeroOneString.length(); i++) {
            if (zeroOneString.charAt(i) == '1') {
                bits |= 1L << i;
            }
        }
        return bits;
    }

    /** Ends QEMU (if still running) and removes the serial log and the temp dir. */
    @Override
    public void close() {
        try {
            qemu.close();
        } finally {
            Cleanup.deleteTree(dir);
        }
    }

    @Override
    public String toString() {
        return description;
    }
}
