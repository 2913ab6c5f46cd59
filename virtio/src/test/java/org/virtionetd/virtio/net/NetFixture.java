package org.virtionetd.virtio.net;

import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.GuestMemoryException;
import org.virtionetd.virtio.memory.MemfdGuestMemory;
import org.virtionetd.virtio.testdriver.InMemoryBackend;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * A device on in-memory backends, driven by the spec-driven test driver over memfd guest memory with two
 * adjacent regions (so that buffers may cross a region boundary). Closes everything in the safe order:
 * device threads stop before the memory is unmapped.
 */
final class NetFixture implements AutoCloseable {
    static final long REGION = 8L << 20;
    final GuestMemory memory;
    final List<InMemoryBackend> backends = new ArrayList<>();
    final VirtioNetDevice device;
    final VirtioNetDriver driver;

    NetFixture(long capabilities, int pairs, VirtioNetDriver.Options options) throws GuestMemoryException {
        this(capabilities, pairs, options, UnaryOperator.identity());
    }

    /** With the device configuration adjusted by {@code configure} (e.g. busy polling). */
    NetFixture(long capabilities, int pairs, VirtioNetDriver.Options options,
               UnaryOperator<NetDeviceConfig.Builder> configure) throws GuestMemoryException {
        memory = MemfdGuestMemory.create(new long[] {0, REGION}, new long[] {REGION, REGION});
        NetDeviceConfig config = configure.apply(NetDeviceConfig.builder().queuePairs(pairs).mtu(1500)).build();
        device = new VirtioNetDevice(config, p -> {
            InMemoryBackend b = new InMemoryBackend("mem" + p, capabilities);
            backends.add(b);
            return b;
        });
        driver = new VirtioNetDriver(device, memory, options.timeout(Duration.ofSeconds(10)));
    }

    static NetFixture started(long capabilities, VirtioNetDriver.Options options) throws Exception {
        return started(capabilities, options, UnaryOperator.identity());
    }

    /** One pair, the device configured by {@code configure}, the driver started. */
    static NetFixture started(long capabilities, VirtioNetDriver.Options options,
                              UnaryOperator<NetDeviceConfig.Builder> configure) throws Exception {
        NetFixture f = new NetFixture(capabilities, 1, options, configure);
        try {
            f.driver.start();
        } catch (VirtioException | RuntimeException e) {
            f.close();
            throw e;
        }
        return f;
    }

    InMemoryBackend backend() {
        return backends.get(0);
    }

    NetCounters counters() {
        return device.counters(0);
    }

    Map<String, Long> snapshot() {
        return counters().snapshot();
    }

    @Override
    public void close() {
        try {
            driver.close();
        } finally {
            device.close();
            memory.close();
        }
    }
}
