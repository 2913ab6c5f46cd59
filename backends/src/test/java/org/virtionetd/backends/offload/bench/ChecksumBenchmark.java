package org.virtionetd.backends.offload.bench;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.virtionetd.backends.offload.InternetChecksum;

import java.nio.ByteBuffer;
import java.util.Random;
import java.util.concurrent.TimeUnit;

/**
 * Checksum speed against the copy of the same bytes (ByteBuffer.put, direct to direct) in the same run:
 * bytes/s = ops/s * size. See {@link BenchMain} for the ratios.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
public class ChecksumBenchmark {
    @Param({"1500", "65536"})
    public int size;

    private ByteBuffer src;
    private ByteBuffer dst;

    @Setup
    public void setup() {
        byte[] data = new byte[size];
        new Random(size).nextBytes(data);
        src = ByteBuffer.allocateDirect(size);
        src.put(0, data);
        dst = ByteBuffer.allocateDirect(size);
    }

    @Benchmark
    public int checksum() {
        return InternetChecksum.sum(src, 0, size);
    }

    @Benchmark
    public ByteBuffer memcpy() {
        return dst.put(0, src, 0, size);
    }
}
