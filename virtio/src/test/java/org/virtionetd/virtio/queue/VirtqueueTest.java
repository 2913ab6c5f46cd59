package org.virtionetd.virtio.queue;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemfdGuestMemory;
import org.virtionetd.virtio.testdriver.Buffer;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.GuestAllocator;
import org.virtionetd.virtio.testdriver.PackedQueueDriver;
import org.virtionetd.virtio.testdriver.QueueDriver;
import org.virtionetd.virtio.testdriver.RingFormat;
import org.virtionetd.virtio.testdriver.SplitQueueDriver;
import org.virtionetd.virtio.testdriver.UsedElement;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The operations the data paths use on a {@link Virtqueue}, against the spec test driver writing a real split or
 * packed ring in guest memory: pop, give back, add used, publish-and-notify with its counting, and
 * enable-notification saying whether work arrived (2.7.10, 2.8.10).
 */
class VirtqueueTest {
    private static final int SIZE = 16;
    private final GuestMemory memory;
    private QueueDriver driver;
    private final Virtqueue queue = new Virtqueue(0);
    private final DescriptorChain chain = new DescriptorChain(SIZE);
    private final CountingNotifications counts = new CountingNotifications();


    VirtqueueTest() throws Exception {
        memory = MemfdGuestMemory.create(0, 4L << 20);
    }

    @AfterEach
    void close() {
        memory.close();
    }

    private void start(boolean eventIdx) {
        start(RingFormat.SPLIT, eventIdx);
    }

    /** The driver's rings in {@code format}, the queue started on them with the matching features. */
    private void start(RingFormat format, boolean eventIdx) {
        GuestAllocator allocator = new GuestAllocator(memory, 7);
        if (format.packed()) {
            PackedQueueDriver p = PackedQueueDriver.create(allocator, SIZE, "q");
            p.setInOrder(format.inOrder());
            driver = p;
        } else {
            SplitQueueDriver s = SplitQueueDriver.modern(allocator, SIZE, "q");
            s.setInOrder(format.inOrder());
            driver = s;
        }
        driver.setEventIdx(eventIdx);
        queue.configure(SIZE, driver.descAddress(), driver.driverAreaAddress(), driver.deviceAreaAddress());
        long features = (eventIdx ? VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX) : 0)
                | (format.packed() ? VirtioFeature.bit(VirtioFeature.RING_PACKED) : 0)
                | (format.inOrder() ? VirtioFeature.bit(VirtioFeature.IN_ORDER) : 0);
        assertThat(queue.start(memory, features)).isNull();
    }

    private SplitQueueDriver split() {
        return (SplitQueueDriver) driver;
    }

    private PackedQueueDriver packed() {
        return (PackedQueueDriver) driver;
    }

    /** A position as {@link Virtqueue#nextAvail} gives it: split the index; packed the slot in wrap 1. */
    private static int position(RingFormat format, int index) {
        return format.packed() ? index | PackedQueueDriver.WRAP : index;
    }

    private Chain offer(int length) {
        return driver.addChain(Buffer.writable(length));
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void popTakesTheChainsInOrderAndSaysWhenThereAreNoMore(RingFormat format) throws Exception {
        start(format, false);
        Chain a = offer(100);
        Chain b = offer(200);
        assertThat(queue.pop(chain)).isTrue();
        assertThat(chain.head()).isEqualTo(a.head());
        assertThat(chain.writableBytes()).isEqualTo(100);
        assertThat(queue.pop(chain)).isTrue();
        assertThat(chain.head()).isEqualTo(b.head());
        assertThat(queue.pop(chain)).isFalse();
        assertThat(queue.nextAvail()).isEqualTo(position(format, 2));
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void giveBackMakesTheLastChainsAvailableAgain(RingFormat format) throws Exception {
        start(format, false);
        Chain a = offer(64);
        offer(64);
        assertThat(queue.pop(chain)).isTrue();
        assertThat(queue.pop(chain)).isTrue();
        queue.giveBack(2);
        assertThat(queue.nextAvail()).isEqualTo(position(format, 0));
        assertThat(queue.pop(chain)).isTrue();
        assertThat(chain.head()).isEqualTo(a.head());
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void enableNotificationSaysWhetherWorkArrivedAfterTheLastLook(RingFormat format) throws Exception {
        start(format, true);
        offer(64);
        assertThat(queue.pop(chain)).isTrue();
        assertThat(queue.enableNotification()).as("nothing new after the only chain was taken").isFalse();
        // With EVENT_IDX the device asks for a kick at the next index it will read (2.7.10); packed, with
        // RING_EVENT_FLAGS_DESC at the next slot and its wrap counter (2.8.10).
        if (format.packed()) {
            assertThat(packed().deviceEventFlags()).isEqualTo(PackedQueueDriver.EVENT_FLAGS_DESC);
            assertThat(packed().deviceEventOffWrap()).isEqualTo(position(format, 1));
        } else {
            assertThat(split().availEvent()).isEqualTo(1);
        }
        offer(64);
        assertThat(queue.enableNotification()).as("a chain added since the last look").isTrue();
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void disableNotificationTellsTheDriverNotToKick(RingFormat format) {
        start(format, false);
        queue.disableNotification();
        if (format.packed()) {
            assertThat(packed().deviceEventFlags()).isEqualTo(PackedQueueDriver.EVENT_FLAGS_DISABLE);
        } else {
            assertThat(split().usedFlags() & SplitQueueDriver.VIRTQ_USED_F_NO_NOTIFY).isNotZero();
        }
        queue.enableNotification();
        if (format.packed()) {
            assertThat(packed().deviceEventFlags()).isEqualTo(PackedQueueDriver.EVENT_FLAGS_ENABLE);
        } else {
            assertThat(split().usedFlags() & SplitQueueDriver.VIRTQ_USED_F_NO_NOTIFY).isZero();
        }
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void publishUsedAndNotifyNotifiesOnlyWhenTheDriverAskedAndCountsBoth(RingFormat format) throws Exception {
        start(format, false);
        long[] notified = {0};
        queue.setNotifier(() -> notified[0]++);
        offer(64);
        assertThat(queue.pop(chain)).isTrue();
        queue.addUsed(chain, 10);
        queue.publishUsedAndNotify(counts);
        assertThat(notified[0]).isEqualTo(1);
        assertThat(counts.notified).isEqualTo(1);
        List<UsedElement> used = driver.pollUsed();
        assertThat(used).hasSize(1);
        assertThat(used.get(0).len()).isEqualTo(10);

        driver.suppressUsedNotifications(true);
        offer(64);
        assertThat(queue.pop(chain)).isTrue();
        queue.addUsed(chain, 0);
        queue.publishUsedAndNotify(counts);
        assertThat(notified[0]).as("VIRTQ_AVAIL_F_NO_INTERRUPT (packed: RING_EVENT_FLAGS_DISABLE) set").isEqualTo(1);
        assertThat(counts.suppressed).isEqualTo(1);
        assertThat(driver.pollUsed()).hasSize(1);
    }

    /** The driver offers {@code n} chains; the device takes each and returns them in one burst. */
    private void roundTrip(int n) throws QueueException {
        for (int i = 0; i < n; i++) {
            offer(64);
            assertThat(queue.pop(chain)).isTrue();
            queue.addUsed(chain, 0);
        }
        queue.publishUsedAndNotify(counts);
    }

    @Test
    void aStopAndStartKeepsBothIndicesAndANewBaseReadsTheUsedIndexFromTheRing() throws Exception {
        start(false);
        roundTrip(3);
        queue.stop();
        assertThat(queue.started()).isFalse();
        assertThat(queue.nextAvail()).isEqualTo(3);
        assertThat(queue.start(memory, 0)).isNull();
        roundTrip(1);
        assertThat(split().usedIdx()).isEqualTo(4);

        queue.stop();
        queue.setBase(4); // a reconnecting front-end: the used index comes from the ring
        assertThat(queue.start(memory, 0)).isNull();
        roundTrip(1);
        assertThat(split().usedIdx()).isEqualTo(5);
    }

    @Test
    void anAvailIndexMovedMoreThanTheQueueSizeIsFatal() {
        start(false);
        memory.chunk(0).putShort((int) split().availRingAddress() + 2, (short) (SIZE + 1));
        assertThatThrownBy(() -> queue.pop(chain)).isInstanceOfSatisfying(QueueException.class,
                e -> assertThat(e.kind().fatal()).isTrue());
    }

    @ParameterizedTest
    @EnumSource(RingFormat.class)
    void theTransportCannotReconfigureARunningQueue(RingFormat format) {
        start(format, false);
        assertThatThrownBy(() -> queue.configure(SIZE, 0, 0, 0)).isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("queue 0");
        queue.stop();
        queue.reset();
        assertThat(queue.size()).isZero();
        assertThat(queue.enabled()).isTrue();
    }
}
