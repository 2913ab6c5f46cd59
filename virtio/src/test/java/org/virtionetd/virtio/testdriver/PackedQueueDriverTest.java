package org.virtionetd.virtio.testdriver;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemfdGuestMemory;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.DESC_F_AVAIL;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.DESC_F_INDIRECT;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.DESC_F_NEXT;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.DESC_F_USED;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.DESC_F_WRITE;
import static org.virtionetd.virtio.testdriver.PackedQueueDriver.WRAP;

/** The packed driver against raw memory, the device's side played here by hand from 2.8 (no device). */
class PackedQueueDriverTest {
    private GuestMemory mem;
    private GuestAllocator alloc;

    @BeforeEach
    void setUp() throws Exception {
        mem = MemfdGuestMemory.create(0, 2 << 20);
        alloc = new GuestAllocator(mem, 3);
    }

    @AfterEach
    void tearDown() {
        mem.close();
    }

    /** Ring slot {@code slot} as the device reads it: {addr, len, id, flags}. */
    private long[] desc(PackedQueueDriver q, int slot) throws Exception {
        byte[] b = new byte[16];
        mem.read(q.descAddress() + 16L * slot, b, 0, 16);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        return new long[] {bb.getLong(0), Integer.toUnsignedLong(bb.getInt(8)), bb.getShort(12) & 0xffff,
                bb.getShort(14) & 0xffff};
    }

    /** The device writes a used descriptor at {@code slot}: ID, len, then flags AVAIL = USED = wrap (2.8.22). */
    private void deviceUses(PackedQueueDriver q, int slot, boolean wrap, int id, int len) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(0, len).putShort(4, (short) id);
        int flags = (wrap ? DESC_F_AVAIL | DESC_F_USED : 0) | (len != 0 ? DESC_F_WRITE : 0);
        b.putShort(6, (short) flags);
        mem.write(q.descAddress() + 16L * slot + 8, b.array(), 0, 8);
    }

    private void deviceEvent(PackedQueueDriver q, int flags, int offWrap) throws Exception {
        byte[] b = {(byte) offWrap, (byte) (offWrap >>> 8), (byte) flags, (byte) (flags >>> 8)};
        mem.write(q.deviceAreaAddress(), b, 0, 4);
    }

    @Test
    void areasHaveTheSpecAlignmentsAndAnySizeIsAccepted() {
        PackedQueueDriver q = PackedQueueDriver.create(alloc, 13, "q");
        assertThat(q.descAddress() % 16).isZero();
        assertThat(q.driverAreaAddress() % 4).isZero();
        assertThat(q.deviceAreaAddress() % 4).isZero();
        assertThat(q.nextAvail()).as("2.8.1: slot 0, wrap counter 1").isEqualTo(WRAP);
        assertThatThrownBy(() -> PackedQueueDriver.create(alloc, 32769, "big")).hasMessageContaining("32769");
    }

    @Test
    void aChainAcrossTheRingEndFlipsItsFlagsAndItsHeadIsWrittenAtPublish() throws Exception {
        PackedQueueDriver q = PackedQueueDriver.create(alloc, 5, "q");
        for (int i = 0; i < 3; i++) {
            Chain c = q.addChain(Buffer.readable(new byte[] {1}));
            deviceUses(q, i, true, c.head(), 0);
        }
        assertThat(q.pollUsed()).hasSize(3);
        Chain c = q.placeChain(List.of(Buffer.readable(new byte[] {1, 2}), Buffer.readable(new byte[] {3}),
                Buffer.writable(40)), List.of());
        assertThat(c.slots()).containsExactly(3, 4, 0);
        assertThat(desc(q, 3)[3]).as("head flags untouched (zero, never used) before publish").isZero();
        assertThat(desc(q, 4)[3]).isEqualTo(DESC_F_AVAIL | DESC_F_NEXT);
        assertThat(desc(q, 0)[3]).as("next lap: wrap counter 0").isEqualTo(DESC_F_USED | DESC_F_WRITE);
        assertThat(desc(q, 0)[2]).as("buffer ID in the last descriptor").isEqualTo(c.head());
        assertThat(desc(q, 3)[2]).isEqualTo(PackedQueueDriver.DECOY_ID);
        q.publish();
        assertThat(desc(q, 3)[3]).isEqualTo(DESC_F_AVAIL | DESC_F_NEXT);
        assertThat(q.nextAvail()).isEqualTo(1);
        // Used at slot 3: the read position skips the chain's three descriptors into the next lap.
        deviceUses(q, 3, true, c.head(), 17);
        List<UsedElement> used = q.pollUsed();
        assertThat(used).extracting(UsedElement::len).containsExactly(17);
        assertThat(q.nextUsed()).isEqualTo(1);
        assertThat(q.freeSlotCount()).isEqualTo(5);
    }

    @Test
    void indirectTablesHoldTheirEntriesInSequence() throws Exception {
        PackedQueueDriver q = PackedQueueDriver.create(alloc, 4, "q");
        Chain c = q.addIndirectChain(Buffer.readable(new byte[] {1, 2, 3}), Buffer.writable(10));
        long[] d = desc(q, 0);
        assertThat(d[3]).isEqualTo(DESC_F_AVAIL | DESC_F_INDIRECT);
        assertThat(d[0]).isEqualTo(c.indirectTable());
        assertThat(d[1]).isEqualTo(32);
        byte[] t = new byte[32];
        mem.read(c.indirectTable(), t, 0, 32);
        ByteBuffer tb = ByteBuffer.wrap(t).order(ByteOrder.LITTLE_ENDIAN);
        assertThat(tb.getShort(14) & 0xffff).as("no NEXT in a table (2.8.8)").isZero();
        assertThat(tb.getShort(30) & 0xffff).isEqualTo(DESC_F_WRITE);
        assertThat(tb.getLong(16)).isEqualTo(c.elements().get(1).address());
    }

    @Test
    void withInOrderOneUsedDescriptorReturnsEveryBufferUpToItsId() throws Exception {
        PackedQueueDriver q = PackedQueueDriver.create(alloc, 8, "q");
        q.setInOrder(true);
        Chain a = q.addChain(Buffer.readable(new byte[] {1}));
        Chain b = q.addChain(Buffer.readable(new byte[] {1}), Buffer.readable(new byte[] {2}));
        Chain c = q.addChain(Buffer.readable(new byte[] {1}));
        deviceUses(q, 0, true, c.head(), 0);
        assertThat(q.pollUsed()).extracting(UsedElement::chain).containsExactly(a, b, c);
        assertThat(q.nextUsed()).isEqualTo(4 | WRAP);
        Chain d = q.addChain(Buffer.readable(new byte[] {1}));
        deviceUses(q, 4, true, d.head(), 0);
        assertThat(q.pollUsed()).extracting(UsedElement::chain).containsExactly(d);
        assertThat(q.freeSlotCount()).isEqualTo(8);
    }

    @Test
    void usedDescriptorsThatBreakTheSpecFailLoudly() throws Exception {
        PackedQueueDriver q = PackedQueueDriver.create(alloc, 4, "q");
        Chain c = q.addChain(Buffer.writable(8));
        deviceUses(q, 0, true, (c.head() + 1) % 4, 0);
        assertThatThrownBy(q::pollUsed).isInstanceOf(AssertionError.class).hasMessageContaining("not outstanding");
        deviceUses(q, 0, true, c.head(), 9);
        assertThatThrownBy(q::pollUsed).isInstanceOf(AssertionError.class).hasMessageContaining("8 device-writable");
        assertThat(q.hasUsed()).isTrue();
        deviceUses(q, 0, false, c.head(), 4);
        assertThat(q.hasUsed()).as("flags of the other lap are not used").isFalse();
    }

    @Test
    void theDevicesEventSuppressionDecidesTheKick() throws Exception {
        PackedQueueDriver q = PackedQueueDriver.create(alloc, 4, "q");
        q.setEventIdx(true);
        deviceEvent(q, PackedQueueDriver.EVENT_FLAGS_DISABLE, 0);
        assertThat(q.addChain(Buffer.writable(1)) != null && q.notificationsSent() == 0).isTrue();
        deviceEvent(q, PackedQueueDriver.EVENT_FLAGS_ENABLE, 0);
        q.addChain(Buffer.writable(1));
        assertThat(q.notificationsSent()).isEqualTo(1);
        // DESC at slot 3 of this lap: the publish of slots 2 and 3 kicks, the next (slot 0, wrap 0) does not.
        deviceEvent(q, PackedQueueDriver.EVENT_FLAGS_DESC, 3 | WRAP);
        q.placeChain(List.of(Buffer.writable(1)), List.of());
        q.placeChain(List.of(Buffer.writable(1)), List.of());
        assertThat(q.publish()).isTrue();
        for (int slot = 0; slot < 4; slot++) {
            deviceUses(q, slot, true, (int) desc(q, slot)[2], 0);
        }
        assertThat(q.pollUsed()).hasSize(4);
        q.addChain(Buffer.writable(1));
        assertThat(q.notificationsSent()).isEqualTo(2);
        assertThat(q.notificationsSuppressed()).isEqualTo(2);
        q.setEventIdx(false);
        assertThatThrownBy(() -> q.addChain(Buffer.writable(1))).hasMessageContaining("DESC");
    }

    @Test
    void driverEventSuppressionIsWrittenAsAsked() {
        PackedQueueDriver q = PackedQueueDriver.create(alloc, 4, "q");
        q.suppressUsedNotifications(true);
        assertThat(q.driverEventFlags()).isEqualTo(PackedQueueDriver.EVENT_FLAGS_DISABLE);
        q.armUsedNotification();
        assertThat(q.driverEventFlags()).as("suppressed stays suppressed").isEqualTo(PackedQueueDriver.EVENT_FLAGS_DISABLE);
        q.setEventIdx(true);
        q.suppressUsedNotifications(false);
        assertThat(q.driverEventFlags()).isEqualTo(PackedQueueDriver.EVENT_FLAGS_DESC);
        assertThat(q.driverEventOffWrap()).isEqualTo(WRAP);
        q.notifyOnlyAfter(6);
        assertThat(q.driverEventOffWrap()).as("six ahead of slot 0: slot 2 of the next lap").isEqualTo(2);
    }
}
