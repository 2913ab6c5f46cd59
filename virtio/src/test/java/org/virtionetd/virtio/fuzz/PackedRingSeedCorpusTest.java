package org.virtionetd.virtio.fuzz;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.queue.QueueException.Kind;

import java.util.LinkedHashMap;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The committed seeds of {@link PackedRingFuzzTest#packedQueue}, built field by field in its input layout: chains
 * the device accepts (simple, long, across the end of the ring, indirect, IN_ORDER batches, a large ring, a resumed
 * base, buffers given back) and one input per rule a packed chain can break. Each seed is replayed here too, and
 * must do what its name says (the chains accepted, the rule broken). {@code -Dvnd.fuzz.writeSeeds=true} rewrites
 * the files.
 *
 * <p>The layout: size (one byte: 1..64 as size - 1; or 0x80 and 16 bits of size - 1), options (EVENT_IDX 1,
 * INDIRECT 2, IN_ORDER 4, through Virtqueue 8), capacity (0: the size), layout (0: the fixed one), avail position
 * (16 bits), start mode (1: resume at a base; 2: a raw 32-bit base follows the used position), used position, then
 * the driver's first descriptors ({@link #descriptor}), the indirect table entries, the driver event suppression
 * area (off_wrap, flags), then rounds: TX bursts, RX bursts, refills and control operations.
 */
class PackedRingSeedCorpusTest {
    static final int NEXT = 1;
    static final int WRITE = 2;
    static final int INDIRECT = 4;
    /** State bits of the flags byte: empty in the driver's lap; used in it (which contradicts the wrap counter). */
    static final int EMPTY = 2 << 3;
    static final int USED_IN_LAP = 3 << 3;
    static final int EVENT_IDX = 1;
    static final int NEGOTIATE_INDIRECT = 2;
    static final int IN_ORDER = 4;
    static final int VIA_VIRTQUEUE = 8;

    static SeedWriter header(int size, int options, int capacity, int avail, int startMode, int used) {
        SeedWriter w = new SeedWriter();
        if (size <= 64) {
            w.u8(size - 1);
        } else {
            w.u8(0x80).u16(size - 1);
        }
        return w.u8(options).u8(capacity).u8(0).u16(avail).u8(startMode).u16(used);
    }

    /** A descriptor of {@code len} bytes at DATA + 16 * {@code slot}, flags byte {@code f}, buffer ID below 128. */
    static SeedWriter descriptor(SeedWriter w, int slot, int len, int f, int id) {
        return w.u8(0).u16(slot).u8(1).u16(len).u8(f).u8(id);
    }

    /** A descriptor referring to {@code entries} entries of the indirect table area (16 * entries bytes). */
    static SeedWriter table(SeedWriter w, int entries, int f, int id) {
        return w.u8(1).u8(0).u8(2).u8(entries - 1).u8(f).u8(id);
    }

    /** The indirect table area's entries: {slot, len, flags} each. */
    static SeedWriter entries(SeedWriter w, int[]... e) {
        w.u8(e.length);
        for (int[] x : e) {
            w.u8(0).u16(x[0]).u8(1).u16(x[1]).u8(x[2]);
        }
        return w;
    }

    static SeedWriter driverEvent(SeedWriter w, int offWrap, int flags) {
        return w.u16(offWrap).u16(flags);
    }

    /** A TX burst of one pop per length (the last pop may find nothing); then publish with {@code publish} bits. */
    static SeedWriter tx(SeedWriter w, int publish, int... lengths) {
        w.u8((lengths.length - 1) << 2);
        for (int len : lengths) {
            if (len < 0x40) {
                w.u8(len);
            } else {
                w.u8(0x40).u16(len);
            }
        }
        return w.u8(publish);
    }

    /** An RX burst: up to {@code pops} chains, the last {@code back} given back, the rest used with the lengths. */
    static SeedWriter rx(SeedWriter w, int pops, int back, int publish, int... lengths) {
        w.u8((pops - 1) << 2 | 1).u8(back);
        for (int len : lengths) {
            w.u16(len);
        }
        return w.u8(publish);
    }

    /** Publish bits: decide whether to notify (1), then ask for kicks (2 | 4) or not (2). */
    static final int DECIDE = 1;
    static final int KICKS = 2 | 4;

    record Seed(byte[] bytes, Kind kind, int accepted) {
    }

    static Map<String, Seed> seeds() {
        Map<String, Seed> s = new LinkedHashMap<>();
        SeedWriter w = header(8, 0, 0, 0x8000, 0, 0x8000).u8(3);
        descriptor(w, 0, 64, NEXT, 0);
        descriptor(w, 100, 1500, WRITE, 5);
        descriptor(w, 200, 100, 0, 2);
        driverEvent(entries(w), 0, 0);
        tx(w, DECIDE, 1500, 0);
        tx(w, DECIDE | KICKS, 0); // nothing more available
        s.put("simple-chains", new Seed(w.toBytes(), null, 2));

        // Size 5 starting at slot 3: a chain of 4 in slots 3, 4, 0, 1, the wrap counter flipping inside it;
        // EVENT_IDX with the driver asking for a notification at slot 3, then for kicks at the next avail slot.
        w = header(5, EVENT_IDX, 0, 0x8003, 0, 0x8003).u8(4);
        descriptor(w, 0, 10, NEXT, 0);
        descriptor(w, 1, 20, NEXT, 0);
        descriptor(w, 2, 30, NEXT | WRITE, 0);
        descriptor(w, 3, 40, WRITE, 4);
        driverEvent(entries(w), 0x8003, 2);
        rx(w, 1, 0, DECIDE | KICKS, 50);
        w.u8(2).u8(1); // refill one at slot 2 of the next lap
        descriptor(w, 300, 60, 0, 1);
        tx(w, DECIDE, 0);
        s.put("chain-wraps-in-the-middle", new Seed(w.toBytes(), null, 2));

        // A chain of 40 descriptors (readable, then writable) in a ring of 48.
        w = header(48, 0, 0, 0x8000, 0, 0x8000).u8(40);
        for (int i = 0; i < 40; i++) {
            descriptor(w, 10 * i, 100 + i, (i < 39 ? NEXT : 0) | (i >= 20 ? WRITE : 0), 33);
        }
        driverEvent(entries(w), 0, 0);
        tx(w, DECIDE, 2000);
        s.put("long-chain", new Seed(w.toBytes(), null, 1));

        // Indirect: one table alone, then a direct readable descriptor followed by the same table.
        w = header(16, NEGOTIATE_INDIRECT, 0, 0x8000, 0, 0x8000).u8(3);
        table(w, 3, INDIRECT, 7);
        descriptor(w, 20, 14, NEXT, 0);
        table(w, 3, INDIRECT, 9);
        driverEvent(entries(w, new int[] {10, 12, 0}, new int[] {11, 1000, NEXT}, new int[] {12, 200, WRITE}), 0, 0);
        tx(w, DECIDE, 200, 100);
        s.put("indirect", new Seed(w.toBytes(), null, 2));

        // IN_ORDER through Virtqueue: three unwritten chains (4 slots) become one used descriptor, then one written.
        w = header(6, IN_ORDER | EVENT_IDX | VIA_VIRTQUEUE, 0, 0x8000, 0, 0x8000).u8(5);
        descriptor(w, 0, 60, 0, 0);
        descriptor(w, 1, 60, NEXT, 0);
        descriptor(w, 2, 60, 0, 1);
        descriptor(w, 3, 60, 0, 2);
        descriptor(w, 4, 1500, WRITE, 3);
        driverEvent(entries(w), 0, 0);
        tx(w, DECIDE, 0, 0, 0, 1000);
        tx(w, KICKS, 0);
        s.put("in-order-batch", new Seed(w.toBytes(), null, 4));

        // A front-end's reset base (0x80008000) while the ring shows the device at slot 3: it resumes there.
        w = header(8, 0, 0, 0x8003, 3, 0x8003).u32(0x80008000).u8(1);
        descriptor(w, 0, 64, 0, 6);
        driverEvent(entries(w), 0, 0);
        tx(w, DECIDE, 0);
        w.u8(3).u8(2).u32(0x00048004); // a base that agrees with the ring
        w.u8(2).u8(1);
        descriptor(w, 1, 64, 0, 2);
        tx(w, DECIDE, 0);
        s.put("resume-where-the-ring-shows", new Seed(w.toBytes(), null, 2));

        // RX takes three, gives two back, uses one; the device stops and starts; TX takes the two again.
        w = header(8, 0, 0, 0x8000, 0, 0x8000).u8(3);
        for (int i = 0; i < 3; i++) {
            descriptor(w, 10 * i, 1500, WRITE, i);
        }
        driverEvent(entries(w), 0, 1);
        rx(w, 3, 2, DECIDE, 700);
        w.u8(3).u8(1);
        tx(w, DECIDE, 800, 900);
        s.put("give-back-and-restart", new Seed(w.toBytes(), null, 5));

        // A ring of 1000 at slot 998 with wrap counter 0: a chain across the end, then one at slot 0 (wrap 1).
        w = header(1000, EVENT_IDX, 0, 998, 0, 998).u8(3);
        descriptor(w, 0, 64, NEXT, 0);
        descriptor(w, 1, 1000, WRITE, 100);
        descriptor(w, 2, 64, 0, 7);
        driverEvent(entries(w), 0x8000, 2);
        tx(w, DECIDE, 500, 0);
        s.put("size-1000-wrap-0", new Seed(w.toBytes(), null, 2));

        w = header(32768, IN_ORDER, 0, 0xffff, 0, 0xffff).u8(2);
        descriptor(w, 0, 64, NEXT, 0);
        descriptor(w, 1, 64, 0, 99);
        driverEvent(entries(w), 0, 0);
        tx(w, DECIDE | KICKS, 0);
        s.put("size-32768-last-slot", new Seed(w.toBytes(), null, 1));

        // A ring of 2 whose driver makes the slots available again before the device published them: four chains
        // used in one burst, more used descriptors than the ring has slots.
        w = header(2, 0, 0, 0x8000, 0, 0x8000).u8(2);
        descriptor(w, 0, 64, 0, 0);
        descriptor(w, 1, 64, 0, 1);
        driverEvent(entries(w), 0, 0);
        w.u8(3 << 2).u8(0).u8(0).u8(0x80);
        descriptor(w, 2, 64, 0, 0);
        w.u8(0x80);
        descriptor(w, 3, 64, 0, 1);
        w.u8(DECIDE);
        s.put("driver-reuses-slots-before-publish", new Seed(w.toBytes(), null, 4));

        // The rules: each input breaks one.
        w = header(4, 0, 0, 0x8000, 0, 0x8000).u8(1);
        descriptor(w, 0, 64, USED_IN_LAP, 0);
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0);
        s.put("bad-flags-used-ahead", new Seed(w.toBytes(), Kind.FLAGS_CONTRADICT_WRAP, 0));

        w = header(4, 0, 0, 0x8000, 0, 0x8000).u8(2);
        descriptor(w, 0, 64, NEXT, 0);
        descriptor(w, 1, 64, EMPTY, 0);
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0);
        s.put("bad-flags-rest-of-chain-not-available", new Seed(w.toBytes(), Kind.FLAGS_CONTRADICT_WRAP, 0));

        w = header(3, 0, 0, 0x8001, 0, 0x8001).u8(3);
        for (int i = 0; i < 3; i++) {
            descriptor(w, i, 64, NEXT, 0);
        }
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0);
        s.put("bad-chain-wraps-ring", new Seed(w.toBytes(), Kind.CHAIN_WRAPS_RING, 0));

        w = header(4, 0, 0, 0x8000, 0, 0x8000).u8(2);
        w.u8(0).u16(0).u8(1).u16(64).u8(0).u8(0x80).u16(0x1234); // buffer ID 0x1234
        descriptor(w, 1, 64, 0, 1);
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0, 0);
        s.put("bad-buffer-id", new Seed(w.toBytes(), Kind.BUFFER_ID_OUT_OF_RANGE, 1));

        w = header(4, 0, 0, 0x8000, 0, 0x8000).u8(2);
        w.u8(4).u32(0x1000).u8(1).u16(64).u8(0).u8(0); // in the hole after region A
        descriptor(w, 1, 64, 0, 1);
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0, 0);
        s.put("bad-outside-memory", new Seed(w.toBytes(), Kind.OUTSIDE_MEMORY, 1));

        w = header(4, 0, 0, 0x8000, 0, 0x8000).u8(2);
        descriptor(w, 0, 64, NEXT | WRITE, 0);
        descriptor(w, 1, 64, 0, 0);
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0);
        s.put("bad-readable-after-writable", new Seed(w.toBytes(), Kind.READABLE_AFTER_WRITABLE, 0));

        // An empty writable descriptor still comes before the readable one (2.8.4); the device skips empty ones.
        w = header(4, 0, 0, 0x8000, 0, 0x8000).u8(2);
        descriptor(w, 0, 0, NEXT | WRITE, 0);
        descriptor(w, 1, 64, 0, 0);
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0);
        s.put("bad-readable-after-empty-writable", new Seed(w.toBytes(), Kind.READABLE_AFTER_WRITABLE, 0));

        w = header(8, 0, 2, 0x8000, 0, 0x8000).u8(3);
        for (int i = 0; i < 3; i++) {
            descriptor(w, i, 64, i < 2 ? NEXT : 0, 0);
        }
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0);
        s.put("bad-chain-too-long", new Seed(w.toBytes(), Kind.CHAIN_TOO_LONG, 0));

        // 128 buffers of 32 MiB (all of region A): 4 GiB, one byte more than a used length can say.
        w = header(130, 0, 0, 0x8000, 0, 0x8000).u8(128);
        for (int i = 0; i < 128; i++) {
            w.u8(7).u64(0).u8(3).u32(32 << 20).u8(i < 127 ? NEXT : 0).u8(0);
        }
        tx(driverEvent(entries(w), 0, 0), DECIDE, 0);
        s.put("bad-chain-too-big", new Seed(w.toBytes(), Kind.CHAIN_TOO_BIG, 0));

        int[][] three = {{10, 12, 0}, {11, 1000, 0}, {12, 200, WRITE}};
        w = header(4, 0, 0, 0x8000, 0, 0x8000).u8(1);
        table(w, 3, INDIRECT, 0);
        tx(driverEvent(entries(w, three), 0, 0), DECIDE, 0);
        s.put("bad-indirect-not-negotiated", new Seed(w.toBytes(), Kind.INDIRECT_NOT_NEGOTIATED, 0));

        w = header(4, NEGOTIATE_INDIRECT, 0, 0x8000, 0, 0x8000).u8(1);
        table(w, 3, INDIRECT, 0);
        entries(w, new int[] {10, 12, 0}, new int[] {11, 16, INDIRECT}, new int[] {12, 20, WRITE});
        tx(driverEvent(w, 0, 0), DECIDE, 0);
        s.put("bad-nested-indirect", new Seed(w.toBytes(), Kind.NESTED_INDIRECT, 0));

        w = header(4, NEGOTIATE_INDIRECT, 0, 0x8000, 0, 0x8000).u8(2);
        table(w, 3, INDIRECT | NEXT, 0);
        descriptor(w, 1, 64, WRITE, 0);
        tx(driverEvent(entries(w, three), 0, 0), DECIDE, 0);
        s.put("bad-indirect-with-next", new Seed(w.toBytes(), Kind.INDIRECT_WITH_NEXT, 0));

        w = header(4, NEGOTIATE_INDIRECT, 0, 0x8000, 0, 0x8000).u8(1);
        w.u8(1).u8(0).u8(1).u16(24).u8(INDIRECT).u8(0); // 24 bytes: not a multiple of 16
        tx(driverEvent(entries(w, three), 0, 0), DECIDE, 0);
        s.put("bad-indirect-length", new Seed(w.toBytes(), Kind.INDIRECT_BAD_LENGTH, 0));

        w = header(4, NEGOTIATE_INDIRECT, 0, 0x8000, 0, 0x8000).u8(1);
        table(w, 5, INDIRECT, 0); // 5 entries in a queue of 4
        tx(driverEvent(entries(w, three), 0, 0), DECIDE, 0);
        s.put("bad-indirect-longer-than-queue", new Seed(w.toBytes(), Kind.CHAIN_TOO_LONG, 0));

        w = header(4, NEGOTIATE_INDIRECT, 0, 0x8000, 0, 0x8000).u8(1);
        w.u8(4).u32(0).u8(2).u8(2).u8(INDIRECT).u8(0); // a table in the hole after region A
        tx(driverEvent(entries(w, three), 0, 0), DECIDE, 0);
        s.put("bad-indirect-outside-memory", new Seed(w.toBytes(), Kind.OUTSIDE_MEMORY, 0));

        w = header(8, 0, 0, 0x8000, 3, 0x8000).u32(0x800a).u8(0); // avail index 10 in a queue of 8
        s.put("bad-base", new Seed(driverEvent(entries(w), 0, 0).toBytes(), null, 0));
        return s;
    }

    @Test
    void committedSeedsAreWhatTheBuildersMake() {
        Map<String, byte[]> files = new LinkedHashMap<>();
        seeds().forEach((name, seed) -> files.put(name, seed.bytes()));
        SeedWriter.writeOrCheck(PackedRingFuzzTest.class, "packedQueue", files);
    }

    @Test
    void eachSeedDoesWhatItsNameSays() throws Exception {
        for (Map.Entry<String, Seed> e : seeds().entrySet()) {
            PackedRingFuzzTest.Run run = new PackedRingFuzzTest.Run(new FuzzInput(e.getValue().bytes()));
            run.run();
            Seed seed = e.getValue();
            assertThat(run.kinds).as(e.getKey()).isEqualTo(seed.kind() == null ? java.util.Set.of()
                    : java.util.Set.of(seed.kind()));
            assertThat(run.accepted).as(e.getKey() + ": chains accepted").isEqualTo(seed.accepted());
        }
    }
}
