package org.virtionetd.virtio.testdriver;

import java.util.List;

/**
 * One packet the driver reassembled from the receive queue: the raw virtio_net_hdr bytes (10 or 12), their
 * fields, the frame, and the used elements it came from (num_buffers of them with MRG_RXBUF, else one).
 */
public record ReceivedPacket(byte[] headerBytes, NetHeaderFields header, byte[] frame, List<UsedElement> buffers) {
    @Override
    public String toString() {
        return "ReceivedPacket[" + header + ", frame " + frame.length + " bytes, buffers " + buffers + "]";
    }
}
