package org.virtionetd.glue.it;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.virtionetd.virtio.testsupport.Cleanup;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * contrib/systemd/virtio-netd@.service, installed by {@code DESTDIR=ROOT scripts/install-service} into a
 * directory standing for the file system root, with the instance config {@code etc/virtio-netd/t1.conf} made from
 * example.conf (only VND_TAP changed):
 * <ol>
 * <li>{@code systemd-analyze verify --root=ROOT virtio-netd@t1.service} passes with no message about the unit
 *     (ROOT also holds a copy of the system's unit directory and of the commands the Exec lines name, which
 *     verify looks up under the root);</li>
 * <li>the unit's own ExecStart and ExecStartPost lines, read from the unit file and expanded as systemd does
 *     ({@link SystemdUnit}) with the config's variables, run as the unit runs them: as an unprivileged user (the
 *     unit's virtio-netd, here a user made for the test) with no capability and no_new_privs, with the unit's
 *     umask and the environment systemd gives, in a RuntimeDirectory made as systemd makes it, on a tap root made
 *     for that user. The vhost-user socket is 0660 with the user's group (a member of the group connects,
 *     another user does not), the control socket 0600, {@code virtio-netd stats --control} answers; SIGTERM
 *     ends it within TimeoutStopSec with a status the unit counts as success, its sockets removed.</li>
 * </ol>
 * systemd is not started: where it is not the running init (a container), it cannot run units. The sandbox
 * settings (ProtectSystem=, SystemCallFilter=, DeviceAllow=...) are therefore checked by verify only.
 */
@Tag("integration")
class SystemdUnitIT {
    private static final System.Logger LOG = System.getLogger(SystemdUnitIT.class.getName());
    private static final String UNIT_USER = "virtio-netd";
    /** Stands for the unit's user; fixed and particular to this test, so that a leftover is recognised. */
    private static final String USER = "vndsvc";
    private static final String TAP = "vndsd0";
    private static final String INSTANCE = "t1";
    /** The PATH systemd gives a system service (systemd.exec(5), "Environment Variables in Spawned Processes"). */
    private static final String SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    private static final Duration START_POST_TIMEOUT = Duration.ofSeconds(90); // TimeoutStartSec's default

    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void unitVerifiesAndItsCommandLineServesAsTheUnitsUserAndStopsCleanlyOnSigterm() throws Exception {
        Path project = GuestVm.projectRoot();
        VirtioNetd.jar(); // present and newer than the sources: install-service then copies it without building
        SystemdUnit unit = SystemdUnit.read(project.resolve("contrib/systemd/virtio-netd@.service"));
        assertThat(List.of(unit.one("Service", "User"), unit.one("Service", "Group"))).as("User=, Group= of %s", unit)
                .containsOnly(UNIT_USER);
        Path root = Files.createTempDirectory("vndsd-");
        try {
            Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwxr-xr-x"));
            Cmd.run(Duration.ofMinutes(5), List.of("env", "DESTDIR=" + root,
                    project.resolve("scripts/install-service").toString())).orFail();
            Path conf = root.resolve("etc/virtio-netd/" + INSTANCE + ".conf");
            String example = Files.readString(root.resolve("etc/virtio-netd/example.conf"));
            assertThat(example).as("example.conf").containsPattern("(?m)^VND_TAP=\\S+$");
            Files.writeString(conf, example.replaceAll("(?m)^VND_TAP=\\S+$", "VND_TAP=" + TAP));
            Map<String, String> config = SystemdUnit.environmentFile(conf);
            verify(unit, root, config);
            runAsTheUnitDoes(unit, root, config);
        } finally {
            Cleanup.deleteTree(root);
        }
    }

    /** systemd-analyze verify on the installed template's instance; any message naming the unit fails. */
    private static void verify(SystemdUnit unit, Path root, Map<String, String> config) throws IOException {
        Files.createDirectories(root.resolve("usr/lib/systemd"));
        Cmd.check("cp", "-a", "/usr/lib/systemd/system", root.resolve("usr/lib/systemd").toString());
        for (String key : List.of("ExecStartPre", "ExecStart", "ExecStartPost", "ExecStop", "ExecStopPost")) {
            for (String line : unit.all("Service", key)) {
                String command = unit.commandLine(line, specifiers(root), config)[0];
                Path staged = root.resolve(command.substring(1));
                if (!Files.exists(staged)) { // a system command (the installed ones are there already)
                    Files.createDirectories(staged.getParent());
                    Files.copy(Path.of(command).toRealPath(), staged, StandardCopyOption.COPY_ATTRIBUTES);
                }
            }
        }
        Cmd.Result r = Cmd.run(Duration.ofSeconds(60), List.of("systemd-analyze", "verify", "--root=" + root,
                "virtio-netd@" + INSTANCE + ".service"));
        LOG.log(System.Logger.Level.INFO, "systemd-analyze verify: exit {0}, output: {1}", r.exitCode(),
                r.output().isBlank() ? "(none)" : r.output());
        assertThat(r.exitCode()).as("exit of %s: %s", r.command(), r.output()).isZero();
        assertThat(r.output().lines().filter(l -> l.contains("virtio-netd"))).as("messages of %s about the unit",
                r.command()).isEmpty();
    }

    private static void runAsTheUnitDoes(SystemdUnit unit, Path root, Map<String, String> config) throws Exception {
        if (Cmd.run("id", "-u", USER).ok()) {
            LOG.log(System.Logger.Level.WARNING, "user {0} left by an earlier run: removing it", USER);
            Cmd.run("userdel", USER);
        }
        // The flags of scripts/install-service's useradd.
        Cmd.check("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--user-group", "--shell",
                "/usr/sbin/nologin", USER);
        String uid = Cmd.check("id", "-u", USER).strip();
        String gid = Cmd.check("id", "-g", USER).strip();
        try (NetNs ns = NetNs.create()) {
            // docs/systemd.md's command, with the test's user and tap.
            ns.exec("ip", "tuntap", "add", "dev", TAP, "mode", "tap", "user", USER, "vnet_hdr");
            ns.up(TAP);
            // RuntimeDirectory=: parents made by systemd 0755 root, the last one the unit's user's, in its mode.
            Path runtime = root.resolve("run").resolve(unit.commandLine(unit.one("Service", "RuntimeDirectory"),
                    specifiers(root), Map.of())[0]);
            Files.createDirectories(runtime.getParent());
            Files.createDirectory(runtime);
            Cmd.check("chown", USER + ":" + USER, runtime.toString());
            Cmd.check("chmod", unit.one("Service", "RuntimeDirectoryMode"), runtime.toString());

            Map<String, String> env = new LinkedHashMap<>(config);
            env.putAll(Map.of("PATH", SERVICE_PATH, "USER", USER, "LOGNAME", USER, "HOME", "/nonexistent",
                    "SHELL", "/usr/sbin/nologin", "RUNTIME_DIRECTORY", runtime.toString()));
            String[] start = installed(root, unit.commandLine(unit.one("Service", "ExecStart"), specifiers(root), env));
            LOG.log(System.Logger.Level.INFO, "ExecStart as run: {0}", String.join(" ", start));
            Path socket = Path.of(after(start, "--socket"));
            Path control = Path.of(after(start, "--control"));
            assertThat(List.of(socket.getParent(), control.getParent())).as("directories of the sockets")
                    .containsOnly(runtime);
            Spawned device = ns.spawn("virtio-netd", asServiceUser(unit, env, start));
            try {
                Failures.withContext(() -> "virtio-netd log tail:\n" + Cmd.indent(Cmd.tail(device.output(), 30)), () -> {
                    for (String line : unit.all("Service", "ExecStartPost")) {
                        String[] post = installed(root, unit.commandLine(line, specifiers(root), env));
                        Cmd.Result r = ns.run(START_POST_TIMEOUT, asServiceUser(unit, env, post));
                        assertThat(r.exitCode()).as("ExecStartPost %s: %s", Arrays.toString(post), r.output())
                                .isZero();
                    }
                    Poll.until("sockets " + socket + " and " + control, VirtioNetd.START_TIMEOUT,
                            () -> Files.exists(socket) && Files.exists(control) || !device.isAlive());
                    assertThat(device.isAlive()).as("virtio-netd running").isTrue();
                    assertSocket(socket, "660", uid, gid);
                    assertSocket(control, "600", uid, gid);
                    assertThat(connectAs(socket, "--groups=" + gid)).as("nobody in group %s connecting to %s", USER,
                            socket).isEqualTo("CONNECTED");
                    assertThat(connectAs(socket, "--clear-groups")).as("nobody connecting to %s", socket)
                            .contains("PermissionError");
                    String[] query = {start[0], "stats", "--control", control.toString(), "--json"};
                    String stats = ns.run(Duration.ofSeconds(60), asServiceUser(unit, env, query)).orFail().output();
                    long rx = VirtioNetd.counter(JsonText.object(VirtioNetd.lastLine(stats)), "rx_packets");
                    assertThat(rx).as("rx_packets in %s", stats).isNotNegative();

                    assertThat(unit.one("Service", "KillSignal")).as("KillSignal= (Process.destroy sends SIGTERM)")
                            .isEqualTo("SIGTERM");
                    Duration stopTimeout = unit.duration("Service", "TimeoutStopSec");
                    long sent = System.nanoTime();
                    device.process().destroy();
                    int exit = device.awaitExit(stopTimeout);
                    LOG.log(System.Logger.Level.INFO, "virtio-netd exited {0} {1} ms after SIGTERM", exit,
                            TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - sent));
                    assertThat(successStatuses(unit)).as("exit status after SIGTERM, or SuccessExitStatus=")
                            .contains(exit);
                    assertThat(Files.exists(socket, LinkOption.NOFOLLOW_LINKS)).as("%s after SIGTERM", socket)
                            .isFalse();
                    assertThat(Files.exists(control, LinkOption.NOFOLLOW_LINKS)).as("%s after SIGTERM", control)
                            .isFalse();
                    assertThat(device.output()).as("virtio-netd log").doesNotContain("Exception");
                });
            } finally {
                device.close();
            }
            ns.run("ip", "link", "del", TAP);
        } finally {
            // What the JVM and JNA left in /tmp (the unit has PrivateTmp=), then the user and its group.
            Cmd.run("find", "/tmp", "-maxdepth", "1", "-user", uid, "-exec", "rm", "-rf", "{}", "+");
            Cmd.Result del = Cmd.run("userdel", USER);
            if (!del.ok()) {
                LOG.log(System.Logger.Level.WARNING, "userdel {0}: {1}", USER, del.output());
            }
        }
    }

    /** The specifiers the unit uses: %i and %I the instance, %t the runtime directory root (here under ROOT). */
    private static Map<Character, String> specifiers(Path root) {
        return Map.of('i', INSTANCE, 'I', INSTANCE, 't', root.resolve("run").toString());
    }

    /** argv with its command taken from ROOT where install-service put it there, else from the system. */
    private static String[] installed(Path root, String[] argv) {
        String[] out = argv.clone();
        Path staged = root.resolve(argv[0].substring(1));
        if (argv[0].startsWith("/usr/local/") && Files.isExecutable(staged)) {
            out[0] = staged.toString();
        }
        return out;
    }

    /**
     * argv as systemd runs it for this unit: only the given environment, working directory /, the unit's UMask=,
     * the unit's user and group (here the test's) with their supplementary groups, no capability in any set
     * (CapabilityBoundingSet= empty) and no_new_privs (NoNewPrivileges=yes). Every step execs: the pid is argv's.
     */
    private static String[] asServiceUser(SystemdUnit unit, Map<String, String> env, String[] argv) {
        assertThat(unit.one("Service", "NoNewPrivileges")).isEqualTo("yes");
        assertThat(unit.one("Service", "CapabilityBoundingSet")).isEmpty();
        List<String> full = new ArrayList<>(List.of("env", "-i"));
        env.forEach((k, v) -> full.add(k + "=" + v));
        full.addAll(List.of("setpriv", "--reuid=" + USER, "--regid=" + USER, "--init-groups", "--inh-caps=-all",
                "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
                "/bin/sh", "-c", "cd / && umask \"$0\" && exec \"$@\"", unit.one("Service", "UMask")));
        full.addAll(List.of(argv));
        return full.toArray(String[]::new);
    }

    private static String after(String[] argv, String option) {
        int i = Arrays.asList(argv).indexOf(option);
        assertThat(i).as("%s in %s", option, Arrays.toString(argv)).isNotNegative().isLessThan(argv.length - 1);
        return argv[i + 1];
    }

    private static void assertSocket(Path s, String mode, String uid, String gid) throws IOException {
        int m = (Integer) Files.getAttribute(s, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        assertThat(Integer.toOctalString(m & 0777)).as("mode of %s", s).isEqualTo(mode);
        assertThat(Files.getAttribute(s, "unix:uid", LinkOption.NOFOLLOW_LINKS).toString()).as("owner of %s", s)
                .isEqualTo(uid);
        assertThat(Files.getAttribute(s, "unix:gid", LinkOption.NOFOLLOW_LINKS).toString()).as("group of %s", s)
                .isEqualTo(gid);
    }

    /** 0 and SuccessExitStatus='s numbers (systemd.service(5)). */
    private static Set<Integer> successStatuses(SystemdUnit unit) {
        Set<Integer> ok = new TreeSet<>(Set.of(0));
        ok.addAll(unit.all("Service", "SuccessExitStatus").stream().flatMap(v -> Arrays.stream(v.split("\\s+")))
                .filter(w -> w.matches("\\d+")).map(Integer::valueOf).collect(Collectors.toSet()));
        return ok;
    }

    /** User nobody, with the given setpriv group option, connects to the socket: CONNECTED or the exception. */
    private static String connectAs(Path socket, String groups) {
        return Cmd.run(Duration.ofSeconds(30), List.of("setpriv", "--reuid=nobody", "--regid=nogroup", groups, "--",
                "/usr/bin/python3", "-c", String.join("\n",
                        "import socket, sys",
                        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)",
                        "try:",
                        "    s.connect(sys.argv[1]); print('CONNECTED')",
                        "except Exception as e:",
                        "    print(type(e).__name__, e)"), socket.toString())).output().strip();
    }
}
