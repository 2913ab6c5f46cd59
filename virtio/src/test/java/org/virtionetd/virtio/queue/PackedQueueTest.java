package org.virtionetd.virtio.queue;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemfdGuestMemory;
import org.virtionetd.virtio.testdriver.Buffer;
import org.virtionetd.virtio.testdriver.Chain;
import org.virtionetd.virtio.testdriver.GuestAllocator;
import org.virtionetd.virtio.testdriver.PackedHostileChains;
import org.virtionetd.virtio.testdriver.PackedQueueDriver;
import org.virtionetd.virtio.testdriver.UsedElement;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.WRAP;

/**
 * What only the packed ring has (virtio 1.2, 2.8), a {@link Virtqueue} against {@link PackedQueueDriver} in real
 * guest memory: wrap counters over many laps of odd-sized rings, chains whose used descriptor skips their length,
 * IN_ORDER batches, both event suppression structures, bases across stop/start and a resume from the ring, and
 * rings a driver must not write.
 */
class PackedQueueTest {
    private final GuestMemory memory;
    private final Virtqueue queue = new Virtqueue(0);
    private final CountingNotifications counts = new CountingNotifications();
    private final long[] notified = {0};
    private PackedQueueDriver driver;
    private DescriptorChain chain;
    private long features;


    PackedQueueTest() throws Exception {
        memory = MemfdGuestMemory.create(0, 8L << 20);
    }

    @AfterEach
    void close() {
        memory.close();
    }

    private void start(int size, boolean eventIdx, boolean inOrder) {
        driver = PackedQueueDriver.create(new GuestAllocator(memory, size), size, "q");
        driver.setEventIdx(eventIdx);
        driver.setInOrder(inOrder);
        chain = new DescriptorChain(size);
        features = VirtioFeature.bit(VirtioFeature.RING_PACKED) | VirtioFeature.bit(VirtioFeature.RING_INDIRECT_DESC)
                | (eventIdx ? VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX) : 0)
                | (inOrder ? VirtioFeature.bit(VirtioFeature.IN_ORDER) : 0);
        queue.configure(size, driver.descAddress(), driver.driverAreaAddress(), driver.deviceAreaAddress());
        queue.setBase(WRAP | WRAP << 16); // 2.8.1: both wrap counters start at 1
        queue.setNotifier(() -> notified[0]++);
        assertThat(queue.start(memory, features)).isNull();
    }

    /** A chain of {@code descriptors} descriptors: readable ones, then one writable of 64 bytes. */
    private Chain offer(int descriptors) {
        List<Buffer> bufs = new ArrayList<>();
        for (int i = 0; i + 1 < descriptors; i++) {
            bufs.add(Buffer.readable(new byte[] {(byte) i, 2, 3}));
        }
        bufs.add(Buffer.writable(64));
        return driver.addChain(bufs.toArray(Buffer[]::new));
    }

    /** The device takes the next chain, which must be {@code c}. */
    private void take(Chain c) throws QueueException {
        assertThat(queue.pop(chain)).as("a chain available for %s; %s", c, driver.describe()).isTrue();
        assertThat(chain.head()).as("buffer ID").isEqualTo(c.head());
        assertThat(chain.slots()).as("ring descriptors of the chain").isEqualTo(c.slots().size());
    }

    /** The device and the driver agree on both positions (GET_VRING_BASE: avail in bits 0-15, used in 16-31). */
    private void assertPositionsAgree() {
        assertThat(queue.base() & 0xffff).as("device next avail vs driver").isEqualTo(driver.nextAvail());
        assertThat(queue.base() >>> 16).as("device next used vs driver").isEqualTo(driver.nextUsed());
    }

    static Stream<Arguments> sizesAndOrder() {
        List<Arguments> out = new ArrayList<>();
        for (int size : new int[] {1, 3, 13, 255}) {
            out.add(Arguments.of(size, false));
            out.add(Arguments.of(size, true));
        }
        return out.stream();
    }

    @ParameterizedTest(name = "size {0} in order {1}")
    @MethodSource("sizesAndOrder")
    void manyLapsFarPast2To15DescriptorsKeepBothWrapCounters(int size, boolean inOrder) throws Exception {
        start(size, false, inOrder);
        Random random = new Random(size);
        long descriptors = 0;
        int laps = 0;
        boolean lastWrap = true;
        while (descriptors < 40_000) {
            // A burst of chains of 1..3 descriptors: some cross the ring end, so their flags flip mid-chain.
            List<Chain> burst = new ArrayList<>();
            while (burst.isEmpty() || (random.nextBoolean() && driver.freeSlotCount() > 0)) {
                int n = Math.min(1 + random.nextInt(3), Math.min(size, driver.freeSlotCount()));
                burst.add(offer(n));
                descriptors += n;
            }
            List<Integer> written = new ArrayList<>();
            for (Chain c : burst) {
                take(c);
                int len = random.nextInt(3) == 0 ? 0 : 1 + random.nextInt(64);
                written.add(len);
                queue.addUsed(chain, len);
            }
            queue.publishUsedAndNotify(counts);
            List<UsedElement> used = driver.pollUsed();
            assertThat(used).extracting(UsedElement::chain).containsExactlyElementsOf(burst);
            burst.forEach(driver::releaseBuffers);
            for (int i = 0; i < used.size(); i++) {
                assertThat(used.get(i).len()).as("len of %s", burst.get(i)).isEqualTo(written.get(i));
            }
            assertPositionsAgree();
            boolean wrap = (driver.nextUsed() & WRAP) != 0;
            if (wrap != lastWrap) {
                laps++;
                lastWrap = wrap;
            }
        }
        assertThat(laps).as("laps of a ring of %d", size).isGreaterThanOrEqualTo((int) Math.min(40_000 / size / 2, 20));
    }

    @Test
    void aUsedChainIsSkippedByItsLengthInDescriptors() throws Exception {
        start(7, false, false);
        Chain three = offer(3); // slots 0-2
        Chain one = offer(1); // slot 3
        Chain two = offer(2); // slots 4-5
        DescriptorChain a = new DescriptorChain(7);
        DescriptorChain b = new DescriptorChain(7);
        DescriptorChain c = new DescriptorChain(7);
        assertThat(queue.pop(a) && queue.pop(b) && queue.pop(c)).isTrue();
        assertThat(List.of(a.head(), b.head(), c.head())).containsExactly(three.head(), one.head(), two.head());
        // Used out of order: the used descriptors are still written in ring order, each skipping its chain.
        queue.addUsed(c, 10);
        queue.publishUsedAndNotify(counts);
        assertThat(driver.pollUsed()).extracting(UsedElement::chain).containsExactly(two);
        assertThat(driver.nextUsed()).as("after a 2-descriptor chain").isEqualTo(2 | WRAP);
        assertPositionsAgree();
        queue.addUsed(a, 0);
        queue.addUsed(b, 0);
        queue.publishUsedAndNotify(counts);
        List<UsedElement> used = driver.pollUsed();
        assertThat(used).extracting(UsedElement::chain).containsExactly(three, one);
        assertThat(used).extracting(UsedElement::ringIndex).containsExactly(2 | WRAP, 5 | WRAP);
        assertPositionsAgree();
        Chain across = offer(2); // slots 6 and 0: crosses the ring end, its flags flip mid-chain
        take(across);
        assertThat(queue.base() & 0xffff).as("next avail after a chain across the end").isEqualTo(1);
        queue.addUsed(chain, 1);
        queue.publishUsedAndNotify(counts);
        assertThat(driver.pollUsed()).extracting(UsedElement::chain).containsExactly(across);
        assertThat(driver.nextUsed()).isEqualTo(1);
        assertPositionsAgree();
    }

    @Test
    void withInOrderABurstReturnsAsOneUsedDescriptor() throws Exception {
        start(16, false, true);
        List<Chain> burst = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            burst.add(offer(1 + i % 2));
        }
        for (Chain c : burst) {
            take(c);
            queue.addUsed(chain, 0);
        }
        queue.publishUsedAndNotify(counts);
        assertThat(driver.flagsAt(burst.get(1).slots().get(0)) & PackedQueueDriver.DESC_F_USED)
                .as("the second chain's slot is not written").isZero();
        List<UsedElement> used = driver.pollUsed();
        assertThat(used).extracting(UsedElement::chain).containsExactlyElementsOf(burst);
        assertThat(used).extracting(UsedElement::ringIndex).as("one used descriptor for the burst").containsOnly(WRAP);
        assertThat(driver.nextUsed()).isEqualTo(7 | WRAP);
        assertPositionsAgree();
        // A chain with bytes written has a length of its own: it is not batched.
        Chain a = offer(1);
        Chain b = offer(1);
        take(a);
        queue.addUsed(chain, 0);
        take(b);
        queue.addUsed(chain, 20);
        queue.publishUsedAndNotify(counts);
        used = driver.pollUsed();
        assertThat(used).extracting(UsedElement::len).containsExactly(0, 20);
        assertThat(used.get(0).ringIndex()).isNotEqualTo(used.get(1).ringIndex());
    }

    @Test
    void driverEventSuppressionDisableDescAndEnable() throws Exception {
        start(8, true, false);
        // DISABLE: no notification at all.
        driver.writeDriverEvent(PackedQueueDriver.EVENT_FLAGS_DISABLE, 0);
        roundTrips(3);
        assertThat(notified[0]).as("notifications with RING_EVENT_FLAGS_DISABLE").isZero();
        assertThat(counts.suppressed).isEqualTo(3);
        // DESC seven slots ahead, across the ring end (slot 2 of the next lap): exactly that publish notifies.
        int target = driver.position(driver.nextUsed() & (WRAP - 1), (driver.nextUsed() & WRAP) != 0, 7);
        driver.writeDriverEvent(PackedQueueDriver.EVENT_FLAGS_DESC, target);
        List<Long> after = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            roundTrips(1);
            after.add(notified[0]);
        }
        assertThat(after).as("notifications after each publish with DESC at %s", Integer.toHexString(target))
                .containsExactly(0L, 0L, 0L, 0L, 0L, 0L, 0L, 1L, 1L, 1L);
        // ENABLE: every publish.
        driver.writeDriverEvent(PackedQueueDriver.EVENT_FLAGS_ENABLE, 0);
        roundTrips(4);
        assertThat(notified[0]).isEqualTo(5);
    }

    private void roundTrips(int n) throws QueueException {
        for (int i = 0; i < n; i++) {
            take(offer(1));
            queue.addUsed(chain, 0);
            queue.publishUsedAndNotify(counts);
            driver.pollUsed().forEach(u -> driver.releaseBuffers(u.chain()));
        }
    }

    @ParameterizedTest(name = "event idx {0}")
    @ValueSource(booleans = {false, true})
    void theDevicesEventSuppressionSaysWhetherTheDriverKicks(boolean eventIdx) throws Exception {
        start(5, eventIdx, false);
        queue.disableNotification();
        assertThat(driver.deviceEventFlags()).isEqualTo(PackedQueueDriver.EVENT_FLAGS_DISABLE);
        assertThat(driver.addChain(Buffer.writable(8)) != null && driver.notificationsSent() == 0)
                .as("no kick while the device polls").isTrue();
        take(driver.outstanding().values().iterator().next());
        queue.addUsed(chain, 0);
        queue.publishUsedAndNotify(counts);
        driver.pollUsed();
        assertThat(queue.enableNotification()).as("nothing made available since").isFalse();
        assertThat(driver.deviceEventFlags()).isEqualTo(eventIdx ? PackedQueueDriver.EVENT_FLAGS_DESC
                : PackedQueueDriver.EVENT_FLAGS_ENABLE);
        if (eventIdx) {
            assertThat(driver.deviceEventOffWrap()).as("DESC at the next avail slot").isEqualTo(1 | WRAP);
        }
        driver.addChain(Buffer.writable(8));
        assertThat(driver.notificationsSent()).as("kick for the descriptor the device asked for").isEqualTo(1);
        driver.addChain(Buffer.writable(8));
        assertThat(driver.notificationsSent()).as("a second publish: kick only without EVENT_IDX")
                .isEqualTo(eventIdx ? 1 : 2);
        assertThat(queue.enableNotification()).as("chains were made available").isTrue();
    }

    @Test
    void baseRoundTripKeepsBothPositionsAndWrapCountersAcrossStopAndStart() throws Exception {
        start(5, false, false);
        roundTrips(7); // one lap and two slots: both wrap counters 0
        take(offer(2)); // taken, not used yet
        int base = queue.base();
        assertThat(base & 0xffff).as("avail half").isEqualTo(4);
        assertThat(base >>> 16).as("used half").isEqualTo(2);
        queue.stop();
        assertThat(queue.base()).isEqualTo(base);
        assertThat(queue.start(memory, features)).isNull();
        assertThat(queue.base()).as("own stop and start").isEqualTo(base);
        queue.addUsed(chain, 5);
        queue.publishUsedAndNotify(counts);
        assertThat(driver.pollUsed()).extracting(UsedElement::len).containsExactly(5);
        assertPositionsAgree();

        // GET_VRING_BASE then SET_VRING_BASE (nothing in flight): the device resumes where it was.
        base = queue.base();
        queue.stop();
        queue.setBase(base);
        assertThat(queue.start(memory, features)).isNull();
        assertThat(queue.base()).isEqualTo(base);
        roundTrips(6);
        assertPositionsAgree();
    }

    @Test
    void aFreshQueueStartedAtTheResetBaseResumesWhereTheRingShows() throws Exception {
        start(6, false, false);
        roundTrips(9); // slot 3 of the second lap
        int was = queue.base();
        queue.stop();
        Virtqueue fresh = new Virtqueue(0);
        fresh.configure(6, driver.descAddress(), driver.driverAreaAddress(), driver.deviceAreaAddress());
        fresh.setBase(0x80008000); // what QEMU sends again after its back-end was killed
        assertThat(fresh.start(memory, features)).isNull();
        assertThat(fresh.base()).as("resumed at the ring's position").isEqualTo(was);
        Chain c = offer(1);
        assertThat(fresh.pop(chain)).isTrue();
        assertThat(chain.head()).isEqualTo(c.head());
        fresh.addUsed(chain, 0);
        fresh.publishUsedAndNotify(counts);
        assertThat(driver.pollUsed()).extracting(UsedElement::chain).containsExactly(c);
    }

    // ---- rings a driver must not write ----

    private QueueException popFails() {
        try {
            queue.pop(chain);
        } catch (QueueException e) {
            return e;
        }
        throw new AssertionError("pop did not fail; " + driver.describe());
    }

    @Test
    void availAndUsedBothAtTheWrapCounterWhereTheDeviceReadsIsFatal() throws Exception {
        start(4, false, false);
        roundTrips(5); // second lap: wrap counter 0
        new PackedHostileChains(driver).flagsContradictWrap();
        QueueException e = popFails();
        assertThat(e.kind()).isEqualTo(QueueException.Kind.FLAGS_CONTRADICT_WRAP);
        assertThat(e.kind().fatal()).isTrue();
        assertThat(e.getMessage()).contains("slot 1");
    }

    @Test
    void aChainWithNextOnEveryDescriptorIsFatal() throws Exception {
        start(5, false, false);
        roundTrips(3); // the chain starts at slot 3 and crosses the end
        new PackedHostileChains(driver).chainWrapsRing();
        QueueException e = popFails();
        assertThat(e.kind()).isEqualTo(QueueException.Kind.CHAIN_WRAPS_RING);
        assertThat(e.getMessage()).contains("all 5");
    }

    @Test
    void aLaterDescriptorNotAvailableIsFatal() throws Exception {
        start(5, false, false);
        roundTrips(4); // the chain takes slots 4 and 0: the second in the next lap
        new PackedHostileChains(driver).laterDescriptorNotAvailable();
        QueueException e = popFails();
        assertThat(e.kind()).isEqualTo(QueueException.Kind.FLAGS_CONTRADICT_WRAP);
        assertThat(e.kind().fatal()).isTrue();
    }

    @Test
    void aBufferIdBeyondTheQueueIsReturnedWithLengthZero() throws Exception {
        start(5, false, false);
        Chain bad = new PackedHostileChains(driver).bufferIdOutOfRange(2);
        QueueException e = popFails();
        assertThat(e.kind()).isEqualTo(QueueException.Kind.BUFFER_ID_OUT_OF_RANGE);
        assertThat(e.kind().fatal()).isFalse();
        assertThat(chain.head()).isEqualTo(7);
        queue.addUsed(chain, 0);
        queue.publishUsedAndNotify(counts);
        List<UsedElement> used = driver.pollUsed();
        assertThat(used).extracting(UsedElement::chain).containsExactly(bad);
        assertThat(used.get(0).len()).isZero();
        roundTrips(6);
        assertPositionsAgree();
    }

    @Test
    void anIndirectTableInsideAnIndirectTableIsReturned() throws Exception {
        start(5, false, false);
        Chain bad = new PackedHostileChains(driver).nestedIndirect();
        QueueException e = popFails();
        assertThat(e.kind()).isEqualTo(QueueException.Kind.NESTED_INDIRECT);
        assertThat(e.kind().fatal()).isFalse();
        assertThat(chain.head()).isEqualTo(bad.head());
        queue.addUsed(chain, 0);
        queue.publishUsedAndNotify(counts);
        assertThat(driver.pollUsed()).extracting(UsedElement::chain).containsExactly(bad);
        roundTrips(6);
        assertPositionsAgree();
    }
}
