package org.virtionetd.virtio.net;

import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.queue.DescriptorChain;

import java.nio.ByteBuffer;

/**
 * A frame in the driver's receive buffers, vnet header first, seen through views of the chains that hold it: the
 * backend writes it through {@link #slices()} (or wrote it straight through a {@link ReceiveIovec}), and the device
 * then reads and patches its header and first bytes here, before the used ring shows it to the driver. One per
 * {@link RxPath}; allocates nothing after warm-up.
 */
final class ReceivedFrame {
    private final ChainReader reader;
    private final ByteBuffer[] slices;
    private final int[] sliceStart;
    private int sliceCount;
    /** The first bytes of the frame, gathered when its IP version matters. */
    private final ByteBuffer frameStart = ByteBuffer.allocate(EthernetFrame.IP_VERSION_PREFIX);

    ReceivedFrame(GuestMemory memory, int maxSlices) {
        this.reader = new ChainReader(memory, maxSlices);
        this.slices = new ByteBuffer[maxSlices];
        this.sliceStart = new int[maxSlices];
    }

    /**
     * Views of the device-writable buffers of {@code count} chains of the ring {@code chains} (a power of two long)
     * from index {@code first}; false if they need too many views.
     */
    boolean build(DescriptorChain[] chains, int first, int count) {
        sliceCount = 0;
        for (int i = 0; i < count; i++) {
            DescriptorChain c = chains[(first + i) & (chains.length - 1)];
            int n = reader.views(c, c.readableCount(), c.count(), 0, slices, sliceCount);
            if (n < 0) {
                return false;
            }
            sliceCount += n;
        }
        for (int i = 0; i < sliceCount; i++) {
            sliceStart[i] = slices[i].position();
        }
        return true;
    }

    ByteBuffer[] slices() {
        return slices;
    }

    int sliceCount() {
        return sliceCount;
    }

    /** Byte {@code index} of the frame as written (header first), read back from the guest buffers; -1 past them. */
    int byteAt(int index) {
        for (int i = 0; i < sliceCount; i++) {
            ByteBuffer s = slices[i];
            int len = s.limit() - sliceStart[i];
            if (index < len) {
                return s.get(sliceStart[i] + index) & 0xff;
            }
            index -= len;
        }
        return -1;
    }

    void putByte(int index, int value) {
        for (int i = 0; i < sliceCount; i++) {
            ByteBuffer s = slices[i];
            int len = s.limit() - sliceStart[i];
            if (index < len) {
                s.put(sliceStart[i] + index, (byte) value);
                return;
            }
            index -= len;
        }
    }

    /** The frame's IP version by {@link EthernetFrame#ipVersionOf}; the frame may be scattered over buffers. */
    int ipVersion(int hdrLen, int frameLength) {
        int prefix = Math.min(EthernetFrame.IP_VERSION_PREFIX, frameLength);
        for (int i = 0; i < prefix; i++) {
            frameStart.put(i, (byte) byteAt(hdrLen + i));
        }
        return EthernetFrame.ipVersionOf(frameStart, 0, prefix);
    }

    /** The destination MAC address as a 48-bit number. */
    long destination(int hdrLen) {
        long v = 0;
        for (int i = 0; i < 6; i++) {
            v = (v << 8) | byteAt(hdrLen + i);
        }
        return v;
    }

    /** The VLAN ID of an 802.1Q-tagged frame, -1 for an untagged one. */
    int vlanId(int hdrLen) {
        int type = (byteAt(hdrLen + 12) << 8) | byteAt(hdrLen + 13);
        if (type != EthernetFrame.ETH_P_8021Q) {
            return -1;
        }
        return ((byteAt(hdrLen + 14) << 8) | byteAt(hdrLen + 15)) & 0xfff;
    }
}
