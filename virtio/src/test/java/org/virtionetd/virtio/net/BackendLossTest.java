package org.virtionetd.virtio.net;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.testdriver.InMemoryBackend;
import org.virtionetd.virtio.testdriver.NetHeaderFields;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A backend that loses its host side (what a deleted tap looks like to the device): the link goes down in the
 * config space, the pair's loop does not spin although the backend's fd stays readable (a detached tun fd polls
 * as EPOLLERR forever), re-attach is tried with a bounded backoff, TX keeps draining with counted drops, and once
 * the backend is back the link is up and frames flow to the guest again.
 */
class BackendLossTest {
    /** An in-memory backend that can be "deleted": while gone it moves nothing and leaves its fd readable. */
    static final class LosableBackend implements NetBackend {
        final InMemoryBackend inner;
        volatile boolean gone;
        volatile boolean mayComeBack;
        final AtomicInteger reattachAttempts = new AtomicInteger();

        LosableBackend(InMemoryBackend inner) {
            this.inner = inner;
        }

        @Override
        public String name() {
            return "losable:" + inner.name();
        }

        @Override
        public long capabilities() {
            return inner.capabilities();
        }

        @Override
        public void configure(long negotiatedFeatures, int vnetHeaderLength) {
            inner.configure(negotiatedFeatures, vnetHeaderLength);
        }

        @Override
        public void setGuestOffloads(long guestOffloads) {
            inner.setGuestOffloads(guestOffloads);
        }

        @Override
        public boolean send(Packet packet) {
            return !gone && inner.send(packet);
        }

        @Override
        public int peekLength() {
            return gone ? 0 : inner.peekLength(); // while gone the ready fd is not drained: it stays readable
        }

        @Override
        public int receive(ByteBuffer[] slices, int count) throws IOException {
            return gone ? 0 : inner.receive(slices, count);
        }

        @Override
        public int receiveReadyFd() {
            return inner.receiveReadyFd();
        }

        @Override
        public boolean attached() {
            return !gone;
        }

        @Override
        public boolean reattach() {
            reattachAttempts.incrementAndGet();
            if (mayComeBack) {
                gone = false;
                return true;
            }
            return false;
        }

        @Override
        public void close() {
            inner.close();
        }
    }

    @ParameterizedTest
    @EnumSource(value = RingFormat.class, mode = EnumSource.Mode.EXCLUDE, names = "SPLIT_IN_ORDER")
    void lostBackendTakesTheLinkDownWithoutSpinningAndComesBack(RingFormat format) throws Exception {
        LosableBackend backend = new LosableBackend(new InMemoryBackend("mem0", VirtioNetFeature.OFFLOADS));
        try (NetFixture f = NetFixture.builder().backend(p -> backend).options(format.options()).build()) {
            VirtioNetDevice device = f.device;
            VirtioNetDriver driver = f.driver;
            AtomicInteger configChanges = new AtomicInteger();
            device.setConfigChangeListener(configChanges::incrementAndGet);
            driver.start();
            assertThat(driver.configStatus() & NetConfigSpace.S_LINK_UP).as("link before the loss").isNotZero();
            byte[] before = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 100, 1);
            backend.inner.deliver(before);
            assertThat(driver.awaitPackets(0, 1)).extracting(ReceivedPacket::frame).containsExactly(before);

            // ---- the host side goes; a frame waiting in the backend makes its fd readable for good
            backend.gone = true;
            byte[] during = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 120, 2);
            backend.inner.deliver(during);
            await("link down in the config space", () -> status(driver) == 0);
            assertThat(configChanges.get()).as("config change notifications").isGreaterThanOrEqualTo(1);
            assertThat(device.linkUp()).isFalse();

            // No busy loop: over 1.5 s the loop thread uses little CPU, and re-attach is tried a few times
            // (100, 200, 400, 800 ms apart), not thousands.
            Thread loop = loopThread();
            ThreadMXBean mx = ManagementFactory.getThreadMXBean();
            int attempts0 = backend.reattachAttempts.get();
            long cpu0 = mx.getThreadCpuTime(loop.getId());
            long wall0 = System.nanoTime();
            Thread.sleep(1500); // the quantity under test is what the loop does in this time
            long cpu = mx.getThreadCpuTime(loop.getId()) - cpu0;
            long wall = System.nanoTime() - wall0;
            int attempts = backend.reattachAttempts.get() - attempts0;
            assertThat(cpu).as("CPU ns of %s over %d ns of wall time while the backend is gone", loop.getName(), wall)
                    .isLessThan(wall / 5);
            assertThat(attempts).as("re-attach attempts in 1.5 s (backoff 100 ms doubling to 2 s)").isBetween(1, 8);

            // TX still drains: the driver gets its buffers back, the drop is counted.
            Map<String, Long> c0 = device.counters(0).snapshot();
            driver.awaitTransmitted(0, driver.transmit(0, NetHeaderFields.none(),
                    VirtioNetDeviceTest.frame(VirtioNetDeviceTest.mac(9), 80, 3)));
            Map<String, Long> c1 = device.counters(0).snapshot();
            assertThat(c1.get("tx_dropped_backend") - c0.get("tx_dropped_backend")).as("tx_dropped_backend")
                    .isEqualTo(1);
            assertThat(c1.get("tx_packets")).as("tx_packets").isEqualTo(c0.get("tx_packets"));
            assertThat(driver.receive(0)).as("frames received while the backend is gone").isEmpty();

            // ---- it comes back: within the longest backoff the link is up and the waiting frame arrives
            backend.mayComeBack = true;
            await("link up again", () -> status(driver) != 0);
            assertThat(driver.awaitPackets(0, 1)).extracting(ReceivedPacket::frame).containsExactly(during);
            byte[] after = VirtioNetDeviceTest.frame(VirtioNetDeviceTest.DEVICE_MAC, 140, 4);
            backend.inner.deliver(after);
            assertThat(driver.awaitPackets(0, 1)).extracting(ReceivedPacket::frame).containsExactly(after);
            assertThat(backend.inner.violations()).isEmpty();
        }
    }

    private static int status(VirtioNetDriver driver) {
        try {
            return driver.configStatus() & NetConfigSpace.S_LINK_UP;
        } catch (Exception e) {
            throw new AssertionError("reading the config space failed", e);
        }
    }

    private static Thread loopThread() {
        List<Thread> loops = Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().equals("virtio-net-pair-0")).toList();
        assertThat(loops).as("the loop thread of pair 0").hasSize(1);
        return loops.get(0);
    }

    private static void await(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError("no " + what + " within 10 s");
            }
            Thread.sleep(20);
        }
    }
}
