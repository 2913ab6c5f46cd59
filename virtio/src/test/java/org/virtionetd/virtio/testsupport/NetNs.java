package org.virtionetd.virtio.testsupport;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A network namespace that a test creates and removes: {@code vnd-<random>}, with loopback up. Commands run in it
 * through {@code ip netns exec}; taps, veths and bridges are created in it, or moved into it. {@link #close()} ends
 * the processes spawned in it, deletes the links it created and the namespace, even after a failed test (and at
 * the latest when the JVM exits, through {@link Cleanup}); the kernel would delete the namespace's virtual links
 * with it anyway, but only once no process holds the namespace. Needs root.
 */
public final class NetNs implements AutoCloseable {
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final AtomicInteger LINKS = new AtomicInteger();
    private static final String RUN = Long.toString(ProcessHandle.current().pid() % 100000, 36);

    private final String name;
    private final Path dir;
    private final List<Spawned> spawned = new ArrayList<>();
    private final List<String> links = new ArrayList<>();
    private boolean closed;

    private NetNs(String name, Path dir) {
        this.name = name;
        this.dir = dir;
    }

    /** Creates a fresh namespace named {@code vnd-<8 hex digits>} with {@code lo} up. */
    public static NetNs create() {
        return create(true);
    }

    /**
     * Like {@link #create()}, with IPv6 disabled on every link: no router solicitations or MLD reports, so that
     * what a link carries (a capture, a tap's queue) is what the test sent.
     */
    public static NetNs createWithoutIpv6() {
        return create(false);
    }

    private static NetNs create(boolean ipv6) {
        byte[] r = new byte[4];
        RANDOM.nextBytes(r);
        String name = "vnd-" + HexFormat.of().formatHex(r);
        Cmd.check("ip", "netns", "add", name);
        NetNs ns;
        try {
            ns = new NetNs(name, Files.createTempDirectory(name + "-"));
        } catch (IOException e) {
            Cmd.run("ip", "netns", "del", name);
            throw new Cmd.Failure("cannot create a temp dir for namespace " + name, e);
        }
        Cleanup.register(ns);
        try {
            ns.exec("ip", "link", "set", "lo", "up");
            if (!ipv6) {
                ns.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
                ns.exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1");
            }
        } catch (RuntimeException | Error e) {
            try {
                ns.close();
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
        return ns;
    }

    /**
     * A fresh interface name of at most 15 bytes (IFNAMSIZ - 1, linux/if.h), unique on this machine while this JVM
     * runs: {@code prefix} + pid + counter. For a tap opened in the root namespace before it is moved into one.
     */
    public static String uniqueLinkName(String prefix) {
        String n = prefix + RUN + LINKS.incrementAndGet();
        if (n.length() > 15) {
            throw new IllegalStateException("interface name " + n + " is longer than 15 bytes");
        }
        return n;
    }

    public String name() {
        return name;
    }

    /** A directory for this namespace's logs and sockets, removed by {@link #close()}. */
    public Path dir() {
        return dir;
    }

    /** argv prefixed with {@code ip netns exec <name>}, for a ProcessBuilder of one's own. */
    public List<String> wrap(List<String> argv) {
        List<String> full = new ArrayList<>(List.of("ip", "netns", "exec", name));
        full.addAll(argv);
        return full;
    }

    public List<String> wrap(String... argv) {
        return wrap(List.of(argv));
    }

    /** Runs argv in the namespace; any exit code is returned (see {@link Cmd.Result#orFail()}). */
    public Cmd.Result run(Duration timeout, String... argv) {
        return Cmd.run(timeout, wrap(argv));
    }

    public Cmd.Result run(String... argv) {
        return run(Cmd.DEFAULT_TIMEOUT, argv);
    }

    /** Runs argv in the namespace, requires exit 0, returns the output. */
    public String exec(Duration timeout, String... argv) {
        return run(timeout, argv).orFail().output();
    }

    public String exec(String... argv) {
        return exec(Cmd.DEFAULT_TIMEOUT, argv);
    }

    /** {@code ip -n <name> args...}, required to exit 0; returns the output. */
    public String ip(String... args) {
        List<String> argv = new ArrayList<>(List.of("ip", "-n", name));
        argv.addAll(List.of(args));
        return Cmd.run(argv).orFail().output();
    }

    /**
     * Starts argv in the background in the namespace, output to {@code dir()/<logName>.log}. It is ended by
     * {@link Spawned#close()} or at the latest by this namespace's {@link #close()}.
     */
    public Spawned spawn(String logName, String... argv) {
        Spawned s = Spawned.start(dir.resolve(logName + ".log"), wrap(argv));
        spawned.add(s);
        return s;
    }

    /** Like {@link #spawn} with standard input a pipe, for an interactive program ({@link Spawned#send}). */
    public Spawned spawnWithInput(String logName, String... argv) {
        Spawned s = Spawned.startWithInput(dir.resolve(logName + ".log"), wrap(argv));
        spawned.add(s);
        return s;
    }

    /** A tap device owned by no process (the VMM opens it by name later), up, with an optional address. */
    public void addTap(String ifname, String cidrOrNull) {
        exec("ip", "tuntap", "add", "dev", ifname, "mode", "tap");
        links.add(ifname);
        if (cidrOrNull != null) {
            addAddress(ifname, cidrOrNull);
        }
        up(ifname);
    }

    /** A veth pair with both ends in this namespace, both up. */
    public void addVeth(String ifname, String peer) {
        exec("ip", "link", "add", ifname, "type", "veth", "peer", "name", peer);
        links.add(ifname);
        up(ifname);
        up(peer);
    }

    /** A veth pair from this namespace ({@code ifname}) to {@code other} ({@code peer}), both up. */
    public void addVethTo(String ifname, NetNs other, String peer) {
        exec("ip", "link", "add", ifname, "type", "veth", "peer", "name", peer, "netns", other.name());
        links.add(ifname);
        up(ifname);
        other.up(peer);
    }

    /** A bridge, up, with the given existing interfaces of this namespace as ports. */
    public void addBridge(String bridge, String... ports) {
        exec("ip", "link", "add", bridge, "type", "bridge");
        links.add(bridge);
        up(bridge);
        for (String port : ports) {
            exec("ip", "link", "set", port, "master", bridge);
        }
    }

    /**
     * Moves an interface of the root namespace (a tap a backend opened) into this one and brings it up. A virtual
     * link goes with the namespace; one its owner deletes is gone already.
     */
    public void moveIn(String ifname) {
        Cmd.check("ip", "link", "set", ifname, "netns", name);
        up(ifname);
    }

    /** Moves {@code ifname} here, gives it {@code mac} and {@code cidr}, brings it up. */
    public void adopt(String ifname, String mac, String cidr) {
        Cmd.check("ip", "link", "set", ifname, "netns", name);
        ip("link", "set", ifname, "address", mac);
        addAddress(ifname, cidr);
        up(ifname);
    }

    /** A permanent neighbour entry: {@code address} is at {@code mac} on {@code ifname} (no ARP needed). */
    public void neighbour(String address, String mac, String ifname) {
        ip("neigh", "replace", address, "lladdr", mac, "dev", ifname, "nud", "permanent");
    }

    public void addAddress(String ifname, String cidr) {
        exec("ip", "addr", "add", cidr, "dev", ifname);
    }

    public void up(String ifname) {
        exec("ip", "link", "set", ifname, "up");
    }

    public void setMtu(String ifname, int mtu) {
        exec("ip", "link", "set", ifname, "mtu", Integer.toString(mtu));
    }

    /** {@code busybox ping} from the namespace (Debian's iputils-ping is not part of the test bed). */
    public Cmd.Result ping(String address, int count) {
        return run(Duration.ofSeconds(count * 2L + 15), "busybox", "ping", "-c", Integer.toString(count),
                "-W", "5", address);
    }

    /** A counter of /proc/net/snmp as seen in this namespace, e.g. {@code snmp("Tcp", "InCsumErrors")}. */
    public long snmp(String proto, String field) {
        return Snmp.field(exec("cat", "/proc/net/snmp"), proto, field);
    }

    /** A counter of /proc/net/snmp6 as seen in this namespace, e.g. {@code snmp6("Udp6InCsumErrors")}. */
    public long snmp6(String field) {
        return Snmp.field6(exec("cat", "/proc/net/snmp6"), field);
    }

    /** Ends spawned processes, deletes created links and the namespace; safe to call twice. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        Cleanup.unregister(this);
        List<String> problems = new ArrayList<>();
        for (int i = spawned.size() - 1; i >= 0; i--) {
            try {
                spawned.get(i).close();
            } catch (RuntimeException e) {
                problems.add("ending " + spawned.get(i).command() + ": " + e.getMessage());
            }
        }
        for (int i = links.size() - 1; i >= 0; i--) {
            // May already be gone (a veth's peer, a tap deleted by its user): only the namespace must go.
            try {
                run(Duration.ofSeconds(10), "ip", "link", "del", links.get(i));
            } catch (Cmd.Failure e) {
                problems.add(e.getMessage());
            }
        }
        try {
            Cmd.Result del = Cmd.run(Duration.ofSeconds(30), List.of("ip", "netns", "del", name));
            if (!del.ok()) {
                problems.add("ip netns del " + name + " exited " + del.exitCode() + ": " + del.output().strip());
            }
        } catch (Cmd.Failure e) {
            problems.add(e.getMessage());
        }
        Cleanup.deleteTree(dir);
        if (!problems.isEmpty()) {
            throw new Cmd.Failure("cleaning up namespace " + name + ": " + String.join("; ", problems));
        }
    }

    @Override
    public String toString() {
        return "netns " + name;
    }
}
