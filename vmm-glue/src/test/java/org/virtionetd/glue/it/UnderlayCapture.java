package org.virtionetd.glue.it;

import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;
import org.virtionetd.virtio.testsupport.Spawned;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What the underlay carried, judged by tcpdump and tshark on one underlay end (see {@link TwoHosts} for why that
 * end sees wire-size packets): a watcher for the whole run that keeps only frames that should not exist (longer
 * than {@link TwoHosts#LARGEST_UNDERLAY_FRAME}, or an IPv4 fragment: MF set or a fragment offset), and for each
 * named TCP port a full sample of the first {@code frames} VXLAN packets whose inner TCP segment has that port as
 * source or destination (one transfer, data and ACKs), on which tshark checks every IPv4, outer UDP and inner TCP
 * checksum. Sampling keeps the files and tshark's time small; the kernels count every packet
 * ({@link TwoHosts#ipUdpCounters}, the guests' TcpInCsumErrors).
 */
public final class UnderlayCapture implements AutoCloseable {
    /** Outer UDP header 8 + VXLAN 8 + inner Ethernet 14: the inner IPv4 header starts at udp[30]. */
    private static final int INNER_IP = 30;
    private static final String TSHARK_CHECKS = "-o|ip.check_checksum:TRUE|-o|udp.check_checksum:TRUE|-o|"
            + "tcp.check_checksum:TRUE";

    private final NetNs ns;
    private final String device;
    private final Spawned watcher;
    private final Path watcherFile;
    private final Map<Integer, Spawned> samples;
    private final Map<Integer, Path> sampleFiles;

    private UnderlayCapture(NetNs ns, String device, Spawned watcher, Path watcherFile, Map<Integer, Spawned> samples,
                            Map<Integer, Path> sampleFiles) {
        this.ns = ns;
        this.device = device;
        this.watcher = watcher;
        this.watcherFile = watcherFile;
        this.samples = samples;
        this.sampleFiles = sampleFiles;
    }

    /** What tshark and the watcher found. {@code framesByPort}: frames in each port's sample. */
    public record Verdict(Map<Integer, Integer> framesByPort, int largestFrame, int wireSizeFrames,
                          long badChecksums, long unjudgedChecksums, int oversizeOrFragments, long fragments) {
        @Override
        public String toString() {
            return "sampled VXLAN frames by inner TCP port " + framesByPort + ", largest " + largestFrame
                    + " bytes (" + wireSizeFrames + " of them " + TwoHosts.LARGEST_UNDERLAY_FRAME + "), bad checksums "
                    + badChecksums + ", checksums tshark could not judge " + unjudgedChecksums + ", IP fragments in the"
                    + " samples " + fragments + "; whole run: frames over " + TwoHosts.LARGEST_UNDERLAY_FRAME
                    + " bytes or IP fragments " + oversizeOrFragments;
        }
    }

    /** Starts the watcher and one sample per port on {@code device} in {@code ns}; returns once all listen. */
    public static UnderlayCapture start(NetNs ns, String device, int frames, int... tcpPorts) {
        Path watcherFile = ns.dir().resolve("underlay-oversize-or-fragment.pcap");
        // -U: each packet goes to the file at once, so what a SIGTERM'd tcpdump saw is all in it.
        Spawned watcher = ns.spawn("tcpdump-watcher", "tcpdump", "-i", device, "-nn", "-U", "-s", "128",
                "-w", watcherFile.toString(), "greater " + (TwoHosts.LARGEST_UNDERLAY_FRAME + 1)
                        + " or (ip[6:2] & 0x3fff != 0)");
        Map<Integer, Spawned> samples = new LinkedHashMap<>();
        Map<Integer, Path> files = new LinkedHashMap<>();
        UnderlayCapture c = new UnderlayCapture(ns, device, watcher, watcherFile, samples, files);
        try {
            for (int port : tcpPorts) {
                Path file = ns.dir().resolve("underlay-tcp" + port + ".pcap");
                files.put(port, file);
                // -B: a 32 MiB capture buffer, so that the sample has no holes when the machine is busy.
                samples.put(port, ns.spawn("tcpdump-tcp" + port, "tcpdump", "-i", device, "-nn", "-U", "-s", "0",
                        "-B", "32768", "-c", Integer.toString(frames), "-w", file.toString(), innerTcpFilter(port)));
            }
            watcher.awaitLine("listening on", Duration.ofSeconds(30));
            for (Spawned s : samples.values()) {
                s.awaitLine("listening on", Duration.ofSeconds(30));
            }
        } catch (RuntimeException | Error e) {
            c.close();
            throw e;
        }
        return c;
    }

    /** VXLAN over IPv4 whose inner frame is IPv4 (header of 20 bytes) + TCP with {@code port} at either end. */
    static String innerTcpFilter(int port) {
        int tcp = INNER_IP + 20;
        return "udp dst port " + TwoHosts.VXLAN_PORT + " and udp[" + (INNER_IP - 2) + ":2] = 0x0800 and udp["
                + (INNER_IP + 9) + "] = 6 and (udp[" + tcp + ":2] = " + port + " or udp[" + (tcp + 2) + ":2] = " + port
                + ")";
    }

    /** Ends the captures (a sample that has its frames ended by itself) and judges what they hold. */
    public Verdict finish() {
        close();
        Map<Integer, Integer> framesByPort = new LinkedHashMap<>();
        int largest = 0;
        int wireSize = 0;
        long bad = 0;
        long unjudged = 0;
        long fragments = 0;
        for (Map.Entry<Integer, Path> e : sampleFiles.entrySet()) {
            List<String[]> rows = tshark(e.getValue(), "frame.len", "ip.checksum.status", "udp.checksum.status",
                    "tcp.checksum.status", "ip.flags.mf", "ip.frag_offset");
            framesByPort.put(e.getKey(), rows.size());
            for (String[] r : rows) {
                int len = Integer.parseInt(r[0]);
                largest = Math.max(largest, len);
                wireSize += len == TwoHosts.LARGEST_UNDERLAY_FRAME ? 1 : 0;
                // Wireshark's checksum status: 0 bad, 1 good, 2 unverified, 3 not present, 4 illegal.
                for (int i = 1; i <= 3; i++) {
                    for (String s : values(r, i)) {
                        bad += s.equals("0") ? 1 : 0;
                        unjudged += s.equals("0") || s.equals("1") ? 0 : 1;
                    }
                }
                boolean fragment = values(r, 4).stream().anyMatch(v -> v.equals("1") || v.equalsIgnoreCase("true"))
                        || values(r, 5).stream().anyMatch(v -> !v.equals("0"));
                fragments += fragment ? 1 : 0;
            }
        }
        int watched = tshark(watcherFile, "frame.len").size();
        return new Verdict(framesByPort, largest, wireSize, bad, unjudged, watched, fragments);
    }

    /** The comma-separated values of column {@code i} (one per protocol layer; IPv4 appears outer and inner). */
    private static List<String> values(String[] row, int i) {
        if (i >= row.length || row[i].isEmpty()) {
            return List.of("missing");
        }
        return List.of(row[i].split(","));
    }

    /** One row per frame of {@code file}: the given fields, tab-separated as tshark prints them. */
    private List<String[]> tshark(Path file, String... fields) {
        List<String> argv = new ArrayList<>(List.of("tshark", "-n", "-r", file.toString()));
        argv.addAll(List.of(TSHARK_CHECKS.split("\\|")));
        argv.addAll(List.of("-T", "fields", "-E", "occurrence=a"));
        for (String f : fields) {
            argv.addAll(List.of("-e", f));
        }
        Cmd.Result r = Cmd.run(Duration.ofSeconds(120), argv).orFail();
        List<String[]> rows = new ArrayList<>();
        // tshark also prints a warning about running as root (stdout and stderr are merged): rows start with a length.
        for (String line : r.output().lines().toList()) {
            if (line.matches("\\d+(\t.*)?")) {
                rows.add(line.split("\t", -1));
            }
        }
        return rows;
    }

    /** The tcpdump summaries (packets captured, dropped by the kernel's capture buffer), for the log. */
    public String summary() {
        StringBuilder b = new StringBuilder("capture on " + device + " in " + ns.name() + ":");
        for (Map.Entry<Integer, Spawned> e : samples.entrySet()) {
            b.append(" tcp ").append(e.getKey()).append(" [").append(tcpdumpCounts(e.getValue())).append(']');
        }
        return b.append(" watcher [").append(tcpdumpCounts(watcher)).append(']').toString();
    }

    private static String tcpdumpCounts(Spawned s) {
        return String.join(", ", s.output().lines().filter(l -> l.contains("packets ")).toList());
    }

    /** Stops whatever still captures (SIGTERM: tcpdump writes its counts and exits); safe to call twice. */
    @Override
    public void close() {
        // A sample that has its frames has exited by itself; closing it again is harmless.
        for (Spawned s : samples.values()) {
            s.close();
        }
        watcher.close();
    }
}
