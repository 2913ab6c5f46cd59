package org.virtionetd.virtio.testsupport;

import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.memory.MemfdGuestMemory;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.net.NetCounters;
import org.virtionetd.virtio.net.NetDeviceConfig;
import org.virtionetd.virtio.net.VirtioNetDevice;
import org.virtionetd.virtio.testdriver.InMemoryBackend;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.IntFunction;
import java.util.function.UnaryOperator;

/**
 * A virtio-net device driven by the spec-driven test driver over memfd guest memory, by default two adjacent
 * 8 MiB regions (so that buffers may cross a region boundary) and in-memory backends. Closes everything in the safe
 * order: the driver, then the device (its threads stop), then the memory is unmapped.
 *
 * <p>{@code new NetFixture(...)} and {@link #started} cover the common case; {@link #builder()} sets the backend,
 * the device configuration, the memory layout or the driver's timeout.
 */
public final class NetFixture implements AutoCloseable {
    public static final long REGION = 8L << 20;
    public final GuestMemory memory;
    /** The in-memory backends, one per queue pair; empty with a backend of the test's own ({@link Builder#backend}). */
    public final List<InMemoryBackend> backends = new ArrayList<>();
    public final VirtioNetDevice device;
    public final VirtioNetDriver driver;

    public NetFixture(long capabilities, int pairs, VirtioNetDriver.Options options) throws GuestMemoryException {
        this(builder().inMemoryBackends(capabilities).pairs(pairs).options(options));
    }

    /** With the device configuration adjusted by {@code configure} (e.g. busy polling). */
    public NetFixture(long capabilities, int pairs, VirtioNetDriver.Options options,
                      UnaryOperator<NetDeviceConfig.Builder> configure) throws GuestMemoryException {
        this(builder().inMemoryBackends(capabilities).pairs(pairs).options(options).config(configure));
    }

    private NetFixture(Builder b) throws GuestMemoryException {
        long[] bases = new long[b.regionSizes.length];
        for (int i = 1; i < bases.length; i++) {
            bases[i] = bases[i - 1] + b.regionSizes[i - 1];
        }
        memory = MemfdGuestMemory.create(bases, b.regionSizes);
        try {
            NetDeviceConfig config = b.configure.apply(NetDeviceConfig.builder().queuePairs(b.pairs).mtu(1500))
                    .build();
            IntFunction<NetBackend> backendForPair = b.backendForPair != null ? b.backendForPair : p -> {
                InMemoryBackend backend = new InMemoryBackend("mem" + p, b.capabilities);
                backends.add(backend);
                return backend;
            };
            device = new VirtioNetDevice(config, backendForPair);
        } catch (RuntimeException | Error e) {
            memory.close();
            throw e;
        }
        try {
            driver = new VirtioNetDriver(device, memory, b.options.timeout(b.timeout));
        } catch (RuntimeException | Error e) {
            try {
                device.close();
            } finally {
                memory.close();
            }
            throw e;
        }
    }

    public static NetFixture started(long capabilities, VirtioNetDriver.Options options) throws Exception {
        return builder().inMemoryBackends(capabilities).options(options).start();
    }

    /** One pair, the device configured by {@code configure}, the driver started. */
    public static NetFixture started(long capabilities, VirtioNetDriver.Options options,
                                     UnaryOperator<NetDeviceConfig.Builder> configure) throws Exception {
        return builder().inMemoryBackends(capabilities).options(options).config(configure).start();
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The first pair's in-memory backend. */
    public InMemoryBackend backend() {
        if (backends.isEmpty()) {
            throw new IllegalStateException("this fixture's device has a backend of the test's own, not in-memory ones");
        }
        return backends.get(0);
    }

    public NetCounters counters() {
        return device.counters(0);
    }

    public Map<String, Long> snapshot() {
        return counters().snapshot();
    }

    @Override
    public void close() {
        try {
            driver.close();
        } finally {
            try {
                device.close();
            } finally {
                memory.close();
            }
        }
    }

    /** What the fixture is made of; every part has the default described on {@link NetFixture}. */
    public static final class Builder {
        private long capabilities;
        private IntFunction<NetBackend> backendForPair;
        private int pairs = 1;
        private UnaryOperator<NetDeviceConfig.Builder> configure = UnaryOperator.identity();
        private VirtioNetDriver.Options options = new VirtioNetDriver.Options();
        private Duration timeout = Duration.ofSeconds(10);
        private long[] regionSizes = {REGION, REGION};

        private Builder() {
        }

        /** In-memory backends offering these offload capabilities (the default, with none). */
        public Builder inMemoryBackends(long v) {
            capabilities = v;
            backendForPair = null;
            return this;
        }

        /** The backend of each queue pair, instead of in-memory ones. */
        public Builder backend(IntFunction<NetBackend> v) {
            backendForPair = v;
            return this;
        }

        public Builder pairs(int v) {
            pairs = v;
            return this;
        }

        /** Adjusts the device configuration (queue pairs and an MTU of 1500 set already). */
        public Builder config(UnaryOperator<NetDeviceConfig.Builder> v) {
            configure = v;
            return this;
        }

        public Builder options(VirtioNetDriver.Options v) {
            options = v;
            return this;
        }

        /** How long the driver waits for the device in one step (10 s by default). */
        public Builder timeout(Duration v) {
            timeout = v;
            return this;
        }

        /** Guest memory as adjacent regions of these sizes from guest-physical address 0. */
        public Builder memory(long... sizes) {
            regionSizes = sizes.clone();
            return this;
        }

        /** The fixture, its driver not started (to set listeners or look at the device first). */
        public NetFixture build() throws GuestMemoryException {
            return new NetFixture(this);
        }

        /** The fixture with its driver started; closed again if the start fails. */
        public NetFixture start() throws Exception {
            NetFixture f = build();
            try {
                f.driver.start();
            } catch (VirtioException | RuntimeException e) {
                f.close();
                throw e;
            }
            return f;
        }
    }
}
