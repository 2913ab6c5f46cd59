package org.virtionetd.backends.offload.bench;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.virtionetd.backends.offload.FrameSink;
import org.virtionetd.backends.offload.OffloadResult;
import org.virtionetd.backends.offload.SoftwareOffload;
import org.virtionetd.backends.offload.TestFrames;
import org.virtionetd.virtio.net.VirtioNetHeader;

import java.nio.ByteBuffer;
import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * Software TSO of one 64 KiB TCPv4 GSO frame (Ethernet + IPv4 + TCP with timestamps) at gso_size 1448, the
 * segments handed to a sink that reads one byte of each; against a 64 KiB copy in the same run.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
public class SegmentationBenchmark {
    public static final int FRAME = 65536;

    private final SoftwareOffload engine = new SoftwareOffload();
    private ByteBuffer frame;
    private ByteBuffer copy;
    private VirtioNetHeader header;
    private int seen;
    private final FrameSink sink = f -> {
        seen += f.get(f.limit() - 1);
        return true;
    };

    @Setup
    public void setup() {
        TestFrames.Built b = TestFrames.build(new Random(1), 0, 4, 0, 0, TestFrames.L4_TCP, 12,
                FRAME - 14 - 20 - 32, 0x18);
        frame = ByteBuffer.allocateDirect(b.frame.length);
        frame.put(0, b.frame);
        copy = ByteBuffer.allocateDirect(b.frame.length);
        header = TestFrames.gsoHeader(b, VirtioNetHeader.GSO_TCPV4, 1448);
        if (engine.process(frame, header, sink) != OffloadResult.OK) {
            throw new IllegalStateException("benchmark frame refused");
        }
    }

    @Benchmark
    public int segment() {
        engine.process(frame, header, sink);
        return seen;
    }

    @Benchmark
    public ByteBuffer memcpy() {
        return copy.put(0, frame, 0, FRAME);
    }
}
