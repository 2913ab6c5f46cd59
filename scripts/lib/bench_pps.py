#!/usr/bin/env python3
"""Packets per second through virtio-netd against dpdk-testpmd's own vhost back-end, in one run.

Each case runs a DPDK virtio_user driver (testpmd, --no-huge) against a back-end for a fixed time:
  tx  (guest -> device): the driver sends SIZE-byte packets (txonly); the back-end discards them.
      virtio-netd: --backend null, rate = its tx_packets counter over the window.
      anchor: testpmd net_vhost in rxonly mode, rate = its RX-packets over the window.
  rx  (device -> guest): the back-end fills the driver's RX ring; the driver counts (rxonly).
      virtio-netd: --backend null:source=SIZE; anchor: net_vhost in txonly mode; rate = driver's RX-packets.
  tap (guest -> tap): the driver sends (txonly); the back-end writes every packet to a tap in a namespace of
      its own. virtio-netd: --backend tap:vndpps0; anchor: testpmd's net_vhost port forwarding (io mode) to its
      net_tap port. Rate = the tap's rx_packets as the kernel counts them, the same counter for both.
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


def in_netns(netns, cmd):
    """cmd, run inside network namespace netns when one is given."""
    return (["ip", "netns", "exec", netns] if netns else []) + cmd


def log(msg):
    print(time.strftime("%H:%M:%S") + " [bench pps] " + msg, file=sys.stderr, flush=True)


class TestPmd:
    """An interactive dpdk-testpmd fed through stdin; output collected in a file."""

    def __init__(self, prefix, lcores, vdev, mode, workdir, size, netns=None):
        self.prefix = prefix
        self.out_path = os.path.join(workdir, prefix + ".log")
        self.out = open(self.out_path, "w+")
        vdevs = []
        for v in vdev if isinstance(vdev, list) else [vdev]:
            vdevs += ["--vdev", v]
        # stdbuf: testpmd writes through stdio, fully buffered into a file otherwise.
        cmd = in_netns(netns, ["stdbuf", "-o0", "dpdk-testpmd", "--lcores", lcores, "--no-huge", "-m", "256",
                               "--no-pci", "--file-prefix=" + prefix] + vdevs
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

    def counter(self, name):
        """Sends 'show port stats all' and returns the newest value of NAME (RX-packets or TX-packets)."""
        mark = len(self.text())
        self.send("show port stats all")
        deadline = time.time() + 10
        while time.time() < deadline:
            m = re.findall(name + r":\s+(\d+)", self.text()[mark:])
            if m:
                return int(m[0])
            time.sleep(0.05)
        raise RuntimeError("testpmd %s did not print %s" % (self.prefix, name))

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
        self.proc = subprocess.Popen(in_netns(netns, ["java", "-jar", jar, "--socket", self.sock, "--backend",
                                                      backend, "--control", self.ctl]),
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while not (os.path.exists(self.sock) and os.path.exists(self.ctl)):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("virtio-netd did not make its sockets; log:\n" + open(self.log_path).read())
            time.sleep(0.1)

    def counter(self, name):
        out = subprocess.run(["java", "-jar", self.jar, "stats", "--control", self.ctl, "--json"], capture_output=True,
                             text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("virtio-netd stats failed: " + out.stderr)
        return sum(q[name] for q in json.loads(out.stdout)["queue_pairs"])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
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


def run_case(direction, size, seconds, jar, workdir):
    """Returns the rate in Mpps of one case: virtio-netd from jar, or the anchor if jar is None."""
    ours = jar is not None
    sock = os.path.join(workdir, "vhost.sock")
    backend_pmd = device = driver = ns = None
    try:
        if direction == "tap":
            ns = Netns()
        if ours:
            if direction == "tap":
                ns.run("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
                ns.run("ip", "link", "set", TAP, "up")
                device = Device(workdir, "tap:" + TAP, jar, ns.name)
            else:
                device = Device(workdir, "null" if direction == "tx" else "null:source=%d" % size, jar)
            sock = device.sock
        else:
            if os.path.exists(sock):
                os.unlink(sock)
            vdev = "net_vhost0,iface=%s,queues=1" % sock
            mode = "rxonly" if direction == "tx" else "txonly"
            if direction == "tap":
                vdev = [vdev, "net_tap0,iface=" + TAP]
                mode = "io"
            backend_pmd = TestPmd("vndbenchA", "0@0,1@1", vdev, mode, workdir, size, ns.name if ns else None)
            backend_pmd.wait_for(r"testpmd>", 60, "prompt")
            if direction == "rx":
                backend_pmd.send("set txpkts %d" % size)
            backend_pmd.send("start")
        driver = TestPmd("vndbenchB", "0@1,1@0", "net_virtio_user0,path=%s,queues=1" % sock,
                         "rxonly" if direction == "rx" else "txonly", workdir, size)
        driver.wait_for(r"testpmd>", 60, "prompt")
        if direction != "rx":
            driver.send("set txpkts %d" % size)
        driver.send("start")
        time.sleep(2)  # warm-up: JIT, ring fill; the window below is what counts
        if direction == "tap":
            read = lambda: int(ns.run("cat", "/sys/class/net/%s/statistics/rx_packets" % TAP))
        elif direction == "tx":
            read = (lambda: device.counter("tx_packets")) if ours else (lambda: backend_pmd.counter("RX-packets"))
        else:
            read = lambda: driver.counter("RX-packets")
        t0 = time.time()
        c0 = read()
        time.sleep(seconds)
        c1 = read()
        t1 = time.time()
        return (c1 - c0) / (t1 - t0) / 1e6
    finally:
        for p in (driver, backend_pmd, device, ns):
            if p is not None:
                p.stop()


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,1500")
    ap.add_argument("--directions", default="tx,rx,tap")
    ap.add_argument("--time", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--jar", default=JAR)
    ap.add_argument("--baseline-jar")
    a = ap.parse_args()
    jars = {"virtio_netd": a.jar}
    if a.baseline_jar:
        jars["baseline"] = a.baseline_jar
    for j in jars.values():
        if not os.path.exists(j):
            sys.exit("no %s: build it first (scripts/virtio-netd with VND_BUILD_ONLY=1)" % j)
    workdir = tempfile.mkdtemp(prefix="vnd-bench-pps.")
    results = {}
    try:
        for direction in a.directions.split(","):
            for size in [int(s) for s in a.sizes.split(",")]:
                rates = {"virtio_netd": [], "dpdk_vhost": [], "baseline": []}
                for run in range(a.runs):
                    for who in ["dpdk_vhost"] + list(jars):
                        r = run_case(direction, size, a.time, jars.get(who), workdir)
                        rates[who].append(r)
                        log("%s %dB run %d/%d %-12s %.2f Mpps" % (direction, size, run + 1, a.runs, who, r))
                ours = statistics.median(rates["virtio_netd"])
                anchor = statistics.median(rates["dpdk_vhost"])
                key = "%s_%d" % (direction, size)
                results[key] = {"virtio_netd_mpps": round(ours, 3), "dpdk_vhost_mpps": round(anchor, 3),
                                "ratio": round(ours / anchor, 3) if anchor > 0 else None,
                                "runs_virtio_netd": [round(x, 3) for x in rates["virtio_netd"]],
                                "runs_dpdk_vhost": [round(x, 3) for x in rates["dpdk_vhost"]]}
                line = ("%-8s virtio-netd %6.2f Mpps   dpdk net_vhost %6.2f Mpps   ratio %.2f"
                        % (key, ours, anchor, ours / anchor if anchor else float("nan")))
                if rates["baseline"]:
                    base = statistics.median(rates["baseline"])
                    results[key].update({"baseline_mpps": round(base, 3),
                                         "baseline_ratio": round(base / anchor, 3) if anchor > 0 else None,
                                         "ratio_vs_baseline": round(ours / base, 3) if base > 0 else None,
                                         "runs_baseline": [round(x, 3) for x in rates["baseline"]]})
                    line += "   baseline %6.2f Mpps (ratio %.2f)   new/baseline %.2f" % (
                        base, base / anchor if anchor else float("nan"), ours / base if base else float("nan"))
                print(line + "   (medians of %d)" % a.runs, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if a.json:
        print(json.dumps({"pps": results, "seconds": a.time, "runs": a.runs}))


if __name__ == "__main__":
    main()
