package org.virtionetd.backends.offload;

import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static org.virtionetd.backends.offload.FrameLayout.IPPROTO_FRAGMENT;
import static org.virtionetd.backends.offload.FrameLayout.IPPROTO_TCP;
import static org.virtionetd.backends.offload.FrameLayout.IPPROTO_UDP;
import static org.virtionetd.backends.offload.FrameLayout.IPV6_FRAG_HLEN;
import static org.virtionetd.backends.offload.FrameLayout.IPV6_HLEN;
import static org.virtionetd.backends.offload.FrameLayout.UDP_HLEN;

/**
 * Does in software what a virtio_net_hdr asks of the device (virtio 1.2, 5.1.6.2) for a peer that cannot:
 * completes a partial checksum (NEEDS_CSUM) and segments GSO frames (TCPV4, TCPV6, UDP as IP fragmentation,
 * UDP_L4). The outputs are plain frames, correct on the wire, handed one at a time to a {@link FrameSink}.
 *
 * <p>One engine per event-loop thread: it owns a header scratch and one output buffer, reused for every output,
 * so nothing is allocated per packet. The input frame is only read (a driver's TX buffers are device-readable
 * and the device must not write them, virtio 1.2 2.7.5 "The Virtqueue Descriptor Table"); patches are made on copies.
 *
 * <p>The frame is hostile: everything is checked before the first output is produced, so a frame is either
 * processed or dropped whole with a reason ({@link OffloadResult}), and no input makes this class throw.
 * Segment headers are rebuilt from the parsed headers and every checksum is computed from scratch (pseudo-header
 * included), so the result does not depend on what the sender left in the checksum fields. Only plain NEEDS_CSUM
 * relies on the partial-checksum contract (5.1.6.2: the field holds the pseudo-header sum), which is what makes
 * it protocol-independent.
 */
public final class SoftwareOffload {
    /** The longest frame accepted: a 65535-byte IP datagram behind Ethernet and two VLAN tags. */
    public static final int MAX_FRAME_LENGTH = 65535 + FrameLayout.ETH_HLEN
            + FrameLayout.MAX_VLAN_TAGS * FrameLayout.VLAN_HLEN;
    /** The most header bytes parsed (Ethernet + VLANs + IP with options/extensions + TCP with options). */
    public static final int HEAD_CAPACITY = 1024;

    private static final int TCP_FLAG_FIN = 0x01;
    private static final int TCP_FLAG_PSH = 0x08;
    private static final int TCP_FLAG_CWR = 0x80;
    private static final int IP_MF = 0x2000;
    private static final int TCP_CHECK_OFFSET = 16;
    private static final int UDP_CHECK_OFFSET = 6;

    private final ByteBuffer head = ByteBuffer.allocateDirect(HEAD_CAPACITY).order(ByteOrder.BIG_ENDIAN);
    private final ByteBuffer out =
            ByteBuffer.allocateDirect(MAX_FRAME_LENGTH + IPV6_FRAG_HLEN).order(ByteOrder.BIG_ENDIAN);
    private final FrameLayout layout = new FrameLayout();
    private final ByteBuffer[] single = new ByteBuffer[1];

    // The frame being processed: src[srcFrom, srcTo), each slice's bytes [position, limit).
    private ByteBuffer[] src;
    private int srcFrom;
    private int srcTo;
    private int frameLength;
    /** Bytes of the frame copied (and maybe patched) into {@link #head}; frame bytes below this come from there. */
    private int headLength;
    // Cursor over src, so that sequential copies do not rewalk the slices.
    private int curIndex;
    private int curStart;

    private FrameSink sink;
    private int outputs;
    private int ipv6FragmentId = 0x5a5a0000;

    /** The layout parsed for the last GSO frame (for tests and logs). */
    public FrameLayout layout() {
        return layout;
    }

    /** How many frames the last call handed to its sink. */
    public int lastOutputCount() {
        return outputs;
    }

    /** Processes a packet the driver transmitted: {@code packet.header()} and its frame slices. */
    public OffloadResult process(Packet packet, FrameSink sink) {
        return process(packet.slices(), 1, packet.count(), packet.header(), sink);
    }

    /** Processes one frame {@code frame[position, limit)} with its header; the position is not moved. */
    public OffloadResult process(ByteBuffer frame, VirtioNetHeader header, FrameSink sink) {
        single[0] = frame;
        try {
            return process(single, 0, 1, header, sink);
        } finally {
            single[0] = null;
        }
    }

    /**
     * Does what {@code header} asks for the frame made of {@code slices[from, to)} (each slice's remaining bytes,
     * positions untouched): segments a GSO frame, completes a NEEDS_CSUM checksum, or hands a frame that needs
     * nothing to the sink unchanged. Every output is a plain frame (its virtio_net_hdr would be all zero).
     */
    public OffloadResult process(ByteBuffer[] slices, int from, int to, VirtioNetHeader header, FrameSink sink) {
        // Read every header field once: the header may live in memory someone else can write.
        int flags = header.flags();
        int gsoType = header.gsoType();
        int hdrLen = header.hdrLen();
        int gsoSize = header.gsoSize();
        int csumStart = header.csumStart();
        int csumOffset = header.csumOffset();
        boolean needsCsum = (flags & VirtioNetHeader.F_NEEDS_CSUM) != 0;

        this.src = slices;
        this.srcFrom = from;
        this.srcTo = to;
        this.sink = sink;
        this.outputs = 0;
        this.headLength = 0;
        this.curIndex = from;
        this.curStart = 0;
        try {
            long total = 0;
            for (int i = from; i < to; i++) {
                total += slices[i].remaining();
            }
            if (total > MAX_FRAME_LENGTH) {
                return OffloadResult.FRAME_TOO_LONG;
            }
            frameLength = (int) total;
            if (frameLength < FrameLayout.ETH_HLEN) {
                return OffloadResult.FRAME_TOO_SHORT;
            }
            if (needsCsum && csumStart + csumOffset + 2 > frameLength) {
                return OffloadResult.CSUM_OUT_OF_FRAME;
            }
            int proto = gsoType & ~VirtioNetHeader.GSO_ECN;
            if (proto == VirtioNetHeader.GSO_NONE) {
                return needsCsum ? completeChecksum(csumStart, csumOffset) : passUnchanged();
            }
            if (proto != VirtioNetHeader.GSO_TCPV4 && proto != VirtioNetHeader.GSO_TCPV6
                    && proto != VirtioNetHeader.GSO_UDP && proto != VirtioNetHeader.GSO_UDP_L4) {
                return OffloadResult.GSO_UNKNOWN;
            }
            if (gsoSize == 0) {
                return OffloadResult.GSO_SIZE_ZERO;
            }
            // hdr_len is only a hint (the Linux driver sends skb_headlen, which may include payload), but it
            // must at least lie inside the frame (5.1.6.2).
            if (hdrLen > frameLength) {
                return OffloadResult.HDR_LEN_OUT_OF_FRAME;
            }
            int headBytes = Math.min(frameLength, HEAD_CAPACITY);
            copyFrame(0, head, 0, headBytes); // headLength is still 0: these bytes come from the slices
            headLength = headBytes;
            OffloadResult r = layout.parse(head, 0, headLength, frameLength);
            if (r != OffloadResult.OK) {
                return r;
            }
            switch (proto) {
                case VirtioNetHeader.GSO_TCPV4:
                    return segmentTcp(4, gsoSize, needsCsum, csumStart, csumOffset);
                case VirtioNetHeader.GSO_TCPV6:
                    return segmentTcp(6, gsoSize, needsCsum, csumStart, csumOffset);
                case VirtioNetHeader.GSO_UDP_L4:
                    return segmentUdp(gsoSize, needsCsum, csumStart, csumOffset);
                default:
                    return fragmentUdp(gsoSize, needsCsum, csumStart, csumOffset);
            }
        } finally {
            this.src = null;
            this.sink = null;
        }
    }

    /**
     * NEEDS_CSUM (5.1.6.2): the sum from csum_start to the end of the frame, with the field as the driver left
     * it (the pseudo-header sum), complemented into csum_start + csum_offset. Works for any L4 protocol.
     */
    private OffloadResult completeChecksum(int csumStart, int csumOffset) {
        out.clear();
        copyFrame(0, out, 0, frameLength);
        out.limit(frameLength);
        int sum = InternetChecksum.sum(out, csumStart, frameLength - csumStart);
        out.putShort(csumStart + csumOffset, (short) InternetChecksum.finishTransport(sum));
        return emit(frameLength);
    }

    private OffloadResult passUnchanged() {
        out.clear();
        copyFrame(0, out, 0, frameLength);
        return emit(frameLength);
    }

    /** The IP-level checks shared by every GSO type: not a fragment, lengths consistent with the frame. */
    private OffloadResult checkIp() {
        if (layout.fragment()) {
            return OffloadResult.IP_FRAGMENT;
        }
        if (layout.routingPending()) {
            return OffloadResult.IPV6_ROUTING_HEADER;
        }
        int l3 = layout.l3Offset();
        if (layout.ipVersion() == 4) {
            if (u16(head, l3 + 2) != frameLength - l3) {
                return OffloadResult.IP_LENGTH_MISMATCH;
            }
        } else if (u16(head, l3 + 4) != frameLength - l3 - IPV6_HLEN) {
            return OffloadResult.IP_LENGTH_MISMATCH;
        }
        return OffloadResult.OK;
    }

    private OffloadResult checkCsumAtL4(boolean needsCsum, int csumStart, int csumOffset, int checkOffset) {
        if (needsCsum && (csumStart != layout.l4Offset() || csumOffset != checkOffset)) {
            return OffloadResult.CSUM_NOT_AT_L4;
        }
        return OffloadResult.OK;
    }

    /**
     * TCP segmentation (GSO_TCPV4 / GSO_TCPV6): gso_size bytes of payload per segment, each with the headers of
     * the original; IPv4 total length, id + i and header checksum, or IPv6 payload length; sequence number
     * advanced; FIN and PSH only on the last segment, CWR only on the first (as Linux's tcp_gso_segment); the
     * TCP checksum computed in full.
     */
    private OffloadResult segmentTcp(int ipVersion, int mss, boolean needsCsum, int csumStart, int csumOffset) {
        if (layout.ipVersion() != ipVersion || layout.l4Protocol() != IPPROTO_TCP) {
            return OffloadResult.GSO_TYPE_MISMATCH;
        }
        OffloadResult r = checkIp();
        if (r == OffloadResult.OK) {
            r = checkCsumAtL4(needsCsum, csumStart, csumOffset, TCP_CHECK_OFFSET);
        }
        if (r != OffloadResult.OK) {
            return r;
        }
        int l3 = layout.l3Offset();
        int l4 = layout.l4Offset();
        int h = layout.payloadOffset();
        int payload = frameLength - h;
        if (payload <= 0) {
            return OffloadResult.NO_PAYLOAD;
        }
        int seq0 = head.getInt(l4 + 4);
        int flags0 = head.get(l4 + 13) & 0xff;
        int id0 = ipVersion == 4 ? u16(head, l3 + 4) : 0;
        for (int off = 0, i = 0; off < payload; off += mss, i++) {
            int len = Math.min(mss, payload - off);
            boolean last = off + len == payload;
            int segLen = h + len;
            out.clear();
            out.put(0, head, 0, h);
            copyFrame(h + off, out, h, len);
            out.limit(segLen);
            fixIp(ipVersion, l3, segLen, id0 + i);
            int flags = flags0;
            if (!last) {
                flags &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH);
            }
            if (i != 0) {
                flags &= ~TCP_FLAG_CWR;
            }
            out.putInt(l4 + 4, seq0 + off);
            out.put(l4 + 13, (byte) flags);
            transportChecksum(ipVersion, l3, l4, segLen - l4, IPPROTO_TCP, TCP_CHECK_OFFSET);
            r = emit(segLen);
            if (r != OffloadResult.OK) {
                return r;
            }
        }
        return OffloadResult.OK;
    }

    /** UDP segmentation (GSO_UDP_L4, "USO"): each segment a UDP datagram of its own with length and checksum. */
    private OffloadResult segmentUdp(int mss, boolean needsCsum, int csumStart, int csumOffset) {
        if (layout.l4Protocol() != IPPROTO_UDP) {
            return OffloadResult.GSO_TYPE_MISMATCH;
        }
        OffloadResult r = checkUdp(needsCsum, csumStart, csumOffset);
        if (r != OffloadResult.OK) {
            return r;
        }
        int v = layout.ipVersion();
        int l3 = layout.l3Offset();
        int l4 = layout.l4Offset();
        int h = l4 + UDP_HLEN;
        int payload = frameLength - h;
        if (payload <= 0) {
            return OffloadResult.NO_PAYLOAD;
        }
        int id0 = v == 4 ? u16(head, l3 + 4) : 0;
        for (int off = 0, i = 0; off < payload; off += mss, i++) {
            int len = Math.min(mss, payload - off);
            int segLen = h + len;
            out.clear();
            out.put(0, head, 0, h);
            copyFrame(h + off, out, h, len);
            out.limit(segLen);
            fixIp(v, l3, segLen, id0 + i);
            out.putShort(l4 + 4, (short) (UDP_HLEN + len));
            transportChecksum(v, l3, l4, UDP_HLEN + len, IPPROTO_UDP, UDP_CHECK_OFFSET);
            r = emit(segLen);
            if (r != OffloadResult.OK) {
                return r;
            }
        }
        return OffloadResult.OK;
    }

    private OffloadResult checkUdp(boolean needsCsum, int csumStart, int csumOffset) {
        OffloadResult r = checkIp();
        if (r == OffloadResult.OK) {
            r = checkCsumAtL4(needsCsum, csumStart, csumOffset, UDP_CHECK_OFFSET);
        }
        if (r == OffloadResult.OK && u16(head, layout.l4Offset() + 4) != frameLength - layout.l4Offset()) {
            r = OffloadResult.UDP_LENGTH_MISMATCH;
        }
        return r;
    }

    /**
     * UDP fragmentation offload (GSO_UDP, "UFO"): the datagram's checksum is completed over the whole datagram
     * (a receiver checks it after reassembly), then the datagram from its UDP header on is cut into IP fragments
     * of gso_size rounded down to 8 bytes (fragment offsets count 8-byte units, RFC 791 / RFC 8200 4.5). IPv4:
     * same id, offset and MF per fragment (DF cleared, as Linux's inet_gso_segment). IPv6: a fragment header is
     * inserted after the fixed header; frames with other extension headers are refused.
     */
    private OffloadResult fragmentUdp(int gsoSize, boolean needsCsum, int csumStart, int csumOffset) {
        if (layout.l4Protocol() != IPPROTO_UDP) {
            return OffloadResult.GSO_TYPE_MISMATCH;
        }
        OffloadResult r = checkUdp(needsCsum, csumStart, csumOffset);
        if (r != OffloadResult.OK) {
            return r;
        }
        int v = layout.ipVersion();
        int l3 = layout.l3Offset();
        int l4 = layout.l4Offset();
        int datagram = frameLength - l4;
        boolean fragmenting = datagram > gsoSize;
        int unit = gsoSize & ~7;
        if (fragmenting && unit < 8) {
            return OffloadResult.UFO_GSO_SIZE_TOO_SMALL;
        }
        if (fragmenting && v == 6 && layout.ipv6Extensions()) {
            return OffloadResult.UFO_IPV6_EXTENSION_HEADERS;
        }
        if (needsCsum) {
            head.putShort(l4 + UDP_CHECK_OFFSET, (short) 0);
            int sum = v == 4
                    ? InternetChecksum.pseudoHeaderIpv4(head, l3, IPPROTO_UDP, datagram)
                    : InternetChecksum.pseudoHeaderIpv6(head, l3, IPPROTO_UDP, datagram);
            sum = InternetChecksum.add(sum, sumFrame(l4, datagram), 0);
            head.putShort(l4 + UDP_CHECK_OFFSET, (short) InternetChecksum.finishTransport(sum));
        }
        if (!fragmenting) {
            return passUnchanged();
        }
        int id = ++ipv6FragmentId;
        for (int off = 0; off < datagram; off += unit) {
            int len = Math.min(unit, datagram - off);
            boolean more = off + len < datagram;
            out.clear();
            out.put(0, head, 0, l4);
            int segLen;
            if (v == 4) {
                segLen = l4 + len;
                copyFrame(l4 + off, out, l4, len);
                out.limit(segLen);
                out.putShort(l3 + 2, (short) (segLen - l3));
                out.putShort(l3 + 6, (short) ((off >>> 3) | (more ? IP_MF : 0)));
                ipv4HeaderChecksum(l3);
            } else {
                segLen = l4 + IPV6_FRAG_HLEN + len;
                copyFrame(l4 + off, out, l4 + IPV6_FRAG_HLEN, len);
                out.limit(segLen);
                out.put(l3 + 6, (byte) IPPROTO_FRAGMENT);
                out.putShort(l3 + 4, (short) (IPV6_FRAG_HLEN + len));
                out.put(l4, (byte) IPPROTO_UDP);
                out.put(l4 + 1, (byte) 0);
                // Fragment Offset in 8-octet units in bits 15..3, M flag in bit 0 (RFC 8200 4.5).
                out.putShort(l4 + 2, (short) (off | (more ? 1 : 0)));
                out.putInt(l4 + 4, id);
            }
            r = emit(segLen);
            if (r != OffloadResult.OK) {
                return r;
            }
        }
        return OffloadResult.OK;
    }

    private void fixIp(int ipVersion, int l3, int segLen, int id) {
        if (ipVersion == 4) {
            out.putShort(l3 + 2, (short) (segLen - l3));
            out.putShort(l3 + 4, (short) id);
            ipv4HeaderChecksum(l3);
        } else {
            out.putShort(l3 + 4, (short) (segLen - l3 - IPV6_HLEN));
        }
    }

    private void ipv4HeaderChecksum(int l3) {
        int ihl = (out.get(l3) & 0x0f) * 4;
        out.putShort(l3 + 10, (short) 0);
        out.putShort(l3 + 10, (short) InternetChecksum.finish(InternetChecksum.sum(out, l3, ihl)));
    }

    private void transportChecksum(int ipVersion, int l3, int l4, int l4Length, int protocol, int checkOffset) {
        out.putShort(l4 + checkOffset, (short) 0);
        int sum = ipVersion == 4
                ? InternetChecksum.pseudoHeaderIpv4(out, l3, protocol, l4Length)
                : InternetChecksum.pseudoHeaderIpv6(out, l3, protocol, l4Length);
        sum = InternetChecksum.add(sum, InternetChecksum.sum(out, l4, l4Length), 0);
        // A computed 0 stays 0 in a TCP segment and becomes 0xffff in a UDP one, as the kernel's segmentation
        // writes them: tcp_gso_segment stores gso_make_checksum() as is (net/ipv4/tcp_offload.c), __udp_gso_segment
        // replaces 0 by CSUM_MANGLED_0 (net/ipv4/udp_offload.c), because 0 means "no checksum" only in UDP (RFC 768).
        int check = protocol == IPPROTO_UDP ? InternetChecksum.finishTransport(sum) : InternetChecksum.finish(sum);
        out.putShort(l4 + checkOffset, (short) check);
    }

    private OffloadResult emit(int length) {
        out.limit(length).position(0);
        outputs++;
        return sink.accept(out) ? OffloadResult.OK : OffloadResult.SINK_REFUSED;
    }

    /** Copies frame bytes [frameOffset, +length) into dst at dstOffset: the head part from the (patched) head. */
    private void copyFrame(int frameOffset, ByteBuffer dst, int dstOffset, int length) {
        if (frameOffset < headLength) {
            int n = Math.min(length, headLength - frameOffset);
            dst.put(dstOffset, head, frameOffset, n);
            frameOffset += n;
            dstOffset += n;
            length -= n;
        }
        if (length == 0) {
            return;
        }
        seek(frameOffset);
        while (length > 0) {
            ByteBuffer s = src[curIndex];
            int within = frameOffset - curStart;
            int n = Math.min(length, s.remaining() - within);
            dst.put(dstOffset, s, s.position() + within, n);
            frameOffset += n;
            dstOffset += n;
            length -= n;
            if (length > 0) {
                curStart += s.remaining();
                curIndex++;
            }
        }
    }

    /** The checksum sum of frame bytes [frameOffset, +length), the head part from the (patched) head. */
    private int sumFrame(int frameOffset, int length) {
        int sum = 0;
        int done = 0;
        if (frameOffset < headLength) {
            int n = Math.min(length, headLength - frameOffset);
            sum = InternetChecksum.sum(head, frameOffset, n);
            done = n;
        }
        if (done == length) {
            return sum;
        }
        int pos = frameOffset + done;
        seek(pos);
        while (done < length) {
            ByteBuffer s = src[curIndex];
            int within = pos - curStart;
            int n = Math.min(length - done, s.remaining() - within);
            sum = InternetChecksum.add(sum, InternetChecksum.sum(s, s.position() + within, n), done);
            pos += n;
            done += n;
            if (done < length) {
                curStart += s.remaining();
                curIndex++;
            }
        }
        return sum;
    }

    /** Moves the slice cursor to the slice holding frame byte {@code frameOffset} (< frameLength). */
    private void seek(int frameOffset) {
        if (frameOffset < curStart) {
            curIndex = srcFrom;
            curStart = 0;
        }
        while (frameOffset >= curStart + src[curIndex].remaining()) {
            curStart += src[curIndex].remaining();
            curIndex++;
        }
    }

    private static int u16(ByteBuffer b, int index) {
        return b.getShort(index) & 0xffff;
    }
}
