package org.virtionetd.backends.offload;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Helpers for the tests that make the Linux kernel the judge of the software offload engine: a reader of the pcap
 * files the capture writes, and MAC, hex and frame-difference text for failure messages. Namespaces and processes
 * are the virtio test-jar's {@link org.virtionetd.virtio.testsupport.NetNs} and
 * {@link org.virtionetd.virtio.testsupport.Spawned}.
 */
final class KernelNet {
    private KernelNet() {
    }

    static void sleepMillis(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    /**
     * The frames of a pcap file (classic format, as tcpdump -w writes it; either byte order) that are complete so
     * far: tcpdump -U may be in the middle of a record, which is then left for the next read.
     */
    static List<byte[]> readPcap(Path file) throws IOException {
        byte[] all = Files.readAllBytes(file);
        List<byte[]> frames = new ArrayList<>();
        if (all.length < 24) {
            return frames;
        }
        ByteBuffer b = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        int magic = b.getInt(0);
        if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) {
            b.order(ByteOrder.BIG_ENDIAN);
        } else if (magic != 0xa1b2c3d4 && magic != 0xa1b23c4d) {
            throw new AssertionError(file + " is not a pcap file: magic 0x" + Integer.toHexString(magic));
        }
        int linkType = b.getInt(20);
        if (linkType != 1) {
            throw new AssertionError(file + " has link type " + linkType + ", not Ethernet (1)");
        }
        int at = 24;
        while (at + 16 <= all.length) {
            int incl = b.getInt(at + 8);
            int orig = b.getInt(at + 12);
            if (at + 16 + incl > all.length) {
                break;
            }
            if (incl != orig) {
                throw new AssertionError("pcap record truncated by the snap length: " + incl + " of " + orig);
            }
            frames.add(Arrays.copyOfRange(all, at + 16, at + 16 + incl));
            at += 16 + incl;
        }
        return frames;
    }

    static byte[] mac(String text) {
        String[] p = text.split(":");
        byte[] m = new byte[6];
        for (int i = 0; i < 6; i++) {
            m[i] = (byte) Integer.parseInt(p[i], 16);
        }
        return m;
    }

    static String hex(byte[] b, int from, int to) {
        StringBuilder s = new StringBuilder();
        for (int i = Math.max(0, from); i < Math.min(b.length, to); i++) {
            s.append(String.format("%02x", b[i] & 0xff));
        }
        return s.toString();
    }

    /** Where two frames first differ, with some context, for failure messages. */
    static String diff(byte[] want, byte[] got) {
        int n = Math.min(want.length, got.length);
        int i = 0;
        while (i < n && want[i] == got[i]) {
            i++;
        }
        if (i == n && want.length == got.length) {
            return "identical";
        }
        return "lengths " + want.length + " (software) vs " + got.length + " (kernel); first difference at byte " + i
                + ": software " + hex(want, i - 4, i + 12) + " kernel " + hex(got, i - 4, i + 12)
                + " (from byte " + Math.max(0, i - 4) + ")";
    }
}
