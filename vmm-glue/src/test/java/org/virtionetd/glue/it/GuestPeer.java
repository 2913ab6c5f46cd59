package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The host side of a long-lived test guest, in the test's namespace: {@code guest_peer.py} (a test resource) serves
 * the guest's agent one shell script at a time and runs byte-checked streams both ways.
 *
 * <p>The guest runs {@link #agentCommand(String)}: it fetches {@code GET /cmd/guest} from the host every 100 ms and runs
 * what it gets, between {@code VND-AGENT-BEGIN N} and {@code VND-AGENT-END N rc=R} on its serial port. So one boot
 * serves a whole test, steps that take the network down included (the script brings it back), and a reboot starts
 * the agent again by itself. The first line of each script is {@code # vnd-id N}; the peer hands each out once.
 *
 * <p>Streams: the peer prints {@code SENT NAME BYTES SHA256} / {@code RECV NAME BYTES SHA256} when one ends, the
 * guest prints {@code VND-GOT NAME SHA256} (what it received) or {@code VND-PUT NAME SHA256} (what it sent):
 * {@link #assertSameBytes} compares them, so one lost, repeated or changed byte anywhere fails the test.
 */
public final class GuestPeer implements AutoCloseable {
    public static final int HTTP_PORT = 8000;
    public static final int TCP_PORT = 5002;
    private static final String DEFAULT_AGENT = "guest";
    private static final Pattern TRANSFER = Pattern.compile("(SENT|RECV) (\\S+) (\\d+) (\\S+)");

    private final NetNs ns;
    private final Path dir;
    private final Spawned server;
    private int nextId = 1;

    private GuestPeer(NetNs ns, Path dir, Spawned server) {
        this.ns = ns;
        this.dir = dir;
        this.server = server;
    }

    /** Starts the peer in {@code ns}, listening on all of its addresses, and waits until it listens. */
    public static GuestPeer start(NetNs ns) {
        Path dir = ns.dir().resolve("peer");
        Path script = ns.dir().resolve("guest_peer.py");
        try (InputStream in = GuestPeer.class.getResourceAsStream("guest_peer.py")) {
            if (in == null) {
                throw new IllegalStateException("test resource guest_peer.py is missing next to " + GuestPeer.class);
            }
            Files.createDirectories(dir);
            Files.copy(in, script, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot install guest_peer.py in " + ns.dir(), e);
        }
        Spawned s = ns.spawn("guest-peer", "python3", "-u", script.toString(), "--dir", dir.toString(),
                "--http-port", Integer.toString(HTTP_PORT), "--tcp-port", Integer.toString(TCP_PORT));
        try {
            s.awaitLine("LISTENING", Duration.ofSeconds(30));
        } catch (RuntimeException | AssertionError e) {
            s.close();
            throw e;
        }
        return new GuestPeer(ns, dir, s);
    }

    /**
     * The guest's command: the agent loop, fetching scripts from {@code hostIp}. It never ends by itself; the test
     * ends the guest.
     */
    public static String agentCommand(String hostIp) {
        return agentCommand(hostIp, DEFAULT_AGENT);
    }

    /** The agent loop of one of several guests served by this peer, each with its own name (letters, digits). */
    public static String agentCommand(String hostIp, String agent) {
        return "while :; do if wget -q -O /tmp/c http://" + hostIp + ":" + HTTP_PORT + "/cmd/" + agent
                + " 2>/dev/null; then id=$(head -n1 /tmp/c | cut -d' ' -f3); echo \"VND-AGENT-BEGIN $id\"; sh /tmp/c; "
                + "echo \"VND-AGENT-END $id rc=$?\"; else usleep 100000; fi; done";
    }

    /** Hands {@code script} to the guest's agent and returns its id, without waiting. */
    public int post(String script) {
        return post(DEFAULT_AGENT, script);
    }

    /** Hands {@code script} to the agent named {@code agent} and returns its id, without waiting. */
    public int post(String agent, String script) {
        int id = nextId++;
        Path tmp = dir.resolve("cmd-" + agent + ".tmp");
        try {
            Files.writeString(tmp, "# vnd-id " + id + "\n" + script + "\n", StandardCharsets.UTF_8);
            Files.move(tmp, dir.resolve("cmd-" + agent + ".sh"), StandardCopyOption.ATOMIC_MOVE,
                    StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the next command of agent " + agent + " in " + dir, e);
        }
        return id;
    }

    /**
     * Runs {@code script} in the guest (through its agent, on {@code vm}'s serial port) and returns what it printed.
     * Fails with the output when it exits non-zero.
     */
    public String run(GuestVm vm, String script, Duration timeout) {
        return run(DEFAULT_AGENT, vm, script, timeout);
    }

    /** Like {@link #run(GuestVm, String, Duration)} for the agent named {@code agent}, which runs on {@code vm}. */
    public String run(String agent, GuestVm vm, String script, Duration timeout) {
        int from = vm.lineCount();
        int id = post(agent, script);
        vm.awaitLine("VND-AGENT-BEGIN " + id + "$", timeout, from);
        String end = vm.awaitLine("VND-AGENT-END " + id + " rc=\\d+", timeout, from);
        String out = between(vm.output(), "VND-AGENT-BEGIN " + id, "VND-AGENT-END " + id);
        assertThat(end).as("guest script %d:%n%s%nprinted:%n%s", id, script, out).endsWith(" rc=0");
        return out;
    }

    private static String between(String log, String begin, String end) {
        List<String> lines = log.lines().toList();
        StringBuilder b = new StringBuilder();
        boolean in = false;
        for (String l : lines) {
            if (l.startsWith(end)) {
                break;
            }
            if (in) {
                b.append(l).append('\n');
            }
            if (l.equals(begin)) {
                in = true;
            }
        }
        return b.toString();
    }

    /** Guest shell: a background download of the endless stream NAME; VND-GOT NAME HASH when the peer ends it. */
    public static String downloadStream(String name, String hostIp) {
        return "(h=$(wget -q -O - http://" + hostIp + ":" + HTTP_PORT + "/stream/" + name
                + " | sha256sum | cut -d' ' -f1); echo VND-GOT " + name + " $h) &";
    }

    /** Guest shell: downloads {@code bytes} seeded bytes as NAME and prints VND-GOT NAME HASH. */
    public static String download(String name, int bytes, String hostIp) {
        return "h=$(wget -q -O - http://" + hostIp + ":" + HTTP_PORT + "/file/" + name + "/" + bytes
                + " | sha256sum | cut -d' ' -f1); echo VND-GOT " + name + " $h";
    }

    /**
     * Guest shell: sends {@code file} as NAME to the peer's TCP sink and prints VND-PUT NAME HASH. (Not busybox
     * wget's --post-file: it sends a file only up to its first NUL byte.)
     */
    public static String upload(String name, String hostIp, String file) {
        return "{ echo " + name + "; cat " + file + "; } | nc " + hostIp + " " + TCP_PORT + " && echo VND-PUT " + name
                + " $(sha256sum " + file + " | cut -d' ' -f1)";
    }

    /**
     * Guest shell: a background TCP stream of /tmp/up.bin (4 MB from /dev/urandom, made once) over and over to the peer's sink until
     * {@link #stopUploadStream} (the file /tmp/stop-NAME); VND-PUT NAME HASH of all it sent. The peer's sink reads a
     * first line with the name and hashes the rest.
     */
    public static String uploadStream(String name, String hostIp) {
        return "[ -e /tmp/up.bin ] || head -c 4000000 /dev/urandom > /tmp/up.bin; "
                + "rm -f /tmp/stop-" + name + " /tmp/f-" + name + "; mkfifo /tmp/f-" + name + "; ("
                + "sha256sum < /tmp/f-" + name + " | cut -d' ' -f1 > /tmp/h-" + name + " & "
                + "{ echo " + name + "; while [ ! -e /tmp/stop-" + name + " ]; do cat /tmp/up.bin; done | tee /tmp/f-"
                + name + "; } | nc " + hostIp + " " + TCP_PORT + "; wait; echo VND-PUT " + name + " $(cat /tmp/h-"
                + name + ")) &";
    }

    /** Guest shell that ends {@link #uploadStream} NAME. */
    public static String stopUploadStream(String name) {
        return "touch /tmp/stop-" + name;
    }

    /** Ends the endless download stream NAME at the peer (the guest then prints its hash). */
    public void stopDownloadStream(String name) {
        try {
            Files.writeString(dir.resolve("stop-" + name), "");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot stop stream " + name + " in " + dir, e);
        }
    }

    /** What the peer saw of transfer NAME: direction (SENT or RECV), bytes and SHA-256. */
    public record Transfer(String kind, String name, long bytes, String sha256) {
    }

    /** Waits (bounded) for the peer's line about transfer NAME. */
    public Transfer awaitTransfer(String name, Duration timeout) {
        String line = server.awaitLine("(SENT|RECV) " + Pattern.quote(name) + " ", timeout);
        Matcher m = TRANSFER.matcher(line);
        if (!m.find()) {
            throw new AssertionError("guest peer printed '" + line + "' for " + name);
        }
        return new Transfer(m.group(1), m.group(2), Long.parseLong(m.group(3)), m.group(4));
    }

    /**
     * Waits for both ends of transfer NAME (the guest's VND-GOT/VND-PUT on {@code vm}, the peer's SENT/RECV) and
     * checks that they saw the same bytes, at least {@code minBytes} of them. Returns the byte count.
     */
    public long assertSameBytes(GuestVm vm, String name, long minBytes, Duration timeout) {
        Transfer t = awaitTransfer(name, timeout);
        String guest = vm.awaitMatch("VND-(GOT|PUT) " + Pattern.quote(name) + " (\\S+)", timeout).group(2);
        assertThat(guest).as("SHA-256 of stream %s in the guest vs at the host (%s %d bytes)", name, t.kind(),
                t.bytes()).isEqualTo(t.sha256());
        assertThat(t.bytes()).as("bytes of stream %s", name).isGreaterThanOrEqualTo(minBytes);
        return t.bytes();
    }

    /** The peer's log (every transfer line so far). */
    public String log() {
        return Cmd.tail(server.output(), 40);
    }

    public NetNs ns() {
        return ns;
    }

    @Override
    public void close() {
        server.close();
    }
}
