package org.virtionetd.backends.offload;

/**
 * What {@link SoftwareOffload} did with one frame: {@link #OK}, {@link #SINK_REFUSED}, or the reason the frame
 * was dropped. A dropped frame produced nothing: every check runs before the first output is written.
 * Frames are hostile guest (or peer) data, so every variant is an ordinary outcome, never an exception.
 */
public enum OffloadResult {
    /** Every output frame was handed to the sink and accepted. */
    OK,
    /** The sink refused an output frame; the remaining outputs of that frame were not produced. */
    SINK_REFUSED,

    /** The frame ends before a header it declares (Ethernet, IP, extension, TCP, UDP). */
    FRAME_TOO_SHORT,
    /** The frame is longer than the engine's output buffer (an IP datagram can be at most 65535 bytes). */
    FRAME_TOO_LONG,
    /** The headers do not fit in the engine's header scratch (e.g. a very long IPv6 extension chain). */
    HEADERS_TOO_LONG,
    /** More than two 802.1Q / 802.1ad tags. */
    TOO_MANY_VLAN_TAGS,
    /** A GSO frame whose EtherType is neither IPv4 nor IPv6. */
    NOT_IP,
    /** IPv4 version is not 4 or IHL is below 5 (RFC 791). */
    BAD_IPV4_HEADER,
    /** IPv6 version is not 6 (RFC 8200). */
    BAD_IPV6_HEADER,
    /** An IPv6 extension header chain that is malformed or longer than the engine walks. */
    BAD_IPV6_EXTENSION,
    /** An IPv6 routing header with segments left: the pseudo-header destination would not be the IPv6 one. */
    IPV6_ROUTING_HEADER,
    /** The IPv4 total length / IPv6 payload length does not match the frame's length. */
    IP_LENGTH_MISMATCH,
    /** A GSO frame that is already an IP fragment (IPv4 MF/offset, IPv6 fragment header). */
    IP_FRAGMENT,
    /** gso_type does not match the frame: TCPV4 over IPv6, TCP GSO of a UDP datagram... */
    GSO_TYPE_MISMATCH,
    /** gso_type is not one of TCPV4, UDP, TCPV6, UDP_L4. */
    GSO_UNKNOWN,
    /** A GSO type with gso_size 0 (virtio 1.2, 5.1.6.2). */
    GSO_SIZE_ZERO,
    /** TCP data offset below 5 or past the frame. */
    BAD_TCP_HEADER,
    /** The UDP length field does not match the frame's length. */
    UDP_LENGTH_MISMATCH,
    /** hdr_len runs past the end of the frame. */
    HDR_LEN_OUT_OF_FRAME,
    /** csum_start + csum_offset + 2 runs past the end of the frame. */
    CSUM_OUT_OF_FRAME,
    /** A GSO frame whose NEEDS_CSUM fields do not point at the L4 checksum it segments. */
    CSUM_NOT_AT_L4,
    /** A GSO frame with no payload after its headers. */
    NO_PAYLOAD,
    /** UFO with gso_size below 8: IP fragments carry multiples of 8 bytes (RFC 791). */
    UFO_GSO_SIZE_TOO_SMALL,
    /** UFO over IPv6 with extension headers: the fragment header would go inside the chain (not supported). */
    UFO_IPV6_EXTENSION_HEADERS,
    /** The outputs of one frame do not fit in the receive queue of pending frames. */
    TOO_MANY_SEGMENTS;

    /** True for every outcome that dropped the frame before producing anything. */
    public boolean isDrop() {
        return this != OK && this != SINK_REFUSED;
    }
}
