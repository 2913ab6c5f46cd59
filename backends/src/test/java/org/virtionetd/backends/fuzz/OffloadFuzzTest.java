package org.virtionetd.backends.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.virtionetd.backends.offload.OffloadResult;
import org.virtionetd.backends.offload.SoftwareOffload;
import org.virtionetd.virtio.fuzz.FuzzInput;
import org.virtionetd.virtio.net.HeaderCheck;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetFeature;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Coverage-guided fuzzing of what a driver's vnet header asks of the device (virtio 1.2, 5.1.6.2): random
 * negotiated offloads, header fields and frame bytes, the frame cut into slices, through
 * {@link HeaderCheck#transmitted} and {@link SoftwareOffload#process}.
 *
 * <p>Invariants: neither throws; the input slices are not modified; a drop produces nothing, OK at least one frame,
 * a refusing sink stops the outputs there. When the header passed {@link HeaderCheck} and the engine said OK, the
 * outputs are checked by an independent reading of the frames (RFC 1071 sums written out here, not the engine's
 * {@code InternetChecksum}): a plain frame passes unchanged, a NEEDS_CSUM frame differs only in its completed
 * checksum, TCP/USO segments carry at most gso_size payload bytes behind the original headers with valid IPv4 header
 * and L4 checksums, consecutive sequence numbers and the original payload in order, UFO fragments reassemble to
 * the original datagram whose UDP checksum verifies.
 *
 * <p>Input layout ({@link FuzzInput}, little-endian): u8 negotiated-feature bits (CSUM, HOST_TSO4, HOST_TSO6,
 * HOST_UFO, HOST_USO, HOST_ECN), the 10-byte virtio_net_hdr, u8 slice count and u16 cut points, u8 "sink refuses
 * output k" (0: never), then the frame.
 */
class OffloadFuzzTest {
    static final int[] FEATURES = {VirtioNetFeature.CSUM, VirtioNetFeature.HOST_TSO4, VirtioNetFeature.HOST_TSO6,
        VirtioNetFeature.HOST_UFO, VirtioNetFeature.HOST_USO, VirtioNetFeature.HOST_ECN};

    private final SoftwareOffload engine = new SoftwareOffload();
    private final Packet packet = new Packet(8);

    @FuzzTest(maxDuration = "5m")
    void offload(byte[] data) {
        FuzzInput in = new FuzzInput(data);
        int featureBits = in.u8();
        long negotiated = 0;
        for (int i = 0; i < FEATURES.length; i++) {
            if ((featureBits & (1 << i)) != 0) {
                negotiated |= VirtioNetFeature.bits(FEATURES[i]);
            }
        }
        int flags = in.u8();
        int gsoType = in.u8();
        int hdrLen = in.u16();
        int gsoSize = in.u16();
        int csumStart = in.u16();
        int csumOffset = in.u16();
        int pieces = 1 + in.u8() % 4;
        int[] cuts = new int[pieces - 1];
        for (int i = 0; i < cuts.length; i++) {
            cuts[i] = in.u16();
        }
        int refuseAt = in.u8() % 8;
        byte[] frame = in.rest();

        packet.reset(VirtioNetHeader.LENGTH_MRG);
        packet.header().flags(flags).gsoType(gsoType).hdrLen(hdrLen).gsoSize(gsoSize).csumStart(csumStart)
                .csumOffset(csumOffset);
        for (int i = 0; i < cuts.length; i++) {
            cuts[i] = frame.length == 0 ? 0 : cuts[i] % (frame.length + 1);
        }
        Arrays.sort(cuts);
        List<ByteBuffer> slices = new ArrayList<>();
        int from = 0;
        for (int i = 0; i <= cuts.length; i++) {
            int to = i < cuts.length ? cuts[i] : frame.length;
            // Each slice is a view with a non-zero position: nothing may assume position 0.
            ByteBuffer s = (i & 1) == 0 ? ByteBuffer.allocate(to - from + 3) : ByteBuffer.allocateDirect(to - from + 3);
            s.position(3);
            s.put(frame, from, to - from);
            s.position(3);
            slices.add(s);
            packet.add(s);
            from = to;
        }

        HeaderCheck.Verdict verdict = HeaderCheck.transmitted(packet.header(), negotiated, frame.length);
        List<byte[]> out = new ArrayList<>();
        OffloadResult r = engine.process(packet, f -> {
            byte[] b = new byte[f.remaining()];
            f.get(f.position(), b);
            out.add(b);
            return out.size() != refuseAt;
        });

        // The input is read-only (2.7.5: the device does not write device-readable buffers).
        from = 0;
        for (ByteBuffer s : slices) {
            check(s.position() == 3, "engine moved an input slice's position to " + s.position());
            for (int i = 0; i < s.remaining(); i++) {
                check(s.get(3 + i) == frame[from + i], "engine changed input byte " + (from + i));
            }
            from += s.remaining();
        }
        for (byte[] o : out) {
            check(o.length <= SoftwareOffload.MAX_FRAME_LENGTH + 8, "output of " + o.length + " bytes");
        }
        if (r.isDrop()) {
            check(out.isEmpty(), "dropped (" + r + ") but produced " + out.size() + " frames");
            boolean plain = (flags & VirtioNetHeader.F_NEEDS_CSUM) == 0 && gsoType == VirtioNetHeader.GSO_NONE;
            check(!(verdict == HeaderCheck.Verdict.OK && plain && frame.length <= SoftwareOffload.MAX_FRAME_LENGTH),
                    "a valid plain frame was dropped: " + r);
            return;
        }
        if (r == OffloadResult.SINK_REFUSED) {
            check(out.size() == refuseAt, "sink refused output " + refuseAt + " but " + out.size() + " were made");
            return;
        }
        check(r == OffloadResult.OK && !out.isEmpty(), r + " with " + out.size() + " frames");
        if (verdict != HeaderCheck.Verdict.OK) {
            return; // the device never hands such a packet on; only "no exception, no garbage size" applies
        }
        boolean needsCsum = (flags & VirtioNetHeader.F_NEEDS_CSUM) != 0;
        int proto = gsoType & ~VirtioNetHeader.GSO_ECN;
        if (proto == VirtioNetHeader.GSO_NONE) {
            check(out.size() == 1, out.size() + " frames for a non-GSO frame");
            byte[] expected = frame.clone();
            if (needsCsum) {
                int at = csumStart + csumOffset;
                int c = ~Checksums.sum(frame, csumStart, frame.length - csumStart) & 0xffff;
                c = c == 0 ? 0xffff : c;
                expected[at] = (byte) (c >>> 8);
                expected[at + 1] = (byte) c;
            }
            check(Arrays.equals(expected, out.get(0)), "NEEDS_CSUM/plain output differs from the expected frame");
            return;
        }
        Frame original = Frame.parse(frame);
        check(original != null, "engine segmented a frame the checker cannot parse");
        if (proto == VirtioNetHeader.GSO_UDP) {
            checkUfo(frame, original, out, gsoSize, needsCsum);
        } else {
            checkSegments(frame, original, out, gsoSize, proto == VirtioNetHeader.GSO_UDP_L4);
        }
    }

    /** TCP (TSO) and UDP_L4 (USO) segmentation. */
    static void checkSegments(byte[] frame, Frame orig, List<byte[]> out, int mss, boolean udp) {
        int h = udp ? orig.l4 + 8 : orig.payload;
        int payload = frame.length - h;
        check(out.size() == (payload + mss - 1) / mss, out.size() + " segments for " + payload + " bytes with mss "
                + mss);
        ByteArrayOutputStream joined = new ByteArrayOutputStream();
        long seq0 = Checksums.u32(frame, orig.l4 + 4);
        for (int i = 0; i < out.size(); i++) {
            byte[] s = out.get(i);
            Frame f = Frame.parse(s);
            check(f != null && f.l4 == orig.l4 && f.ipVersion == orig.ipVersion, "segment " + i + " unparseable");
            check(s.length - h <= mss && s.length > h, "segment " + i + " of " + s.length + " bytes, headers " + h
                    + ", mss " + mss);
            checkIp(s, f, "segment " + i);
            check(Checksums.l4Ok(s, f, udp ? 17 : 6), "segment " + i + ": L4 checksum does not verify");
            if (udp) {
                check(Checksums.u16(s, f.l4 + 4) == s.length - f.l4, "segment " + i + ": UDP length wrong");
            } else {
                check(Checksums.u32(s, f.l4 + 4) == ((seq0 + (long) i * mss) & 0xffffffffL), "segment " + i
                        + ": sequence number " + Checksums.u32(s, f.l4 + 4));
            }
            joined.write(s, h, s.length - h);
        }
        check(Arrays.equals(joined.toByteArray(), Arrays.copyOfRange(frame, h, frame.length)),
                "segments do not carry the original payload in order");
    }

    /** UFO: IP fragments of the datagram (or the datagram whole when it fits). */
    static void checkUfo(byte[] frame, Frame orig, List<byte[]> out, int gsoSize, boolean needsCsum) {
        int datagram = frame.length - orig.l4;
        ByteArrayOutputStream joined = new ByteArrayOutputStream();
        int expectedOffset = 0;
        for (int i = 0; i < out.size(); i++) {
            byte[] s = out.get(i);
            boolean last = i == out.size() - 1;
            int dataAt;
            if (orig.ipVersion == 4) {
                Frame f = Frame.parse(s);
                check(f != null, "fragment " + i + " unparseable");
                if (out.size() > 1) {
                    checkIp(s, f, "fragment " + i);
                } else {
                    // Not fragmented: the headers are the driver's, passed on as they were (only the UDP
                    // checksum is completed), so a wrong IPv4 header checksum from the driver stays wrong.
                    check(Arrays.equals(Arrays.copyOf(s, orig.l4), Arrays.copyOf(frame, orig.l4)),
                            "unfragmented UFO datagram: headers changed");
                }
                int fo = Checksums.u16(s, f.l3 + 6);
                if (out.size() > 1) {
                    check((fo & 0x1fff) * 8 == expectedOffset && ((fo & 0x2000) != 0) == !last,
                            "fragment " + i + ": offset/MF 0x" + Integer.toHexString(fo));
                }
                dataAt = orig.l4;
            } else if (out.size() > 1) {
                int fragAt = orig.l4;
                check(s[orig.l3 + 6] == 44 && s[fragAt] == 17, "IPv6 fragment " + i + " without a fragment header");
                int fo = Checksums.u16(s, fragAt + 2);
                check((fo & ~7) == expectedOffset && ((fo & 1) != 0) == !last, "IPv6 fragment " + i + ": offset 0x"
                        + Integer.toHexString(fo));
                check(Checksums.u16(s, orig.l3 + 4) == s.length - orig.l3 - 40, "IPv6 fragment " + i
                        + ": payload length");
                dataAt = fragAt + 8;
            } else {
                dataAt = orig.l4;
            }
            int len = s.length - dataAt;
            check(out.size() == 1 || len <= (gsoSize & ~7), "fragment " + i + " carries " + len + " bytes, gso_size "
                    + gsoSize);
            check(last || len % 8 == 0, "fragment " + i + " not a multiple of 8 bytes");
            joined.write(s, dataAt, len);
            expectedOffset += len;
        }
        byte[] whole = joined.toByteArray();
        check(whole.length == datagram, "fragments carry " + whole.length + " bytes of a " + datagram + "-byte datagram");
        // Everything but the UDP checksum is the original datagram.
        byte[] expect = Arrays.copyOfRange(frame, orig.l4, frame.length);
        if (needsCsum) {
            expect[6] = whole[6];
            expect[7] = whole[7];
            byte[] rebuilt = frame.clone();
            System.arraycopy(whole, 0, rebuilt, orig.l4, whole.length);
            check(Checksums.l4Ok(rebuilt, orig, 17), "reassembled UDP checksum does not verify");
        }
        check(Arrays.equals(expect, whole), "fragments do not reassemble to the original datagram");
    }

    static void checkIp(byte[] s, Frame f, String what) {
        if (f.ipVersion == 4) {
            int ihl = (s[f.l3] & 0x0f) * 4;
            check(Checksums.sum(s, f.l3, ihl) == 0xffff, what + ": IPv4 header checksum does not verify");
            check(Checksums.u16(s, f.l3 + 2) == s.length - f.l3, what + ": IPv4 total length "
                    + Checksums.u16(s, f.l3 + 2) + " for " + (s.length - f.l3) + " bytes");
        } else {
            check(Checksums.u16(s, f.l3 + 4) == s.length - f.l3 - 40, what + ": IPv6 payload length");
        }
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }
}
