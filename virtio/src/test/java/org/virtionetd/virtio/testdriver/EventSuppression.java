package org.virtionetd.virtio.testdriver;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One pvirtq_event_suppress structure of a packed ring in guest memory (virtio 1.2, 2.8.10): le16 desc (the
 * position asked for: offset in bits 0-14, wrap counter in bit 15), le16 flags (ENABLE, DISABLE or DESC). The
 * driver writes the driver area and reads the device area; the device the other way round.
 */
final class EventSuppression {
    private static final VarHandle LE16 = MethodHandles.byteBufferViewVarHandle(short[].class,
            ByteOrder.LITTLE_ENDIAN);

    private final ByteBuffer area;

    EventSuppression(ByteBuffer area) {
        this.area = area;
    }

    int flags() {
        return (short) LE16.getAcquire(area, 2) & 0xffff;
    }

    int offWrap() {
        return (short) LE16.getAcquire(area, 0) & 0xffff;
    }

    /** desc first, then flags with release, then a full fence before the caller reads the ring again. */
    void write(int flags, int offWrap) {
        LE16.setRelease(area, 0, (short) offWrap);
        LE16.setRelease(area, 2, (short) flags);
        VarHandle.fullFence();
    }

    /**
     * Whether the position {@code offWrap} asks for is among the {@code added} slots just before {@code slot} in
     * the lap of {@code wrap} on a ring of {@code size} (as Linux's virtqueue_kick_prepare_packed reads it: a
     * position of the other lap is one lap back).
     */
    static boolean passed(int offWrap, int size, int slot, boolean wrap, int added) {
        int event = offWrap & (PackedQueueDriver.WRAP - 1);
        if (((offWrap & PackedQueueDriver.WRAP) != 0) != wrap) {
            event -= size;
        }
        return slot - added <= event && event < slot;
    }

    @Override
    public String toString() {
        return flags() + "/0x" + Integer.toHexString(offWrap());
    }
}
