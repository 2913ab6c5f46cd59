package org.virtionetd.virtio.net.bench;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemfdGuestMemory;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.Packet;
import org.virtionetd.virtio.net.TxPathBench;

import java.nio.ByteBuffer;
import java.util.concurrent.TimeUnit;

/**
 * Pop + walk + hand to a backend + push of one chain on the production TX and RX paths, for 64- and 1500-byte
 * frames. The anchor in the same run is {@link #copyFrame}: copying the same frame once (what any device must
 * at least touch). Run with {@code scripts/bench jmh}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class ChainBenchmark {
    static final int BURST = 32;

    @Param({"64", "1500"})
    public int frameLength;

    /** The ring layout: split (virtio 1.2, 2.7) or packed (2.8), the same buffers and work on each. */
    @Param({"split", "packed"})
    public String ring;

    /**
     * How a receive backend hands over a frame: {@code staged}, scattered from its own buffer into views of the
     * guest buffers (as a backend without direct receive does), or {@code direct}, one copy straight into the
     * iovec over the guest buffers (NetBackend.receiveDirect: what the kernel's readv does for a tap).
     */
    @Param({"staged", "direct"})
    public String receive;

    private GuestMemory memory;
    private TxPathBench bench;
    private final ByteBuffer copySrc = ByteBuffer.allocateDirect(2048);
    private final ByteBuffer copyDst = ByteBuffer.allocateDirect(2048);
    private final byte[] staged = new byte[2048];
    private int stagedLength;

    private static final sun.misc.Unsafe UNSAFE = unsafe();
    private final ByteBuffer stagedDirect = ByteBuffer.allocateDirect(2048);
    private final long stagedAddress = org.virtionetd.virtio.os.LinuxNative.address(stagedDirect);

    private static sun.misc.Unsafe unsafe() {
        try {
            java.lang.reflect.Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            return (sun.misc.Unsafe) f.get(null);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** Like {@link CountingBackend}, and reads a frame into guest buffers as readv(2) would: one copy. */
    final class DirectBackend extends CountingBackend {
        @Override
        public int directReceiveRoom() {
            return 12 + 65536 + 4;
        }

        @Override
        public int receiveDirect(long iov, int count) {
            long left = stagedLength;
            long from = stagedAddress;
            for (int i = 0; i < count && left > 0; i++) {
                long n = Math.min(left, UNSAFE.getLong(iov + 16L * i + 8));
                UNSAFE.copyMemory(from, UNSAFE.getLong(iov + 16L * i), n);
                from += n;
                left -= n;
            }
            return stagedLength;
        }
    }

    /** Counts what it is given; delivers one staged frame per receive. */
    class CountingBackend implements NetBackend {
        long sent;

        @Override public String name() { return "bench"; }
        @Override public long capabilities() { return 0; }
        @Override public void configure(long f, int h) { }
        @Override public void setGuestOffloads(long g) { }
        @Override public boolean send(Packet p) { sent += p.frameLength(); return true; }
        @Override public int peekLength() { return stagedLength; }

        @Override
        public int receive(ByteBuffer[] slices, int count) {
            ByteBuffer s = slices[0];
            s.put(s.position(), staged, 0, stagedLength);
            return stagedLength;
        }

        @Override public int receiveReadyFd() { return -1; }
        @Override public void close() { }
    }

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        memory = MemfdGuestMemory.create(0, 64L << 20);
        stagedLength = 12 + frameLength;
        boolean direct = "direct".equals(receive);
        bench = new TxPathBench(memory, frameLength, direct ? new DirectBackend() : new CountingBackend(),
                "packed".equals(ring));
        if (direct) {
            // A driver keeps its receive ring full (Linux, DPDK): the device holds ~43 buffers of 1526 bytes for
            // the largest frame, and each burst below offers as many as it uses.
            bench.offerRx(128);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        memory.close();
    }

    @Benchmark
    public int transmitOneChain() {
        bench.offerTx(1);
        return bench.transmit(1);
    }

    /** A burst of 32 chains per wake-up, as the queue loop runs under load; the time is per chain. */
    @Benchmark
    @OperationsPerInvocation(BURST)
    public int transmitBurst() {
        bench.offerTx(BURST);
        return bench.transmit(BURST);
    }

    @Benchmark
    @OperationsPerInvocation(BURST)
    public Object receiveBurst() {
        bench.offerRx(BURST);
        return bench.receive(BURST);
    }

    @Benchmark
    public Object receiveOneFrame() {
        bench.offerRx(1);
        return bench.receive(1);
    }

    @Benchmark
    public ByteBuffer copyFrame() {
        copySrc.limit(frameLength).position(0);
        copyDst.clear();
        return copyDst.put(copySrc);
    }
}
