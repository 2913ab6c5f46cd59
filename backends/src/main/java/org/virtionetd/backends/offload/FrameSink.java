package org.virtionetd.backends.offload;

import java.nio.ByteBuffer;

/**
 * Takes one frame produced by {@link SoftwareOffload}: {@code frame}'s bytes are {@code [position, limit)},
 * position 0. The buffer belongs to the engine and is overwritten by the next output, so the sink must send or
 * copy the bytes before returning; it may move the buffer's position.
 */
@FunctionalInterface
public interface FrameSink {
    /** Returns false to refuse the frame (e.g. the peer's queue is full); the engine then stops that packet. */
    boolean accept(ByteBuffer frame);
}
