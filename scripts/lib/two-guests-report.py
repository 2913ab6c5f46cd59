"""Report of scripts/demo --two-guests: reads $VND_WORK/{switch,bridge}/ and prints a summary (and JSON)."""
import json
import os
import re

work = os.environ["VND_WORK"]
secs = os.environ.get("VND_SECS", "?")


def read(mode, name):
    try:
        return open(os.path.join(work, mode, name), errors="replace").read()
    except OSError:
        return ""


def marker(text, name):
    m = re.search(name + r" (\S+)", text)
    return m.group(1) if m else None


def delta(text):
    try:
        return int(marker(text, "VND-CSUM-AFTER")) - int(marker(text, "VND-CSUM-BEFORE"))
    except (TypeError, ValueError):
        return None


def result(mode):
    a, b = read(mode, "a.txt"), read(mode, "b.txt")
    m = re.search(r"([0-9.]+) Gbits/sec.*receiver", a)
    bits = marker(a, "VND-FEATURES") or ""
    try:
        negotiated = json.loads(read(mode, "features.json").strip().splitlines()[-1]).get("negotiated")
    except (ValueError, IndexError, AttributeError):
        negotiated = None
    csum = {"guest_a": delta(a), "guest_b": delta(b)}
    return {
        "gbps": float(m.group(1)) if m else None,
        "ping_ok": "VND-PING rc=0" in a and "VND-PING rc=0" in b,
        "csum": csum,
        "csum_total": None if None in csum.values() else sum(csum.values()),
        "bits": bits,
        "negotiated": negotiated,
        "ready_s": float(read(mode, "ready_s") or "nan"),
    }


rounds = sorted({int(d.split("-")[1]) for d in os.listdir(work) if re.fullmatch(r"(switch|bridge)-\d+", d)})


def best(mode):
    runs = [result("%s-%d" % (mode, r)) for r in rounds]
    ok = [x for x in runs if x["gbps"] is not None]
    pick = max(ok, key=lambda x: x["gbps"]) if ok else runs[0]
    pick = dict(pick)
    pick["all_gbps"] = [x["gbps"] for x in runs]
    pick["ping_ok"] = all(x["ping_ok"] for x in runs)
    totals = [x["csum_total"] for x in runs]
    pick["csum_total"] = None if None in totals else sum(totals)
    pick["csum"] = {k: (None if None in [x["csum"][k] for x in runs] else sum(x["csum"][k] for x in runs))
                    for k in ("guest_a", "guest_b")}
    return pick


sw, br = best("switch"), best("bridge")
ratio = round(sw["gbps"] / br["gbps"], 2) if sw["gbps"] and br["gbps"] else None
fmt = lambda v: "FAILED" if v is None else "%.3f Gbit/s" % v
print("==== virtio-netd demo: two guests ====")
print("--- guest A's device on switch:sw0 (virtio-netd features):")
print(read("switch-%d" % rounds[0], "features.txt").rstrip())
print("ping A <-> B: switch %s, bridge %s" % ("ok" if sw["ping_ok"] else "FAILED", "ok" if br["ping_ok"] else "FAILED"))
print("TCP guest A -> guest B (%ss, best of %d alternated rounds): switch:sw0 %s %s, Linux bridge of two taps %s %s, "
      "ratio %s" % (secs, len(rounds), fmt(sw["gbps"]), sw["all_gbps"], fmt(br["gbps"]), br["all_gbps"], ratio))
print("TCP InCsumErrors added: switch %s, bridge %s" % (sw["csum"], br["csum"]))
if os.environ.get("VND_JSON"):
    print(json.dumps({
        "backend": "virtio-netd switch:sw0",
        "boot_ready_s": sw["ready_s"],
        "negotiated": sw["negotiated"],
        "guest_features": sw["bits"],
        "ping_ok": sw["ping_ok"],
        # Two guests, no host side: these demo fields have nothing to measure here.
        "tcp_guest_to_host_gbps": None,
        "tcp_host_to_guest_gbps": None,
        "tcp_checksum_errors": sw["csum_total"],
        "tcp_checksum_errors_detail": sw["csum"],
        "tcp_guest_to_guest_gbps": sw["gbps"],
        "tcp_guest_to_guest_gbps_rounds": sw["all_gbps"],
        "bridge": {
            "backend": "virtio-netd tap:vnda + tap:vndb in a Linux bridge",
            "ping_ok": br["ping_ok"],
            "tcp_guest_to_guest_gbps": br["gbps"],
            "tcp_guest_to_guest_gbps_rounds": br["all_gbps"],
            "tcp_checksum_errors": br["csum_total"],
            "tcp_checksum_errors_detail": br["csum"],
        },
        "switch_over_bridge": ratio,
    }, separators=(",", ":")))
