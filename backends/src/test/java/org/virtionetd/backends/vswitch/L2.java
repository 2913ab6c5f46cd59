package org.virtionetd.backends.vswitch;

import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** Ethernet frames and raw-port helpers for switch tests: the test thread plays a port's device. */
final class L2 {
    static final long BROADCAST = 0xffff_ffff_ffffL;
    static final long ALL_FEATURES = VirtioNetFeature.OFFLOADS;

    private L2() {
    }

    static long mac(int last) {
        return 0x5254_0000_0000L | last;
    }

    static void putMac(byte[] f, int at, long mac) {
        for (int i = 0; i < 6; i++) {
            f[at + i] = (byte) (mac >>> (40 - 8 * i));
        }
    }

    /** dst, src, optional 802.1Q tag (vid >= 0), EtherType 0x88b5 (local experimental), payload of {@code tag}. */
    static byte[] frame(long dst, long src, int vid, int payload, int tag) {
        int l2 = vid >= 0 ? 18 : 14;
        byte[] f = new byte[l2 + payload];
        putMac(f, 0, dst);
        putMac(f, 6, src);
        int at = 12;
        if (vid >= 0) {
            f[12] = (byte) 0x81;
            f[13] = 0;
            f[14] = (byte) (vid >>> 8);
            f[15] = (byte) vid;
            at = 16;
        }
        f[at] = (byte) 0x88;
        f[at + 1] = (byte) 0xb5;
        for (int i = l2; i < f.length; i++) {
            f[i] = (byte) (tag + i);
        }
        return f;
    }

    /** A raw port configured as a VERSION_1 driver accepting {@code guestOffloads}. */
    static SwitchPort rawPort(VirtualSwitch sw, String name, VlanSet vlans, long guestOffloads) throws Exception {
        SwitchPort p = sw.attach(name, vlans, true);
        p.configure(guestOffloads | (VirtioNetFeature.HOST_OFFLOADS), VirtioNetHeader.LENGTH_MRG);
        return p;
    }

    /** Sends {@code frame} with a header (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset). */
    static boolean send(SwitchPort p, byte[] frame, int... header) {
        Packet pk = new Packet(1);
        pk.reset(VirtioNetHeader.LENGTH_MRG);
        if (header.length == 6) {
            pk.header().flags(header[0]).gsoType(header[1]).hdrLen(header[2]).gsoSize(header[3])
                    .csumStart(header[4]).csumOffset(header[5]);
        }
        ByteBuffer b = ByteBuffer.allocateDirect(frame.length + 7);
        b.position(7);
        b.put(frame);
        b.position(7);
        pk.add(b);
        return p.send(pk);
    }

    /** The next frame for {@code p} as {header (12 bytes), frame}, or null when none waits. */
    static byte[][] receive(SwitchPort p) {
        int n = p.peekLength();
        if (n == 0) {
            return null;
        }
        ByteBuffer a = ByteBuffer.allocate(5).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer b = ByteBuffer.allocateDirect(n);
        int got = p.receive(new ByteBuffer[] {a, b}, 2);
        if (got != n) {
            throw new AssertionError("port " + p.name() + " peekLength said " + n + " but receive gave " + got);
        }
        byte[] all = new byte[n];
        a.get(0, all, 0, 5);
        b.get(0, all, 5, n - 5);
        byte[] hdr = java.util.Arrays.copyOf(all, 12);
        byte[] frame = java.util.Arrays.copyOfRange(all, 12, n);
        return new byte[][] {hdr, frame};
    }

    /** Everything waiting for {@code p}. */
    static java.util.List<byte[][]> drain(SwitchPort p) {
        java.util.List<byte[][]> out = new java.util.ArrayList<>();
        for (byte[][] f; (f = receive(p)) != null; ) {
            out.add(f);
        }
        return out;
    }
}
