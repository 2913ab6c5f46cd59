#!/usr/bin/env python3
"""Sends SIZE-byte IPv4/UDP frames out of a network interface at a fixed rate until SIGTERM (bench cpu).

Usage: paced_sender.py IFACE SIZE RATE
  IFACE  the interface to send on (an AF_PACKET socket bound to it; on a tap, each frame goes to the tap's reader)
  SIZE   the frame's length in bytes, Ethernet header included (60..1514)
  RATE   frames per second (1..5000000)
Frames go out in bursts of RATE * 200 us (one sendmmsg(2) each, at least one frame), so that the rate holds with
Python's sleep granularity. When the sender falls behind by more than 10 bursts it does not catch up: the time is
lost and the achieved rate, printed on exit as 'sent N frames in S s (R/s)', says so. Runs until SIGTERM or SIGINT.
"""
import ctypes
import signal
import socket
import struct
import sys
import time

PERIOD = 200e-6


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(IoVec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class MMsgHdr(ctypes.Structure):  # struct mmsghdr, sendmmsg(2)
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]


def checksum(data):
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def udp_frame(size):
    """02:00:00:00:00:01 -> 02:00:00:00:00:02, IPv4 10.0.0.1 -> 10.0.0.2, UDP to port 9 (discard), no UDP checksum."""
    ip_len = size - 14
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0x4000, 64, 17, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", 9, 9, ip_len - 20, 0)
    eth = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]) + struct.pack("!H", 0x0800)
    return eth + ip + udp + bytes(ip_len - 28)


def parse(argv):
    if len(argv) != 4:
        sys.exit("usage: paced_sender.py IFACE SIZE RATE (see the file's header)")
    iface = argv[1]
    try:
        size, rate = int(argv[2]), int(argv[3])
    except ValueError:
        sys.exit("paced_sender.py: SIZE '%s' and RATE '%s' must be whole numbers" % (argv[2], argv[3]))
    if not 60 <= size <= 1514:
        sys.exit("paced_sender.py: SIZE %d is outside 60..1514" % size)
    if not 1 <= rate <= 5_000_000:
        sys.exit("paced_sender.py: RATE %d is outside 1..5000000 frames per second" % rate)
    return iface, size, rate


def main():
    iface, size, rate = parse(sys.argv)
    libc = ctypes.CDLL(None, use_errno=True)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((iface, 0))
    frame = ctypes.create_string_buffer(udp_frame(size), size)
    burst = max(1, round(rate * PERIOD))
    period = burst / rate
    iov = IoVec(ctypes.cast(frame, ctypes.c_void_p), size)
    msgs = (MMsgHdr * burst)()
    for m in msgs:
        m.hdr.iov = ctypes.pointer(iov)
        m.hdr.iovlen = 1
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sent = 0
    start = due = time.monotonic()
    while not stop:
        n = libc.sendmmsg(sock.fileno(), msgs, burst, 0)
        if n < 0:
            err = ctypes.get_errno()
            if err not in (11, 105, 4):  # EAGAIN, ENOBUFS, EINTR: the kernel is busy, try the next burst
                sys.exit("paced_sender.py: sendmmsg on %s failed: errno %d" % (iface, err))
        else:
            sent += n
        due += period
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif now - due > 10 * period:
            due = now  # behind: drop the lost time rather than send a long burst
    took = time.monotonic() - start
    print("sent %d frames in %.3f s (%.0f/s)" % (sent, took, sent / took if took else 0), flush=True)


if __name__ == "__main__":
    main()
