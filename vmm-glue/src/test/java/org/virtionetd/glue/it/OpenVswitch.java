package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Open vSwitch (Debian's openvswitch-switch) in one host namespace, started by hand as on a host without systemd:
 * ovsdb-server on a fresh database, then ovs-vswitchd, both with their run directory (database, sockets, pid files,
 * logs) under the namespace's directory ({@code OVS_RUNDIR}, {@code OVS_LOGDIR}), so that the two hosts of one
 * machine share nothing. Both end with the namespace.
 *
 * <p>The bridges use the userspace datapath ({@code datapath_type=netdev}): this machine's kernel has no openvswitch
 * module. Its VXLAN ports are OVS's own, so the layout is that of OVS's userspace tunneling guide
 * (Documentation/howto/userspace-tunneling.rst in the OVS sources): {@code br-phy} holds the underlay port, with
 * the host's underlay address on the bridge's internal port (OVS routes and resolves tunnel next hops through it),
 * and {@code br-int} holds the taps and the VXLAN port.
 */
public final class OpenVswitch implements AutoCloseable {
    private static final Duration START = Duration.ofSeconds(60);
    private static final String SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema";

    private final NetNs ns;
    private final Path dir;
    private final Spawned ovsdb;
    private final Spawned vswitchd;

    /** Open vSwitch did not start here; the message says what was tried and what it printed. */
    public static final class CannotRun extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CannotRun(String message) {
            super(message);
        }
    }

    private OpenVswitch(NetNs ns, Path dir, Spawned ovsdb, Spawned vswitchd) {
        this.ns = ns;
        this.dir = dir;
        this.ovsdb = ovsdb;
        this.vswitchd = vswitchd;
    }

    /**
     * Starts ovsdb-server and ovs-vswitchd in {@code ns}; throws {@link CannotRun} when either does not come up
     * (missing programs or schema, a daemon that exits or makes no socket).
     */
    public static OpenVswitch start(NetNs ns) {
        if (!Files.isRegularFile(Path.of(SCHEMA))) {
            throw new CannotRun(SCHEMA + " does not exist: openvswitch-switch (openvswitch-common) is not installed");
        }
        Path dir = ns.dir().resolve("ovs");
        Path db = dir.resolve("conf.db");
        Path dbSocket = dir.resolve("db.sock");
        Path ctl = dir.resolve("ovs-vswitchd.ctl");
        try {
            Files.createDirectories(dir);
        } catch (java.io.IOException e) {
            throw new Cmd.Failure("cannot create " + dir, e);
        }
        Cmd.Result create = Cmd.run(Duration.ofSeconds(30), List.of("ovsdb-tool", "create", db.toString(), SCHEMA));
        if (!create.ok()) {
            throw new CannotRun("ovsdb-tool create " + db + " exited " + create.exitCode() + ": " + create.output());
        }
        String[] env = {"env", "OVS_RUNDIR=" + dir, "OVS_LOGDIR=" + dir, "OVS_DBDIR=" + dir};
        Spawned ovsdb = ns.spawn("ovsdb-server", concat(env, "ovsdb-server", db.toString(),
                "--remote=punix:" + dbSocket,
                "--unixctl=" + dir.resolve("ovsdb-server.ctl"), "--pidfile=" + dir.resolve("ovsdb-server.pid"),
                "--log-file=" + dir.resolve("ovsdb-server.log")));
        awaitSocket(ovsdb, dbSocket, "ovsdb-server");
        Cmd.Result init = Cmd.run(Duration.ofSeconds(30), vsctlArgv(dir, "--no-wait", "init"));
        if (!init.ok()) {
            ovsdb.close();
            throw new CannotRun("ovs-vsctl --no-wait init on " + dbSocket + " exited " + init.exitCode() + ": "
                    + init.output());
        }
        Spawned vswitchd = ns.spawn("ovs-vswitchd", concat(env, "ovs-vswitchd", "unix:" + dbSocket, "--unixctl=" + ctl,
                "--pidfile=" + dir.resolve("ovs-vswitchd.pid"), "--log-file=" + dir.resolve("ovs-vswitchd.log")));
        try {
            awaitSocket(vswitchd, ctl, "ovs-vswitchd");
        } catch (CannotRun e) {
            ovsdb.close();
            throw e;
        }
        return new OpenVswitch(ns, dir, ovsdb, vswitchd);
    }

    private static void awaitSocket(Spawned daemon, Path socket, String name) {
        try {
            Poll.until(name + " socket " + socket, START, () -> Files.exists(socket) || !daemon.isAlive(),
                    () -> Cmd.tail(daemon.output(), 20));
        } catch (AssertionError e) {
            daemon.close();
            throw new CannotRun(e.getMessage());
        }
        if (!daemon.isAlive()) {
            throw new CannotRun(name + " (" + daemon.command() + ") exited before making " + socket + ":\n"
                    + Cmd.indent(Cmd.tail(daemon.output(), 30)));
        }
    }

    private static String[] concat(String[] head, String... tail) {
        List<String> all = new ArrayList<>(List.of(head));
        all.addAll(List.of(tail));
        return all.toArray(String[]::new);
    }

    private static List<String> vsctlArgv(Path dir, String... args) {
        List<String> argv = new ArrayList<>(List.of("ovs-vsctl", "--db=unix:" + dir.resolve("db.sock"),
                "--timeout=30"));
        argv.addAll(List.of(args));
        return argv;
    }

    /** {@code ovs-vsctl ARGS} on this host's database; required to exit 0. */
    public String vsctl(String... args) {
        return Cmd.run(Duration.ofSeconds(60), vsctlArgv(dir, args)).orFail().output();
    }

    /** {@code ovs-appctl -t CTL ARGS} on this host's ovs-vswitchd; required to exit 0. */
    public String appctl(String... args) {
        List<String> argv = new ArrayList<>(List.of("ovs-appctl", "-t", dir.resolve("ovs-vswitchd.ctl").toString()));
        argv.addAll(List.of(args));
        return Cmd.run(Duration.ofSeconds(60), argv).orFail().output();
    }

    /**
     * {@code br-phy} (userspace datapath) with the underlay port {@code underlay} and the host's underlay address
     * {@code cidr} on the bridge's internal port, up. Throws {@link CannotRun} if OVS cannot make a netdev bridge.
     */
    public void underlayBridge(String underlay, String cidr) {
        Cmd.Result r = Cmd.run(Duration.ofSeconds(60), vsctlArgv(dir, "add-br", "br-phy", "--", "set", "bridge",
                "br-phy", "datapath_type=netdev", "--", "add-port", "br-phy", underlay));
        if (!r.ok()) {
            throw new CannotRun("ovs-vsctl add-br br-phy (datapath_type=netdev) with port " + underlay + " exited "
                    + r.exitCode() + ": " + r.output() + "\novs-vswitchd log:\n" + Cmd.indent(log(20)));
        }
        Poll.until("the internal port br-phy of OVS in " + ns.name(), START,
                () -> ns.run("ip", "link", "show", "br-phy").ok(), () -> log(20));
        ns.addAddress("br-phy", cidr);
        ns.up("br-phy");
    }

    /**
     * {@code br-int} (userspace datapath) with the taps and port {@code vxlan0}: VXLAN network {@code vni} to
     * {@code remoteIp} from {@code localIp}, UDP port {@code port}, outer UDP checksum on ({@code csum=true}, off
     * by default in OVS for IPv4), as the Linux-bridge hosts have it.
     */
    public void vxlanBridge(String localIp, String remoteIp, int vni, int port, String... taps) {
        List<String> args = new ArrayList<>(List.of("add-br", "br-int", "--", "set", "bridge", "br-int",
                "datapath_type=netdev"));
        for (String tap : taps) {
            args.addAll(List.of("--", "add-port", "br-int", tap));
        }
        args.addAll(List.of("--", "add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0", "type=vxlan",
                "options:remote_ip=" + remoteIp, "options:local_ip=" + localIp, "options:key=" + vni,
                "options:dst_port=" + port, "options:csum=true"));
        vsctl(args.toArray(String[]::new));
        ns.up("br-int");
    }

    /** Lines of the ovs-vswitchd log that say it dropped packets (e.g. offloaded ones it cannot tunnel). */
    public List<String> dropWarnings() {
        return Spawned.readLog(dir.resolve("ovs-vswitchd.log")).lines()
                .filter(l -> l.contains("drop") && (l.contains("|WARN|") || l.contains("|ERR|"))).toList();
    }

    /** The last lines of the ovs-vswitchd log. */
    public String log(int lines) {
        return Cmd.tail(Spawned.readLog(dir.resolve("ovs-vswitchd.log")), lines);
    }

    /** What a failure message shows: the configuration, the datapath's ports with counters, the log tail. */
    public String describe() {
        try {
            return "Open vSwitch in " + ns.name() + ":\n"
                    + Cmd.indent(Cmd.run(Duration.ofSeconds(30), vsctlArgv(dir, "show")).output())
                    + Cmd.indent(Cmd.run(Duration.ofSeconds(30), List.of("ovs-appctl", "-t",
                            dir.resolve("ovs-vswitchd.ctl").toString(), "dpctl/show", "-s")).output())
                    + "ovs-vswitchd log tail:\n" + Cmd.indent(log(20));
        } catch (Cmd.Failure e) {
            return "(describing Open vSwitch in " + ns.name() + " failed: " + e.getMessage() + ")\n" + log(20);
        }
    }

    /** Ends ovs-vswitchd, then ovsdb-server (its internal ports, taps it opened, go with it). */
    @Override
    public void close() {
        try {
            vswitchd.close();
        } finally {
            ovsdb.close();
        }
    }

    @Override
    public String toString() {
        return "Open vSwitch in " + ns.name() + " (" + dir + ")";
    }
}
