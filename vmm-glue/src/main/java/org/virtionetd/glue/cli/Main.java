package org.virtionetd.glue.cli;

import org.virtionetd.backends.BackendFactory;
import org.virtionetd.backends.Backends;
import org.virtionetd.glue.control.ControlServer;
import org.virtionetd.glue.control.FeatureReport;
import org.virtionetd.glue.control.MetricsAddress;
import org.virtionetd.glue.control.MetricsHttpServer;
import org.virtionetd.glue.control.PrometheusExposition;
import org.virtionetd.glue.control.StatsReport;
import org.virtionetd.glue.vhostuser.LifecycleCounters;
import org.virtionetd.glue.vhostuser.VhostUserServer;
import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.NetCounters;
import org.virtionetd.virtio.net.NetDeviceConfig;
import org.virtionetd.virtio.net.VirtioNetDevice;
import org.virtionetd.virtio.net.VirtioNetFeature;
import picocli.CommandLine;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.function.Function;

/**
 * {@code virtio-netd}: serves virtio-net devices on vhost-user sockets, each with a backend such as a tap or a port
 * of an in-process switch: one with {@code --socket/--backend}, more with repeated {@code --device}.
 * Subcommands {@code features} and {@code stats} inspect a running device through its control socket;
 * {@code --metrics-listen} serves the counters of every device to Prometheus.
 */
@CommandLine.Command(name = "virtio-netd", mixinStandardHelpOptions = true, versionProvider = Version.class,
        subcommands = {FeaturesCommand.class, StatsCommand.class},
        description = {"A virtio-net device for virtual machines, served over vhost-user.",
                "Example: virtio-netd --socket /run/vnd0.sock --backend tap:tap0 --control /run/vnd0.ctl"})
public final class Main implements Callable<Integer> {
    private static final System.Logger LOG = System.getLogger(Main.class.getName());

    @CommandLine.Option(names = "--socket", paramLabel = "PATH",
            description = "vhost-user socket to listen on (created with mode 0600).")
    Path socket;

    @CommandLine.Option(names = "--backend", paramLabel = "SPEC",
            description = "Where packets go: tap:NAME[,no-offload], tapN or vmnetN (bhyve spellings), "
                    + "switch:NAME[,port=P][,vlans=0:10-20][,no-offload][,uplink=tap:TAP[,uplink-no-offload]] or "
                    + "valeNAME:PORT (an in-process switch; uplink= attaches a tap to it as one more port, "
                    + "uplink-no-offload without vnet header), "
                    + "null (discard), null:copy (copy each packet, then discard) or null:source=SIZE (also feed the "
                    + "guest SIZE-byte frames; null:copy,source=SIZE both).")
    String backend;

    @CommandLine.Option(names = "--device", paramLabel = "socket=PATH,backend=SPEC[,mac=MAC][,control=PATH]",
            description = {"One more device in this process (repeatable). Options after backend= that are not "
                    + "socket/mac/control belong to the backend, e.g. backend=switch:sw0,vlans=10,mac=52:54:00:00:00:02.",
                    "MAC defaults to --mac with the last byte plus the device's number; --mtu, --queues and the "
                            + "offload options apply to every device."})
    List<String> devices = new ArrayList<>();

    @CommandLine.Option(names = "--mac", paramLabel = "MAC", defaultValue = "52:54:00:12:34:56",
            description = "MAC address in the config space (default ${DEFAULT-VALUE}).")
    String mac;

    @CommandLine.Option(names = "--mtu", paramLabel = "N", defaultValue = "1500",
            description = "MTU offered to the guest, 68..65535 (default ${DEFAULT-VALUE}).")
    int mtu;

    @CommandLine.Option(names = "--queues", paramLabel = "N", defaultValue = "1",
            description = "Queue pairs, 1..32 (default ${DEFAULT-VALUE}); more than one offers MQ.")
    int queues;

    @CommandLine.Option(names = "--queue-size", paramLabel = "N", defaultValue = "1024",
            description = "Largest queue size accepted, a power of two up to 32768 (default ${DEFAULT-VALUE}).")
    int queueSize;

    @CommandLine.Option(names = "--busy-poll-us", paramLabel = "US", defaultValue = "50",
            description = "After a round that found a backlog (a driver filling the ring faster than a kick can wake "
                    + "the device), keep polling the rings for up to US microseconds of idleness before sleeping "
                    + "again; 0 never polls (default ${DEFAULT-VALUE}).")
    int busyPollMicros;

    @CommandLine.Option(names = "--control", paramLabel = "PATH",
            description = "Control socket for 'virtio-netd features' and 'stats' (mode 0600).")
    Path control;

    @CommandLine.Option(names = "--metrics-listen", paramLabel = "ADDR:PORT",
            description = "Serve the counters of every device of this process on http://ADDR:PORT/metrics in the "
                    + "Prometheus text format (what 'stats --format prometheus' prints); :PORT or PORT listens on "
                    + "loopback, [IPV6]:PORT on an IPv6 address.")
    String metricsListen;

    @CommandLine.Option(names = "--no-offload",
            description = "Offer the guest no offloads at all (tap opened without a vnet header).")
    boolean noOffload;

    @CommandLine.Option(names = "--software-offload",
            description = "Offer the guest checksum and segmentation offloads, completed in software "
                    + "(tap opened without a vnet header).")
    boolean softwareOffload;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tF %1$tT %4$s %3$s: %5$s%6$s%n");
        }
        System.exit(commandLine().execute(args));
    }

    public static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        // A wrong command line gets its one-line reason and a hint, not the whole help text.
        cl.setParameterExceptionHandler((ex, args) -> {
            CommandLine c = ex.getCommandLine();
            c.getErr().println("virtio-netd: " + ex.getMessage());
            c.getErr().println("Try '" + c.getCommandSpec().qualifiedName() + " --help' for the options.");
            return 2;
        });
        return cl;
    }

    /** One device of this process: its socket, backend, MAC and control socket. */
    record DeviceSpec(Path socket, String backend, String mac, Path control) {
        /** Parses {@code socket=PATH,backend=SPEC[,mac=MAC][,control=PATH]}; other tokens extend the backend. */
        static DeviceSpec parse(String text, String defaultMac) {
            Path socket = null;
            Path control = null;
            String mac = defaultMac;
            StringBuilder backend = null;
            for (String token : text.split(",", -1)) {
                if (token.startsWith("socket=")) {
                    socket = Path.of(token.substring(7));
                } else if (token.startsWith("control=")) {
                    control = Path.of(token.substring(8));
                } else if (token.startsWith("mac=")) {
                    mac = token.substring(4);
                } else if (token.startsWith("backend=")) {
                    backend = new StringBuilder(token.substring(8));
                } else if (backend != null) {
                    backend.append(',').append(token);
                } else {
                    throw new IllegalArgumentException("--device '" + text + "': '" + token + "' is not socket=, "
                            + "backend=, mac= or control= (backend options go after backend=)");
                }
            }
            if (socket == null || socket.toString().isEmpty()) {
                throw new IllegalArgumentException("--device '" + text + "' has no socket=PATH");
            }
            if (backend == null || backend.length() == 0) {
                throw new IllegalArgumentException("--device '" + text + "' has no backend=SPEC");
            }
            return new DeviceSpec(socket, backend.toString(), mac, control);
        }
    }

    /** A running device and what serves it. */
    private record Served(String name, VirtioNetDevice device, VhostUserServer server, ControlServer control) {
    }

    @Override
    public Integer call() throws Exception {
        List<DeviceSpec> specs = new ArrayList<>();
        InetSocketAddress metricsAddress = null;
        try {
            if (noOffload && softwareOffload) {
                throw new IllegalArgumentException("--no-offload and --software-offload exclude each other");
            }
            if (socket != null || backend != null || devices.isEmpty()) {
                if (socket == null) {
                    throw new IllegalArgumentException("Missing required option: '--socket=PATH'");
                }
                if (backend == null) {
                    throw new IllegalArgumentException("Missing required option: '--backend=SPEC'");
                }
                specs.add(new DeviceSpec(socket, backend, mac, control));
            }
            byte[] base = MacAddress.parse(mac);
            for (String d : devices) {
                byte[] m = base.clone();
                m[5] = (byte) (m[5] + specs.size());
                specs.add(DeviceSpec.parse(d, MacAddress.format(m)));
            }
            checkQueues(queues);
            if (busyPollMicros < 0 || busyPollMicros > NetDeviceConfig.MAX_BUSY_POLL_MICROS) {
                throw new IllegalArgumentException("--busy-poll-us " + busyPollMicros + " is outside 0.."
                        + NetDeviceConfig.MAX_BUSY_POLL_MICROS);
            }
            if (metricsListen != null) {
                metricsAddress = MetricsAddress.parse(metricsListen);
            }
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
        List<Served> served = new ArrayList<>();
        CountDownLatch stopped = new CountDownLatch(1);
        try {
            for (DeviceSpec d : specs) {
                served.add(serve(d));
            }
            MetricsHttpServer metrics = metricsAddress == null ? null : serveMetrics(metricsAddress, served);
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                LOG.log(System.Logger.Level.INFO, "virtio-netd shutting down");
                if (metrics != null) {
                    metrics.close();
                }
                shutdown(served);
                stopped.countDown();
            }, "shutdown"));
        } catch (IOException | RuntimeException e) {
            shutdown(served);
            throw e;
        }
        stopped.await();
        return 0;
    }

    /** Opens the backend, builds the device and starts its vhost-user server (and control socket). */
    private Served serve(DeviceSpec d) throws IOException {
        NetDeviceConfig config;
        List<NetBackend> backends = new ArrayList<>();
        String backendName;
        try {
            config = NetDeviceConfig.builder().mac(MacAddress.parse(d.mac())).mtu(mtu).queuePairs(queues)
                    .maxQueueSize(queueSize).busyPollMicros(busyPollMicros).build();
            // The registry decides what wraps the backend (the software offload engine where it is needed).
            BackendFactory factory = Backends.assemble(d.backend(), noOffload ? Backends.Offloads.NONE
                    : softwareOffload ? Backends.Offloads.SOFTWARE : Backends.Offloads.BACKEND);
            backendName = factory.toString();
            backends.addAll(factory.open(config.queuePairs()));
        } catch (IllegalArgumentException e) {
            backends.forEach(NetBackend::close);
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
        VirtioNetDevice device = new VirtioNetDevice(config, backends::get);
        // QEMU serves the control queue itself under vhost-user and does not forward CTRL_VQ.
        device.setFrontEndFeatures(VirtioNetFeature.bits(VirtioNetFeature.CTRL_VQ));
        String name = d.socket().getFileName() + " (" + backendName + ")";
        VhostUserServer server = new VhostUserServer(d.socket(), device);
        ControlServer controlServer = null;
        try {
            server.start();
            if (d.control() != null) {
                controlServer = new ControlServer(d.control(), handlers(name, device, server.lifecycle()));
            }
        } catch (IOException | RuntimeException e) {
            shutdown(List.of(new Served(name, device, server, controlServer)));
            throw e;
        }
        LOG.log(System.Logger.Level.INFO, "virtio-netd serving " + name + " on " + d.socket()
                + (d.control() != null ? ", control " + d.control() : ""));
        return new Served(name, device, server, controlServer);
    }

    /** The HTTP listener of --metrics-listen: one exposition of all of {@code served}, read at each scrape. */
    private MetricsHttpServer serveMetrics(InetSocketAddress address, List<Served> served) throws IOException {
        List<Served> all = List.copyOf(served);
        MetricsHttpServer m;
        try {
            m = new MetricsHttpServer(address, () -> PrometheusExposition.render(all.stream()
                    .map(s -> statsReport(s.name(), s.device(), s.server().lifecycle())).toList()));
        } catch (IOException e) {
            throw new IOException("--metrics-listen '" + metricsListen + "': " + e.getMessage(), e);
        }
        LOG.log(System.Logger.Level.INFO, "virtio-netd metrics of " + all.size() + " device(s) on " + m.url());
        return m;
    }

    private static int checkQueues(int n) {
        if (n < 1 || n > 32) {
            throw new IllegalArgumentException("--queues " + n + " is outside 1..32");
        }
        return n;
    }

    private static void shutdown(List<Served> served) {
        for (Served s : served) {
            s.server().close();
            if (s.control() != null) {
                s.control().close();
            }
            s.device().close();
        }
    }

    static Map<String, Function<String, String>> handlers(String name, VirtioNetDevice device,
                                                          LifecycleCounters lifecycle) {
        return Map.of(
                "features", fmt -> {
                    FeatureReport r = new FeatureReport(name, device.offeredFeatures(), device.ackedFeatures(),
                            device.negotiatedFeatures(), device.backendOffloads(),
                            DeviceStatus.describe(device.status()), device.linkUp());
                    return "json".equals(fmt) ? r.toJson() + "\n" : r.toTable();
                },
                "stats", fmt -> {
                    StatsReport r = statsReport(name, device, lifecycle);
                    return "json".equals(fmt) ? r.toJson() + "\n"
                            : "prometheus".equals(fmt) ? PrometheusExposition.render(List.of(r)) : r.toTable();
                });
    }

    /** Every counter of one device now: its queue pairs', its memory regions', its lifecycle's. */
    static StatsReport statsReport(String name, VirtioNetDevice device, LifecycleCounters lifecycle) {
        List<NetCounters> cs = new ArrayList<>();
        long[] allocated = new long[device.queuePairs()];
        for (int p = 0; p < device.queuePairs(); p++) {
            cs.add(device.counters(p));
            allocated[p] = device.loopAllocatedBytes(p);
        }
        return new StatsReport(name, cs, allocated, lifecycle.snapshot(), device.rxBuffersByRegion());
    }
}
