package org.virtionetd.glue.cli;

import org.virtionetd.backends.offload.OffloadingBackend;
import org.virtionetd.backends.BackendFactory;
import org.virtionetd.backends.Backends;
import org.virtionetd.glue.control.ControlServer;
import org.virtionetd.glue.control.FeatureReport;
import org.virtionetd.glue.control.StatsReport;
import org.virtionetd.glue.vhostuser.VhostUserServer;
import org.virtionetd.virtio.device.DeviceStatus;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.NetCounters;
import org.virtionetd.virtio.net.NetDeviceConfig;
import org.virtionetd.virtio.net.VirtioNetDevice;
import org.virtionetd.virtio.net.VirtioNetFeature;
import picocli.CommandLine;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.function.Function;

/**
 * {@code virtio-netd}: serves one virtio-net device on a vhost-user socket, with a backend such as a tap.
 * Subcommands {@code features} and {@code stats} inspect a running device through its control socket.
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
                    + "null (discard) or null:source=SIZE (also feed the guest SIZE-byte frames).")
    String backend;

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

    @CommandLine.Option(names = "--control", paramLabel = "PATH",
            description = "Control socket for 'virtio-netd features' and 'stats' (mode 0600).")
    Path control;

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

    @Override
    public Integer call() throws Exception {
        if (socket == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "Missing required option: '--socket=PATH'");
        }
        if (backend == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "Missing required option: '--backend=SPEC'");
        }
        NetDeviceConfig config;
        BackendFactory backendSpec;
        try {
            config = NetDeviceConfig.builder().mac(MacAddress.parse(mac)).mtu(mtu).queuePairs(checkQueues(queues))
                    .maxQueueSize(queueSize).build();
            backendSpec = Backends.parse(backend);
            if (noOffload && softwareOffload) {
                throw new IllegalArgumentException("--no-offload and --software-offload exclude each other");
            }
            if (noOffload || softwareOffload) {
                backendSpec = backendSpec.withoutOffload();
            }
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
        List<NetBackend> opened = backendSpec.open(config.queuePairs());
        List<NetBackend> backends = new ArrayList<>();
        for (NetBackend b : opened) {
            // The software engine sits in front of every backend unless the user wants no offload at all: it
            // passes offloads the backend carries through untouched and completes the others (design card).
            backends.add(noOffload ? b : new OffloadingBackend(b));
        }
        VirtioNetDevice device = new VirtioNetDevice(config, backends::get);
        // QEMU serves the control queue itself under vhost-user and does not forward CTRL_VQ.
        device.setFrontEndFeatures(VirtioNetFeature.bits(VirtioNetFeature.CTRL_VQ));
        String name = socket.getFileName() + " (" + backendSpec + ")";
        VhostUserServer server = new VhostUserServer(socket, device);
        ControlServer controlServer = null;
        CountDownLatch stopped = new CountDownLatch(1);
        try {
            server.start();
            if (control != null) {
                controlServer = new ControlServer(control, handlers(name, device));
            }
            LOG.log(System.Logger.Level.INFO, "virtio-netd serving " + name + " on " + socket
                    + (control != null ? ", control " + control : ""));
            ControlServer cs = controlServer;
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                LOG.log(System.Logger.Level.INFO, "virtio-netd shutting down");
                shutdown(server, cs, device);
                stopped.countDown();
            }, "shutdown"));
        } catch (IOException | RuntimeException e) {
            shutdown(server, controlServer, device);
            throw e;
        }
        stopped.await();
        return 0;
    }

    private static int checkQueues(int n) {
        if (n < 1 || n > 32) {
            throw new IllegalArgumentException("--queues " + n + " is outside 1..32");
        }
        return n;
    }

    private static void shutdown(VhostUserServer server, ControlServer control, VirtioNetDevice device) {
        server.close();
        if (control != null) {
            control.close();
        }
        device.close();
    }

    static Map<String, Function<String, String>> handlers(String name, VirtioNetDevice device) {
        return Map.of(
                "features", fmt -> {
                    FeatureReport r = new FeatureReport(name, device.offeredFeatures(), device.ackedFeatures(),
                            device.negotiatedFeatures(), device.backendOffloads(),
                            DeviceStatus.describe(device.status()));
                    return "json".equals(fmt) ? r.toJson() + "\n" : r.toTable();
                },
                "stats", fmt -> {
                    List<NetCounters> cs = new ArrayList<>();
                    for (int p = 0; p < device.queuePairs(); p++) {
                        cs.add(device.counters(p));
                    }
                    StatsReport r = new StatsReport(name, cs);
                    return "json".equals(fmt) ? r.toJson() + "\n" : r.toTable();
                });
    }
}
