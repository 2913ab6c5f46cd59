package org.virtionetd.backends.tap;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.device.VirtioException;
import org.virtionetd.virtio.testdriver.QueueDriver;
import org.virtionetd.virtio.testdriver.ReceivedPacket;
import org.virtionetd.virtio.testdriver.VirtioNetDriver;
import org.virtionetd.virtio.testsupport.NetFixture;

import java.util.List;
import java.util.stream.Collectors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.backends.tap.TapBackendTest.inject;
import static org.virtionetd.backends.tap.TapBackendTest.injectedNumber;

/**
 * A device on a real tap (root, the tap in a namespace made here) driven by the spec-driven test driver: frames
 * that reached the tap while no driver ran the device (reset: a reboot, QEMU 7.2's vhost_dev_stop; its receive
 * queue stopped: GET_VRING_BASE on a migration source) never reach the driver that starts it again, as a NIC
 * without a running driver drops what it receives; frames after the start do. A pause (a ring restarted at once
 * around a memory table change) keeps them. The frames are numbered 0x88b5 broadcasts written into the tap from the
 * namespace.
 */
class TapStaleFramesDeviceTest {
    private static final int QUEUED = 10;

    private TapBackendTest.Rig rig;
    private NetFixture f;

    @BeforeEach
    void start() throws Exception {
        rig = new TapBackendTest.Rig(true);
        try {
            f = NetFixture.builder().backend(p -> rig.backend).options(new VirtioNetDriver.Options()).start();
        } catch (Exception | Error e) {
            rig.close();
            throw e;
        }
        inject(rig.ns, rig.tap, 1, 1);
        assertThat(numbers(f.driver.awaitPackets(0, 1))).as("frame injected after the first start").containsExactly(1);
    }

    @AfterEach
    void close() {
        try {
            f.close();
        } finally {
            rig.close();
        }
    }

    private long droppedStale() {
        return f.snapshot().get("rx_dropped_stale");
    }

    private static List<Integer> numbers(List<ReceivedPacket> got) {
        return got.stream().map(p -> injectedNumber(p.frame())).collect(Collectors.toList());
    }

    @Test
    void framesQueuedWhileTheDeviceWasResetAreDroppedWhenADriverStartsItAgain() throws Exception {
        long before = droppedStale();
        f.device.setStatus(0); // the guest rebooted, or QEMU 7.2 stopped the vhost device
        inject(rig.ns, rig.tap, 10, QUEUED);
        VirtioNetDriver next = new VirtioNetDriver(f.device, f.driver.allocator(), new VirtioNetDriver.Options());
        try {
            next.start();
            inject(rig.ns, rig.tap, 100, 1);
            assertThat(numbers(next.awaitPackets(0, 1))).as("first frame the new driver gets").containsExactly(100);
            assertThat(droppedStale() - before).as("rx_dropped_stale").isGreaterThanOrEqualTo(QUEUED);
        } finally {
            next.close();
        }
    }

    @Test
    void framesQueuedWhileTheReceiveQueueWasStoppedAreDroppedWhenItStartsAgain() throws Exception {
        long before = droppedStale();
        f.device.stopQueue(0); // GET_VRING_BASE: the VM migrated away
        inject(rig.ns, rig.tap, 10, QUEUED);
        f.driver.restartQueue(0); // the VM migrated back: the ring starts where it stopped
        inject(rig.ns, rig.tap, 100, 1);
        assertThat(numbers(f.driver.awaitPackets(0, 1))).as("first frame after the restart").containsExactly(100);
        assertThat(droppedStale() - before).as("rx_dropped_stale").isGreaterThanOrEqualTo(QUEUED);
    }

    @Test
    void framesQueuedWhileTheReceiveQueueWasPausedAreDelivered() throws VirtioException {
        int base = f.device.pauseQueue(0);
        inject(rig.ns, rig.tap, 10, 3);
        QueueDriver q = f.driver.receiveQueue(0);
        f.device.setQueue(0, q.size(), q.descAddress(), q.driverAreaAddress(), q.deviceAreaAddress());
        f.device.setQueueBase(0, base);
        f.device.startQueue(0, f.driver.kick(0), f.driver.notifier(0));
        assertThat(numbers(f.driver.awaitPackets(0, 3))).as("frames queued during the pause")
                .containsExactly(10, 11, 12);
        assertThat(droppedStale()).as("rx_dropped_stale").isZero();
    }
}
