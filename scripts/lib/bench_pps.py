#!/usr/bin/env python3
"""Packets per second through virtio-netd against dpdk-testpmd's own vhost back-end, in one run.

Each case runs a DPDK virtio_user driver (testpmd, --no-huge) against a back-end for a fixed time:
  tx  (guest -> device): the driver sends SIZE-byte packets (txonly); the back-end copies each one, then drops it.
      virtio-netd: --backend null:copy (header and frame copied into a buffer of its own, as net_vhost copies
      each packet into an mbuf); anchor: testpmd net_vhost in rxonly mode. Rate = what the back-end counted.
  tx-discard: the same with --backend null, which counts a packet without touching it (a second, labelled figure:
      the anchor still copies, so this ratio is not a fair one).
  rx  (device -> guest): the back-end fills the driver's RX ring; the driver counts (rxonly).
      virtio-netd: --backend null:source=SIZE; anchor: net_vhost in txonly mode; rate = driver's RX-packets.
  tap (guest -> tap): the driver sends (txonly); the back-end writes every packet to a tap in a namespace of
      its own. virtio-netd: --backend tap:vndpps0; anchor: testpmd's net_vhost port forwarding (io mode) to its
      net_tap port. Rate = the tap's rx_packets as the kernel counts them, the same counter for both.
  tap-rx (tap -> guest): a third testpmd sends SIZE-byte frames into the tap through an af_packet port (txonly);
      the back-end reads the tap and fills the driver's RX ring (rxonly). virtio-netd: --backend tap:vndpps0;
      anchor: net_vhost and net_tap forwarding (io mode) the other way. Rate = the driver's RX-packets.
Every case reports each side's counter as a rate over the window (read in the same order at both ends of it, each
with its own time), so a loss anywhere on the way shows as a lower rate downstream: sender, kernel, back-end, driver.
--ring split|packed|split,packed picks the ring layout (virtio 1.2 section 2.7 / 2.8) and --in-order adds
VIRTIO_F_IN_ORDER; both are asked for by the driver, virtio_user (packed_vq=0|1, in_order=0|1), so the anchor (DPDK's
vhost library follows what the driver negotiates) and virtio-netd run the same layout. Each case checks the features
the driver logged after negotiation and fails if the ring or IN_ORDER is not what was asked. With two layouts every
run measures both, alternated, and packed_vs_split gives packed/split of each side for each case.
--jar PATH runs another build of virtio-netd; --baseline-jar PATH adds a third side, that build measured in the
same runs (e.g. the jar before a change: ratio_vs_baseline says whether the change cost speed).
Every process started here is stopped and /var/run/dpdk/<prefix> removed, also on failure.
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JAR = os.path.join(ROOT, "vmm-glue", "target", "virtio-netd.jar")
TAP = "vndpps0"
RINGS = ("split", "packed")
DIRECTIONS = ("tx", "tx-discard", "rx", "tap", "tap-rx")
RING_PACKED_BIT = 34  # VIRTIO_F_RING_PACKED, virtio 1.2 section 6
IN_ORDER_BIT = 35  # VIRTIO_F_IN_ORDER


def in_netns(netns, cmd):
    """cmd, run inside network namespace netns when one is given."""
    return (["ip", "netns", "exec", netns] if netns else []) + cmd


def terminate(proc, timeout):
    """SIGTERM to proc, then SIGKILL to its process group if it has not ended within timeout seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def log(msg):
    print(time.strftime("%H:%M:%S") + " [bench pps] " + msg, file=sys.stderr, flush=True)


class TestPmd:
    """An interactive dpdk-testpmd fed through stdin; output collected in a file."""

    def __init__(self, prefix, lcores, vdev, mode, workdir, size, netns=None, eal=()):
        self.prefix = prefix
        self.out_path = os.path.join(workdir, prefix + ".log")
        self.out = open(self.out_path, "w+")
        vdevs = []
        for v in vdev if isinstance(vdev, list) else [vdev]:
            vdevs += ["--vdev", v]
        # stdbuf: testpmd writes through stdio, fully buffered into a file otherwise.
        cmd = in_netns(netns, ["stdbuf", "-o0", "dpdk-testpmd", "--lcores", lcores, "--no-huge", "-m", "256",
                               "--no-pci", "--file-prefix=" + prefix] + list(eal) + vdevs
                       + ["--", "-i", "--forward-mode=" + mode, "--nb-cores=1", "--total-num-mbufs=32768"])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=self.out, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.size = size

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def text(self):
        self.out.flush()
        with open(self.out_path) as f:
            return f.read()

    def wait_for(self, pattern, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.text()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("testpmd %s: no %s within %ss; last output:\n%s"
                           % (self.prefix, what, timeout, "\n".join(self.text().splitlines()[-15:])))

    def counters(self, port=0):
        """Sends 'show port stats PORT' and returns its RX-packets, RX-missed, TX-packets and TX-errors."""
        mark = len(self.text())
        self.send("show port stats %d" % port)
        names = ("RX-packets", "RX-missed", "TX-packets", "TX-errors")
        deadline = time.time() + 10
        while time.time() < deadline:
            out = self.text()[mark:]
            got = {n: re.findall(n + r":\s+(\d+)", out) for n in names}
            if all(got.values()):
                return {n: int(v[0]) for n, v in got.items()}
            time.sleep(0.05)
        raise RuntimeError("testpmd %s did not print port %d's %s; it printed:\n%s"
                           % (self.prefix, port, "/".join(names), self.text()[mark:][-800:]))

    def negotiated_features(self):
        """The feature bits the virtio PMD kept (its init log at debug level: 'features after negotiate = HEX')."""
        m = re.findall(r"features after negotiate = ([0-9a-fA-F]+)", self.text())
        if not m:
            raise RuntimeError("testpmd %s logged no 'features after negotiate' (pmd.net.virtio.init:debug)"
                               % self.prefix)
        return int(m[-1], 16)

    def stop(self):
        try:
            if self.proc.poll() is None:
                self.send("stop")
                self.send("quit")
                self.proc.wait(timeout=15)
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.out.close()
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)


class Device:
    """virtio-netd on a null backend, with a control socket for its counters."""

    def __init__(self, workdir, backend, jar, netns=None):
        self.jar = jar
        self.sock = os.path.join(workdir, "vnd.sock")
        self.ctl = os.path.join(workdir, "vnd.ctl")
        self.log_path = os.path.join(workdir, "device.log")
        self.log = open(self.log_path, "w")
        for p in (self.sock, self.ctl):
            if os.path.exists(p):
                os.unlink(p)
        # VND_BENCH_JAVA_OPTS: JVM options for the device, e.g. a JFR recording (-XX:StartFlightRecording=...).
        java = ["java"] + os.environ.get("VND_BENCH_JAVA_OPTS", "").split()
        self.proc = subprocess.Popen(in_netns(netns, java + ["-jar", jar, "--socket", self.sock, "--backend",
                                                             backend, "--control", self.ctl]),
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while not (os.path.exists(self.sock) and os.path.exists(self.ctl)):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("virtio-netd did not make its sockets; log:\n" + open(self.log_path).read())
            time.sleep(0.1)

    def counters(self):
        """Every per-queue-pair counter of the device, summed over its pairs."""
        out = subprocess.run(["java", "-jar", self.jar, "stats", "--control", self.ctl, "--json"], capture_output=True,
                             text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("virtio-netd stats failed: " + out.stderr)
        total = {}
        for q in json.loads(out.stdout)["queue_pairs"]:
            for k, v in q.items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
        return total

    def stop(self):
        terminate(self.proc, 15)
        self.log.close()


class Netns:
    """A network namespace of its own for the tap case; removed (with its taps) by stop()."""

    def __init__(self):
        self.name = "vndpps-%d" % os.getpid()
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def run(self, *cmd):
        return subprocess.run(in_netns(self.name, list(cmd)), check=True, capture_output=True, text=True).stdout

    def stop(self):
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


def check_layout(features, ring, in_order, who):
    """Raises unless the negotiated features are the ring layout and IN_ORDER that were asked for."""
    packed = bool(features >> RING_PACKED_BIT & 1)
    ordered = bool(features >> IN_ORDER_BIT & 1)
    if packed != (ring == "packed") or ordered != in_order:
        raise RuntimeError("%s negotiated features 0x%x: RING_PACKED %d, IN_ORDER %d; asked for a %s ring, in_order=%d"
                           % (who, features, packed, ordered, ring, in_order))


def probe(read, names):
    """A counter source read once per end of the window: read() gives a dict, names maps its keys to labels."""
    return read, names


def sample(probes):
    """Reads every probe in order; returns {label: (time, value)}, each value with the time of its own read."""
    out = {}
    for read, names in probes:
        t0 = time.time()
        values = read()
        t = (t0 + time.time()) / 2
        for key, label in names.items():
            keys = key if isinstance(key, tuple) else (key,)
            out[label] = (t, sum(values[k] for k in keys))
    return out


def path_probes(direction, driver, backend_pmd, device, sender, ns):
    """The counters along the frames' path, in its order; the last probe's first label is the case's rate."""
    tap_stats = lambda: {k: int(ns.run("cat", "/sys/class/net/%s/statistics/%s" % (TAP, k)))
                         for k in ("rx_packets", "tx_packets", "tx_dropped")}
    driver_sent = probe(driver.counters, {"TX-packets": "driver sent"})
    driver_received = probe(driver.counters, {"RX-packets": "driver received"})
    if device is not None:
        name = {"tx": ("tx_packets", "device sent to null:copy"), "tx-discard": ("tx_packets", "device sent to null"),
                "rx": ("rx_packets", "device received from null:source"), "tap": ("tx_packets", "device sent to tap"),
                "tap-rx": ("rx_packets", "device received from tap")}[direction]
        back_end = [probe(device.counters, {name[0]: name[1]})]
    elif direction == "tap":  # net_vhost is port 0, net_tap port 1 (the order of the --vdev options)
        back_end = [probe(lambda: backend_pmd.counters(0), {"RX-packets": "net_vhost received"}),
                    probe(lambda: backend_pmd.counters(1), {"TX-packets": "net_tap sent"})]
    elif direction == "tap-rx":
        back_end = [probe(lambda: backend_pmd.counters(1), {"RX-packets": "net_tap received"}),
                    probe(lambda: backend_pmd.counters(0), {"TX-packets": "net_vhost sent"})]
    elif direction == "rx":
        back_end = [probe(backend_pmd.counters, {"TX-packets": "net_vhost sent"})]
    else:
        back_end = [probe(backend_pmd.counters, {"RX-packets": "net_vhost received"})]
    if direction == "tap-rx":
        return ([probe(sender.counters, {"TX-packets": "sender sent"}),
                 probe(tap_stats, {"tx_packets": "kernel tap delivered", "tx_dropped": "kernel tap dropped"})]
                + back_end + [driver_received])
    if direction == "tap":
        return [driver_sent] + back_end + [probe(tap_stats, {"rx_packets": "kernel tap received"})]
    if direction == "rx":
        return back_end + [driver_received]
    return [driver_sent] + back_end


def start_af_packet_sender(ns, size, workdir):
    """tap-rx's sender at full rate: testpmd txonly on an af_packet port on the tap."""
    # The sender's forwarding lcore shares CPU 1 with the anchor's, as the device's threads share the cores.
    sender = TestPmd("vndbenchC", "0@0,1@1", "net_af_packet0,iface=" + TAP, "txonly", workdir, size, ns.name)
    sender.wait_for(r"testpmd>", 60, "prompt")
    sender.send("set txpkts %d" % size)
    sender.send("start")
    return sender


def run_case(direction, size, seconds, jar, workdir, ring="split", in_order=False,
             start_sender=start_af_packet_sender, watch=None):
    """One case: virtio-netd from jar, or the anchor if jar is None. Returns (rate in Mpps, {counter label: Mpps},
    watched) where the rate is what reached the end of the path (the back-end for tx, the driver for rx and tap-rx,
    the kernel for tap) and the labels name each side's counter along the path, in its order.
    start_sender(ns, size, workdir) starts tap-rx's sender (an object with counters() giving TX-packets, and stop()).
    watch(pid), if given, is called with the back-end's process id as the window opens; what it returns is asked
    stop() as the window closes, and that is 'watched' (else None)."""
    ours = jar is not None
    sock = os.path.join(workdir, "vhost.sock")
    backend_pmd = device = driver = sender = ns = None
    uses_tap = direction in ("tap", "tap-rx")
    into_guest = direction in ("rx", "tap-rx")
    try:
        if uses_tap:
            ns = Netns()
        if ours:
            if uses_tap:
                ns.run("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
                ns.run("ip", "link", "set", TAP, "up")
                device = Device(workdir, "tap:" + TAP, jar, ns.name)
            else:
                backend = {"tx": "null:copy", "tx-discard": "null", "rx": "null:source=%d" % size}[direction]
                device = Device(workdir, backend, jar)
            sock = device.sock
        else:
            if os.path.exists(sock):
                os.unlink(sock)
            vdev = "net_vhost0,iface=%s,queues=1" % sock
            mode = "txonly" if direction == "rx" else "rxonly"
            if uses_tap:
                vdev = [vdev, "net_tap0,iface=" + TAP]
                mode = "io"
            backend_pmd = TestPmd("vndbenchA", "0@0,1@1", vdev, mode, workdir, size, ns.name if ns else None)
            backend_pmd.wait_for(r"testpmd>", 60, "prompt")
            if direction == "rx":
                backend_pmd.send("set txpkts %d" % size)
            backend_pmd.send("start")
        # in_order is given both ways: virtio_user asks for IN_ORDER unless told in_order=0.
        driver = TestPmd("vndbenchB", "0@1,1@0", "net_virtio_user0,path=%s,queues=1,packed_vq=%d,in_order=%d"
                         % (sock, ring == "packed", in_order),
                         "rxonly" if into_guest else "txonly", workdir, size,
                         eal=["--log-level=pmd.net.virtio.init:debug"])
        driver.wait_for(r"testpmd>", 60, "prompt")
        side = "virtio-netd " + jar if ours else "dpdk net_vhost"
        check_layout(driver.negotiated_features(), ring, in_order, side)
        if not into_guest:
            driver.send("set txpkts %d" % size)
        driver.send("start")
        if direction == "tap-rx":
            sender = start_sender(ns, size, workdir)
        time.sleep(2)  # warm-up: JIT, ring fill; the window below is what counts
        probes = path_probes(direction, driver, backend_pmd, device, sender, ns)
        final = list(probes[-1][1].values())[0]
        watching = watch((device or backend_pmd).proc.pid) if watch else None
        before = sample(probes)
        time.sleep(seconds)
        after = sample(probes)
        watched = watching.stop() if watching else None
        rates = {label: (after[label][1] - before[label][1]) / (after[label][0] - before[label][0]) / 1e6
                 for label in before}
        return rates[final], rates, watched
    finally:
        for p in (sender, driver, backend_pmd, device, ns):
            if p is not None:
                p.stop()


def median(xs):
    return statistics.median(xs) if xs else None


def median_path(runs):
    """The median of each counter's rate over the runs, in Mpps, in the path's order."""
    return {label: round(median([r[label] for r in runs]), 3) for label in runs[0]}


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def fmt(x):
    return "%.2f" % x if x is not None else "n/a"


def parse_args():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,1500")
    ap.add_argument("--directions", default=",".join(DIRECTIONS), help="any of " + ", ".join(DIRECTIONS))
    ap.add_argument("--ring", default="split", help="split, packed or split,packed (both in every run)")
    ap.add_argument("--in-order", action="store_true", help="negotiate VIRTIO_F_IN_ORDER (both sides)")
    ap.add_argument("--time", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--jar", default=JAR)
    ap.add_argument("--baseline-jar")
    a = ap.parse_args()
    a.rings = a.ring.split(",")
    for r in a.rings:
        if r not in RINGS:
            ap.error("--ring wants split, packed or split,packed, got '%s'" % a.ring)
    a.direction_list = a.directions.split(",")
    for d in a.direction_list:
        if d not in DIRECTIONS:
            ap.error("--directions: '%s' is not one of %s" % (d, ", ".join(DIRECTIONS)))
    try:
        a.size_list = [int(x) for x in a.sizes.split(",")]
    except ValueError:
        ap.error("--sizes wants sizes in bytes separated by commas, got '%s'" % a.sizes)
    for x in a.size_list:
        if not 60 <= x <= 1514:
            ap.error("--sizes: %d is outside 60..1514 (a frame the tap's MTU of 1500 takes)" % x)
    if len(set(a.rings)) != len(a.rings):
        ap.error("--ring names a layout twice: '%s'" % a.ring)
    if a.time <= 0:
        ap.error("--time wants seconds > 0, got %s" % a.time)
    if a.runs < 1:
        ap.error("--runs wants a whole number >= 1, got %d" % a.runs)
    return a


def main():
    a = parse_args()
    jars = {"virtio_netd": a.jar}
    if a.baseline_jar:
        jars["baseline"] = a.baseline_jar
    for j in jars.values():
        if not os.path.exists(j):
            sys.exit("no %s: build it first (scripts/virtio-netd with VND_BUILD_ONLY=1)" % j)
    sides = ["dpdk_vhost"] + list(jars)
    # Other processes on the cores skew every figure, ratios too: say how busy the machine was.
    load_before = float(open("/proc/loadavg").read().split()[0])
    if load_before > 0.5:
        log("1-minute load average %.2f before the run: the figures will be noisy" % load_before)
    workdir = tempfile.mkdtemp(prefix="vnd-bench-pps.")
    results = {}
    packed_vs_split = {}
    try:
        for direction in a.direction_list:
            for size in a.size_list:
                rates = {ring: {who: [] for who in sides} for ring in a.rings}
                paths = {ring: {who: [] for who in sides} for ring in a.rings}
                for run in range(a.runs):
                    # The layouts alternate inside each run so that packed/split compares runs of the same moment.
                    for ring in a.rings:
                        for who in sides:
                            r, path, _ = run_case(direction, size, a.time, jars.get(who), workdir, ring,
                                                  a.in_order)
                            rates[ring][who].append(r)
                            paths[ring][who].append(path)
                            log("%s %dB %s run %d/%d %-12s %.2f Mpps   (%s)"
                                % (direction, size, ring, run + 1, a.runs, who, r,
                                   ", ".join("%s %.3f" % kv for kv in path.items())))
                case = "%s_%d" % (direction, size)
                for ring in a.rings:
                    ours = median(rates[ring]["virtio_netd"])
                    anchor = median(rates[ring]["dpdk_vhost"])
                    key = "%s_%s" % (case, ring)
                    results[key] = {"ring": ring, "in_order": a.in_order,
                                    "virtio_netd_mpps": round(ours, 3), "dpdk_vhost_mpps": round(anchor, 3),
                                    "ratio": ratio(ours, anchor),
                                    "runs_virtio_netd": [round(x, 3) for x in rates[ring]["virtio_netd"]],
                                    "runs_dpdk_vhost": [round(x, 3) for x in rates[ring]["dpdk_vhost"]],
                                    "path_mpps": {who: median_path(paths[ring][who]) for who in sides}}
                    line = ("%-18s virtio-netd %6.2f Mpps   dpdk net_vhost %6.2f Mpps   ratio %s"
                            % (key, ours, anchor, fmt(ratio(ours, anchor))))
                    if "baseline" in jars:
                        base = median(rates[ring]["baseline"])
                        results[key].update({"baseline_mpps": round(base, 3),
                                             "baseline_ratio": ratio(base, anchor),
                                             "ratio_vs_baseline": ratio(ours, base),
                                             "runs_baseline": [round(x, 3) for x in rates[ring]["baseline"]]})
                        line += "   baseline %6.2f Mpps (ratio %s)   new/baseline %s" % (
                            base, fmt(ratio(base, anchor)), fmt(ratio(ours, base)))
                    print(line + "   (medians of %d)" % a.runs, flush=True)
                    for who in sides:
                        print("%-18s   %-12s path: %s" % ("", who, ", ".join(
                            "%s %.3f" % kv for kv in results[key]["path_mpps"][who].items())), flush=True)
                if len(a.rings) == 2:
                    packed_vs_split[case] = {who: ratio(median(rates["packed"][who]), median(rates["split"][who]))
                                             for who in sides}
                    print("%-15s packed/split: %s" % (case, "   ".join(
                        "%s %s" % (who.replace("_", "-"), fmt(packed_vs_split[case][who])) for who in sides)),
                        flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if a.json:
        out = {"pps": results, "rings": a.rings, "in_order": a.in_order, "seconds": a.time, "runs": a.runs,
               "load_before": load_before}
        if packed_vs_split:
            out["packed_vs_split"] = packed_vs_split
        print(json.dumps(out))


if __name__ == "__main__":
    main()
