#!/usr/bin/env python3
"""CPU per packet of virtio-netd against dpdk-testpmd's net_vhost, measured in one run (scripts/bench cpu).

1. At fixed offered rates (--rates, frames per second) a paced sender (paced_sender.py, an AF_PACKET socket)
   puts SIZE-byte frames into a tap; the back-end reads the tap and fills the RX ring of a DPDK virtio_user driver
   (testpmd rxonly): the tap-rx case of bench pps with the sender paced, the same sender for both sides.
   virtio-netd: --backend tap:vndpps0; anchor: testpmd's net_vhost + net_tap, io forwarding.
   For each side: the back-end process's CPU over the window, in cores (utime + stime of every thread in
   /proc/PID/task/*/stat over the window's length: 1.0 = one core busy throughout), the rate the driver received,
   and cores per Mpps received. A poll-mode back-end spends its forwarding core whatever the rate.
2. At full rate, each case of bench pps (--directions, default tx, rx, tap, tap-rx): the back-end's CPU time per
   packet that reached the end of the path, in ns, and cycles per packet: perf stat's cycle count where this
   machine counts cycles, else CPU time times the clock rate /proc/cpuinfo gives (labelled 'estimated').
Every process started here is stopped, its namespace and taps removed, also on failure.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_pps  # noqa: E402  (the cases, drivers and back-ends are bench pps's own)

HERE = os.path.dirname(os.path.abspath(__file__))
TICKS = os.sysconf("SC_CLK_TCK")
FULL_RATE = ("tx", "rx", "tap", "tap-rx")


def log(msg):
    print(time.strftime("%H:%M:%S") + " [bench cpu] " + msg, file=sys.stderr, flush=True)


def thread_ticks(pid):
    """{tid: (name, utime + stime in clock ticks)} for every thread of pid (proc(5): fields 14 and 15)."""
    out = {}
    task_dir = "/proc/%d/task" % pid
    for tid in os.listdir(task_dir):
        try:
            with open("%s/%s/stat" % (task_dir, tid)) as f:
                stat = f.read()
        except FileNotFoundError:
            continue  # the thread ended between listdir and open
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
        out[tid] = (name, int(fields[11]) + int(fields[12]))
    return out


def perf_counts_cycles():
    """Whether perf stat counts cycles here (a VM without a PMU says '<not supported>')."""
    try:
        r = subprocess.run(["perf", "stat", "-x,", "-e", "cycles", "true"], capture_output=True, text=True,
                           timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and any(line.split(",")[0].strip().isdigit() for line in r.stderr.splitlines()
                                     if ",cycles" in line)


def clock_hz():
    """The CPU's clock as /proc/cpuinfo reports it (the first 'cpu MHz'), in Hz."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6
    raise RuntimeError("/proc/cpuinfo has no 'cpu MHz' line")


class CpuWatch:
    """The CPU one process spends from construction to stop(), per thread, and its cycles if perf counts them."""

    def __init__(self, pid, perf):
        self.pid = pid
        self.t0 = time.time()
        self.before = thread_ticks(pid)
        self.perf = None
        if perf:
            self.perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "cycles", "-p", str(pid)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self):
        after = thread_ticks(self.pid)
        elapsed = time.time() - self.t0
        cycles = None
        if self.perf is not None:
            self.perf.send_signal(signal.SIGINT)
            err = self.perf.communicate(timeout=30)[1]
            for line in err.splitlines():
                if ",cycles" in line and line.split(",")[0].strip().isdigit():
                    cycles = int(line.split(",")[0])
        per_thread = {}
        for tid, (name, ticks) in after.items():
            spent = ticks - self.before.get(tid, (name, 0))[1]
            if spent > 0:
                per_thread[name] = per_thread.get(name, 0) + spent / TICKS
        seconds = sum(per_thread.values())
        top = sorted(per_thread.items(), key=lambda kv: -kv[1])[:3]
        return {"cpu_seconds": seconds, "elapsed": elapsed, "cores": seconds / elapsed, "cycles": cycles,
                "top_threads": {name: round(s / elapsed, 3) for name, s in top}}


class PacedSender:
    """paced_sender.py on the tap, in its namespace; what it sent is what the tap's kernel counters took in."""

    def __init__(self, ns, size, rate, workdir):
        self.ns = ns
        self.out = open(os.path.join(workdir, "sender.log"), "w+")
        self.proc = subprocess.Popen(bench_pps.in_netns(ns.name, ["python3", os.path.join(HERE, "paced_sender.py"),
                                                                  bench_pps.TAP, str(size), str(rate)]),
                                     stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)

    def counters(self):
        """TX-packets: every frame the tap took from the sender, passed to its reader or dropped (queue full)."""
        read = lambda k: int(self.ns.run("cat", "/sys/class/net/%s/statistics/%s" % (bench_pps.TAP, k)))
        if self.proc.poll() is not None:
            self.out.seek(0)
            raise RuntimeError("paced sender exited with %d: %s" % (self.proc.returncode, self.out.read()[-500:]))
        return {"TX-packets": read("tx_packets") + read("tx_dropped")}

    def stop(self):
        bench_pps.terminate(self.proc, 10)
        self.out.close()


median = bench_pps.median
ratio = bench_pps.ratio


def rounded(x, digits):
    return round(x, digits) if x is not None else None


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="100000,1000000", help="offered rates in frames/s, comma-separated")
    ap.add_argument("--size", type=int, default=64, help="frame length in bytes (60..1514)")
    ap.add_argument("--directions", default=",".join(FULL_RATE), help="full-rate cases: any of " + ", ".join(FULL_RATE)
                    + " or 'none'")
    ap.add_argument("--time", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--jar", default=bench_pps.JAR)
    a = ap.parse_args()
    try:
        a.rate_list = [int(x) for x in a.rates.split(",")] if a.rates != "none" else []
    except ValueError:
        ap.error("--rates wants frames per second separated by commas (or 'none'), got '%s'" % a.rates)
    for r in a.rate_list:
        if not 1 <= r <= 5_000_000:
            ap.error("--rates: %d is outside 1..5000000 frames per second" % r)
    a.direction_list = [] if a.directions == "none" else a.directions.split(",")
    for d in a.direction_list:
        if d not in FULL_RATE:
            ap.error("--directions: '%s' is not one of %s (or 'none')" % (d, ", ".join(FULL_RATE)))
    if not 60 <= a.size <= 1514:
        ap.error("--size: %d is outside 60..1514" % a.size)
    if a.time <= 0:
        ap.error("--time wants seconds > 0, got %s" % a.time)
    if a.runs < 1:
        ap.error("--runs wants a whole number >= 1, got %d" % a.runs)
    return a


SIDES = (("dpdk_vhost", None), ("virtio_netd", "jar"))


def main():
    a = parse_args()
    if not os.path.exists(a.jar):
        sys.exit("no %s: build it first (scripts/virtio-netd with VND_BUILD_ONLY=1)" % a.jar)
    load_before = float(open("/proc/loadavg").read().split()[0])
    if load_before > 0.5:
        log("1-minute load average %.2f before the run: the figures will be noisy" % load_before)
    perf = perf_counts_cycles()
    hz = None if perf else clock_hz()
    if not perf:
        log("perf stat counts no cycles on this machine: cycles per packet are CPU time x %.0f MHz" % (hz / 1e6))
    workdir = tempfile.mkdtemp(prefix="vnd-bench-cpu.")
    paced, full = {}, {}
    try:
        for rate in a.rate_list:
            runs = {who: [] for who, _ in SIDES}
            for run in range(a.runs):
                for who, jar in SIDES:
                    sender = lambda ns, size, wd, rate=rate: PacedSender(ns, size, rate, wd)
                    got, path, cpu = bench_pps.run_case("tap-rx", a.size, a.time, a.jar if jar else None, workdir,
                                                        start_sender=sender, watch=lambda pid: CpuWatch(pid, False))
                    runs[who].append({"offered_mpps": path["sender sent"], "received_mpps": got,
                                      "cores": cpu["cores"], "top_threads": cpu["top_threads"]})
                    log("paced %d/s run %d/%d %-12s offered %.3f Mpps, received %.3f Mpps, %.3f cores (%s)"
                        % (rate, run + 1, a.runs, who, path["sender sent"], got, cpu["cores"],
                           ", ".join("%s %.3f" % kv for kv in cpu["top_threads"].items())))
            row = {}
            for who, _ in SIDES:
                offered = median([r["offered_mpps"] for r in runs[who]])
                received = median([r["received_mpps"] for r in runs[who]])
                cores = median([r["cores"] for r in runs[who]])
                row[who] = {"offered_mpps": round(offered, 4), "received_mpps": round(received, 4),
                            "cores": round(cores, 3), "cores_per_mpps": ratio(cores, received),
                            "runs": runs[who]}
            row["cores_ratio"] = ratio(row["virtio_netd"]["cores"], row["dpdk_vhost"]["cores"])
            paced["tap-rx_%d_%dpps" % (a.size, rate)] = row
            print("tap-rx %dB at %7d/s   virtio-netd %.3f cores (%.3f Mpps received)   dpdk net_vhost %.3f cores "
                  "(%.3f Mpps)   cores ratio %s   (medians of %d)"
                  % (a.size, rate, row["virtio_netd"]["cores"], row["virtio_netd"]["received_mpps"],
                     row["dpdk_vhost"]["cores"], row["dpdk_vhost"]["received_mpps"], row["cores_ratio"], a.runs),
                  flush=True)
        for direction in a.direction_list:
            runs = {who: [] for who, _ in SIDES}
            for run in range(a.runs):
                for who, jar in SIDES:
                    got, _, cpu = bench_pps.run_case(direction, a.size, a.time, a.jar if jar else None, workdir,
                                                     watch=lambda pid: CpuWatch(pid, perf))
                    packets = got * 1e6 * cpu["elapsed"]
                    cycles = cpu["cycles"] if perf else cpu["cpu_seconds"] * hz
                    runs[who].append({"mpps": got, "cores": cpu["cores"],
                                      "cpu_ns_per_packet": cpu["cpu_seconds"] / packets * 1e9 if packets else None,
                                      "cycles_per_packet": cycles / packets if packets and cycles else None})
                    log("full rate %s %dB run %d/%d %-12s %.3f Mpps, %.3f cores, %.0f ns CPU per packet"
                        % (direction, a.size, run + 1, a.runs, who, got, cpu["cores"],
                           runs[who][-1]["cpu_ns_per_packet"] or 0))
            row = {}
            for who, _ in SIDES:
                med = lambda k, digits: rounded(median([r[k] for r in runs[who] if r[k] is not None]), digits)
                row[who] = {"mpps": med("mpps", 3), "cores": med("cores", 3),
                            "cpu_ns_per_packet": med("cpu_ns_per_packet", 1),
                            "cycles_per_packet": med("cycles_per_packet", 0), "runs": runs[who]}
            row["cycles_estimated"] = not perf
            row["cycles_ratio"] = ratio(row["virtio_netd"]["cycles_per_packet"],
                                        row["dpdk_vhost"]["cycles_per_packet"])
            full["%s_%d" % (direction, a.size)] = row
            print("%-7s %dB full rate   virtio-netd %s Mpps, %s cycles/packet%s   dpdk net_vhost %s Mpps, "
                  "%s cycles/packet   cycles ratio %s   (medians of %d)"
                  % (direction, a.size, row["virtio_netd"]["mpps"], row["virtio_netd"]["cycles_per_packet"],
                     " (estimated)" if not perf else "", row["dpdk_vhost"]["mpps"],
                     row["dpdk_vhost"]["cycles_per_packet"], row["cycles_ratio"], a.runs), flush=True)
    finally:
        subprocess.run(["rm", "-rf", workdir])
    if a.json:
        print(json.dumps({"cpu": {"paced": paced, "full_rate": full}, "size": a.size, "seconds": a.time,
                          "runs": a.runs, "perf_cycles": perf, "clock_hz": hz, "load_before": load_before}))


if __name__ == "__main__":
    main()
