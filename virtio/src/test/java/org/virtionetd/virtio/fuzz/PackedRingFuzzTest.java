package org.virtionetd.virtio.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.virtionetd.virtio.device.VirtioFeature;
import org.virtionetd.virtio.fuzz.PackedReferenceWalk.Outcome;
import org.virtionetd.virtio.fuzz.PackedReferenceWalk.Walk;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.queue.DescriptorChain;
import org.virtionetd.virtio.queue.PackedQueue;
import org.virtionetd.virtio.queue.QueueException;
import org.virtionetd.virtio.queue.Virtqueue;

import java.util.EnumSet;

import static org.virtionetd.virtio.fuzz.ChainWalkFuzzTest.MEMORY;
import static org.virtionetd.virtio.fuzz.ChainWalkFuzzTest.check;
import static org.virtionetd.virtio.fuzz.PackedDriver.peekU16;
import static org.virtionetd.virtio.fuzz.PackedDriver.putU16;

/**
 * Coverage-guided fuzzing of the packed virtqueue (virtio 1.2, 2.8) as a hostile driver writes it: descriptors with
 * any AVAIL/USED flags, buffer IDs, NEXT chains (across the end of the ring), indirect tables, driver event
 * suppression values, any start position with its wrap counters, any queue size up to 32768 (not only powers of
 * two), over the memfd guest memory of {@link ChainWalkFuzzTest}. The driver may refill slots while the device
 * works, also slots the device has not returned yet. {@link PackedQueue} is driven directly or through
 * {@link Virtqueue}, with and without IN_ORDER, EVENT_IDX and INDIRECT_DESC.
 *
 * <p>Invariants: only {@link QueueException} escapes, of a fatal kind exactly when the ring cannot be read; a chain
 * is accepted exactly when {@link PackedReferenceWalk} accepts it, with the same buffers and buffer ID; after any
 * chain, broken or not, the device reads next right past it; used descriptors carry the IDs and lengths added,
 * with AVAIL and USED equal to the used wrap counter, at the slots the chain lengths say (one per batch of
 * unwritten chains with IN_ORDER), and the skipped slots are left alone; both positions stay in range and wrap
 * when {@link RingModel} says; notifications and the device event suppression area follow 2.8.10.
 *
 * <p>Input layout: see {@link PackedRingSeedCorpusTest}, which writes the committed seeds field by field.
 */
class PackedRingFuzzTest {
    static final long RING = 0x1600000; // up to 32768 descriptors: 0x80000 bytes
    static final long DRIVER_EVENT = 0x1700000;
    static final long DEVICE_EVENT = 0x1700010;
    static final int MAX_POPS = 64;
    static final int INDIRECT_ENTRIES = ChainWalkFuzzTest.INDIRECT_ENTRIES;

    /** The chains of one burst, reused while the capacity stays the same (a fresh pool per input is slow). */
    private static DescriptorChain[] pool = new DescriptorChain[0];
    private static int poolCapacity = -1;

    static DescriptorChain[] pool(int capacity) {
        if (capacity != poolCapacity) {
            pool = new DescriptorChain[MAX_POPS];
            for (int i = 0; i < MAX_POPS; i++) {
                pool[i] = new DescriptorChain(capacity);
            }
            poolCapacity = capacity;
        }
        return pool;
    }

    @FuzzTest(maxDuration = "5m")
    void packedQueue(byte[] data) throws Exception {
        new Run(new FuzzInput(data)).run();
    }

    /** One input: the layout, then rounds of bursts, refills and control operations. */
    static final class Run {
        final FuzzInput in;
        /** What the input made the device do: the rules broken, chains accepted, used descriptors published. */
        final EnumSet<QueueException.Kind> kinds = EnumSet.noneOf(QueueException.Kind.class);
        int accepted;
        int size;
        boolean eventIdx;
        boolean indirect;
        boolean inOrder;
        int capacity;
        long desc = RING;
        long driver = DRIVER_EVENT;
        long device = DEVICE_EVENT;
        PackedQueue q;
        Virtqueue vq;
        long features;
        PackedDriver drv;
        RingModel model;
        DescriptorChain[] chains;
        int notified;

        Run(FuzzInput in) {
            this.in = in;
        }

        void run() throws Exception {
            int sizeSel = in.u8();
            size = (sizeSel & 0x80) != 0 ? in.u16() % PackedQueue.MAX_SIZE + 1 : sizeSel % 64 + 1;
            int opts = in.u8();
            eventIdx = (opts & 1) != 0;
            indirect = (opts & 2) != 0;
            inOrder = (opts & 4) != 0;
            boolean viaVirtqueue = (opts & 8) != 0;
            int capSel = in.u8();
            capacity = capSel == 0 ? size : Math.min(size, capSel);
            int layout = in.u8() & 7;
            if (layout == 6) {
                desc = ChainWalkFuzzTest.address(in);
                driver = ChainWalkFuzzTest.address(in);
                device = ChainWalkFuzzTest.address(in);
            } else if (layout == 7) {
                desc = ChainWalkFuzzTest.A_SIZE - 16L * (in.u8() + 1); // may run off the end of region A
            }
            int availStart = position(in.u16());
            int startMode = in.u8();
            int usedStart = position(in.u16());
            int base = (startMode & 2) != 0 ? in.u32() : availStart | usedStart << 16;
            boolean fits = (desc & 15) == 0 && (driver & 3) == 0 && (device & 3) == 0
                    && MEMORY.locate(desc, PackedQueue.descRingBytes(size)) != GuestMemory.NOWHERE
                    && MEMORY.locate(driver, 4) != GuestMemory.NOWHERE
                    && MEMORY.locate(device, 4) != GuestMemory.NOWHERE;
            features = VirtioFeature.bit(VirtioFeature.RING_PACKED)
                    | (eventIdx ? VirtioFeature.bit(VirtioFeature.RING_EVENT_IDX) : 0)
                    | (indirect ? VirtioFeature.bit(VirtioFeature.RING_INDIRECT_DESC) : 0)
                    | (inOrder ? VirtioFeature.bit(VirtioFeature.IN_ORDER) : 0);
            String refused;
            if (!fits) {
                refused = start(viaVirtqueue, base, true);
                check(refused != null, "a packed ring of " + size + " at desc 0x" + Long.toHexString(desc)
                        + " driver 0x" + Long.toHexString(driver) + " device 0x" + Long.toHexString(device)
                        + " was accepted");
                return;
            }
            drv = new PackedDriver(in, size, desc);
            drv.layOut(availStart, driver, device);
            chains = pool(capacity);
            model = new RingModel(size, inOrder, drv::descriptorAt);
            drv.onWrite(model::driverWrote);
            if (viaVirtqueue || (startMode & 1) != 0) {
                int expected = model.resumePosition(base, this::usedBit);
                refused = start(viaVirtqueue, base, true);
                check((refused == null) == (expected >= 0), "start at base 0x" + Integer.toHexString(base)
                        + " of a ring of " + size + " said " + refused);
                if (refused != null) {
                    return;
                }
                model.setPosition(expected, expected);
            } else {
                check(start(false, base, false) == null, "activate refused a ring that fits");
                q.setPosition(availStart, usedStart);
                model.setPosition(availStart, usedStart);
            }
            checkPositions();
            for (int round = 0; round < 12 && !in.exhausted(); round++) {
                int op = in.u8();
                int n = 1 + (op >>> 2);
                boolean go;
                switch (op & 3) {
                    case 0: go = txBurst(n); break;
                    case 1: go = rxBurst(n); break;
                    case 2: drv.refill(in.u8() % (size + 1)); go = true; break;
                    default: go = control(); break;
                }
                if (!go) {
                    return;
                }
            }
        }

        /** A position from 16 input bits: slot below the size, wrap counter in bit 15. */
        int position(int v) {
            return (v & 0x7fff) % size | (v & PackedQueue.WRAP);
        }

        /** Starts the queue; {@code resume}: at {@code base} as a front-end's SET_VRING_BASE gives it. */
        String start(boolean viaVirtqueue, int base, boolean resume) {
            if (viaVirtqueue) {
                vq = new Virtqueue(0);
                vq.configure(size, desc, driver, device);
                vq.setBase(base);
                return vq.start(MEMORY, features);
            }
            q = new PackedQueue(size, desc, driver, device, eventIdx, indirect, inOrder);
            String wrong = q.activate(MEMORY);
            return wrong != null || !resume ? wrong : q.resumeAt(base);
        }

        /** TX-like: pop, use, pop, use ...; each step may first refill one descriptor. Then publish. */
        boolean txBurst(int n) throws QueueException {
            for (int i = 0; i < n; i++) {
                int r = in.u8();
                if ((r & 0x80) != 0) {
                    drv.refill(1);
                }
                int len = (r & 0x40) != 0 ? in.u16() : r & 0x3f;
                int got = pop(chains[0]);
                if (got < 0) {
                    return false;
                }
                if (got == 0) {
                    break;
                }
                addUsed(chains[0], got == 2 ? (int) Math.min(len, chains[0].writableBytes()) : 0);
            }
            return publish();
        }

        /** RX-like: pop up to n chains, give the last k back untouched, use the others in order. Then publish. */
        boolean rxBurst(int n) throws QueueException {
            int popped = 0;
            int[] outcome = new int[n];
            while (popped < n) {
                int got = pop(chains[popped]);
                if (got < 0) {
                    return false;
                }
                if (got == 0) {
                    break;
                }
                outcome[popped++] = got;
            }
            // At most a ring's worth goes back, as RxPath never holds more chains than the queue size.
            int back = in.u8() % (Math.min(popped, size) + 1);
            giveBack(back);
            for (int i = 0; i < popped - back; i++) {
                int len = in.u16();
                addUsed(chains[i], outcome[i] == 2 ? (int) Math.min(len, chains[i].writableBytes()) : 0);
            }
            return publish();
        }

        /**
         * Pops one chain and judges it against the reference: 0 none, 1 taken but broken (returned with length 0),
         * 2 accepted, -1 the ring cannot be read (the device would stop here).
         */
        int pop(DescriptorChain chain) {
            Walk ref = PackedReferenceWalk.walk(MEMORY, desc, size, model.availSlot(), model.availWrap(), indirect,
                    capacity);
            QueueException error = null;
            boolean got;
            try {
                got = vq != null ? vq.pop(chain) : q.pop(chain);
            } catch (QueueException e) {
                error = e;
                kinds.add(e.kind());
                got = true;
            }
            String at = "slot " + model.availSlot() + " wrap " + (model.availWrap() ? 1 : 0) + " of " + size + ": ";
            switch (ref.outcome()) {
                case NONE:
                    check(!got, at + "pop took a chain where the reference sees none"
                            + (error != null ? ": " + error : ""));
                    checkPositions();
                    return 0;
                case FATAL:
                    check(error != null && error.kind() == ref.fatal(), at + "the reference finds " + ref.fatal()
                            + ", pop " + (error != null ? "threw " + error.kind() + ": " + error.getMessage()
                            : "returned " + got));
                    return -1;
                case BROKEN:
                    check(error != null && !error.kind().fatal(), at + "pop " + (error != null ? "threw " + error.kind()
                            : "accepted " + ChainWalkFuzzTest.describe(chain)) + ", the reference refuses the chain");
                    check(ref.buffersBroken() == (error.kind() != QueueException.Kind.BUFFER_ID_OUT_OF_RANGE),
                            at + "pop threw " + error.kind() + ": " + error.getMessage() + "; buffers broken: "
                                    + ref.buffersBroken() + ", ID " + ref.id());
                    break;
                default:
                    check(error == null, at + "pop threw " + error + " for a chain the reference accepts: "
                            + ChainWalkFuzzTest.describe(ref.buffers()));
                    ChainWalkFuzzTest.checkChain(chain, capacity);
                    check(ChainWalkFuzzTest.sameBuffers(chain, ref.buffers()), at + "pop gave "
                            + ChainWalkFuzzTest.describe(chain) + ", reference "
                            + ChainWalkFuzzTest.describe(ref.buffers()));
                    break;
            }
            check(chain.head() == ref.id(), at + "chain named " + chain.head() + ", its last descriptor says "
                    + ref.id());
            model.took(ref.slots());
            checkPositions();
            accepted += ref.outcome() == Outcome.ACCEPTED ? 1 : 0;
            return ref.outcome() == Outcome.ACCEPTED ? 2 : 1;
        }

        void giveBack(int chainsBack) {
            if (vq != null) {
                vq.giveBack(chainsBack);
            } else {
                q.giveBack(chainsBack);
            }
            model.gaveBack(chainsBack);
            checkPositions();
        }

        void addUsed(DescriptorChain chain, int len) {
            model.used(chain.head(), len);
            if (vq != null) {
                vq.addUsed(chain, len);
            } else {
                q.addUsed(chain, len);
            }
        }

        /** Publishes, checks the used descriptors, and (with an input bit, always through Virtqueue) decides. */
        boolean publish() {
            int p = in.u8();
            if (vq != null) {
                int before = notified;
                vq.publishUsedAndNotify(new Counters());
                model.published();
                decided(notified > before);
            } else {
                q.publishUsed();
                model.published();
                if ((p & 1) != 0) {
                    decided(q.needsNotification());
                }
            }
            checkPositions();
            if ((p & 2) != 0) {
                setKick((p & 4) != 0);
            }
            return true;
        }

        void decided(boolean got) {
            Boolean expected = model.decision(peekU16(driver), peekU16(driver + 2), eventIdx);
            check(expected == null || expected == got, "notification decision " + got + ", 2.8.10 says " + expected
                    + " (driver event 0x" + Integer.toHexString(peekU16(driver)) + " flags " + peekU16(driver + 2)
                    + ", "
                    + model + ", EVENT_IDX " + eventIdx + ")");
        }

        /**
         * Control: bits 0-1 of a byte: 0 ask for kicks or not (bit 2), 1 the device stops and starts again, 2 a
         * front-end's base (32 bits follow), 3 new driver event suppression values (two 16-bit values follow).
         */
        boolean control() {
            int c = in.u8();
            switch (c & 3) {
                case 0:
                    setKick((c & 4) != 0);
                    return true;
                case 1:
                    if (vq != null) {
                        vq.stop();
                        check(vq.start(MEMORY, features) == null, "restart after the device's own stop refused");
                    } else {
                        q.setPosition(q.nextAvail(), q.nextUsed());
                    }
                    model.setPosition(model.avail(), model.used());
                    checkPositions();
                    return true;
                case 2:
                    int base = in.u32();
                    int expected = model.resumePosition(base, this::usedBit);
                    String wrong;
                    if (vq != null) {
                        vq.stop();
                        vq.setBase(base);
                        wrong = vq.start(MEMORY, features);
                    } else {
                        wrong = q.resumeAt(base);
                    }
                    check((wrong == null) == (expected >= 0), "base 0x" + Integer.toHexString(base) + " for a ring of "
                            + size + ": " + wrong);
                    if (wrong != null) {
                        return false;
                    }
                    model.setPosition(expected, expected);
                    checkPositions();
                    return true;
                default:
                    putU16(driver, in.u16());
                    putU16(driver + 2, in.u16());
                    return true;
            }
        }

        /** Device event suppression after asking for kicks or not (2.8.10), and whether work is waiting. */
        void setKick(boolean wanted) {
            Walk next = PackedReferenceWalk.walk(MEMORY, desc, size, model.availSlot(), model.availWrap(), indirect,
                    capacity);
            boolean waiting;
            if (vq != null) {
                if (wanted) {
                    waiting = vq.enableNotification();
                } else {
                    vq.disableNotification();
                    waiting = next.outcome() != Outcome.NONE;
                }
            } else {
                q.setKickWanted(wanted);
                waiting = q.hasAvailable();
            }
            check(waiting == (next.outcome() != Outcome.NONE), "work waiting: " + waiting + ", the reference sees "
                    + next.outcome() + " at " + model);
            int flags = peekU16(device + 2);
            if (wanted && eventIdx) {
                check(flags == PackedQueue.EVENT_FLAGS_DESC && peekU16(device) == model.avail(), "device event "
                        + Integer.toHexString(peekU16(device)) + " flags " + flags + ", next avail " + model);
            } else {
                check(flags == (wanted ? PackedQueue.EVENT_FLAGS_ENABLE : PackedQueue.EVENT_FLAGS_DISABLE),
                        "device event flags " + flags + " after asking for kicks: " + wanted);
            }
        }

        void checkPositions() {
            int a = vq != null ? vq.nextAvail() : q.nextAvail();
            int u = vq != null ? vq.base() >>> 16 : q.nextUsed();
            check(a >>> 16 == 0 && (a & 0x7fff) < size && u >>> 16 == 0 && (u & 0x7fff) < size,
                    "position out of range: avail 0x" + Integer.toHexString(a) + " used 0x" + Integer.toHexString(u)
                            + " in a ring of " + size);
            check(a == model.avail() && u == model.used(), "device at avail 0x" + Integer.toHexString(a) + " used 0x"
                    + Integer.toHexString(u) + ", the chains taken and used say " + model);
        }

        boolean usedBit(int slot) {
            return (PackedReferenceWalk.flags(MEMORY, desc, slot) & PackedQueue.DESC_F_USED) != 0;
        }

        final class Counters implements org.virtionetd.virtio.queue.NotificationCounters {
            @Override
            public void notified() {
                notified++;
            }

            @Override
            public void suppressed() {
            }
        }
    }
}
