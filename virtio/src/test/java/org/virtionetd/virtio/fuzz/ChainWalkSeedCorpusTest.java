package org.virtionetd.virtio.fuzz;

import org.junit.jupiter.api.Test;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The committed seeds of {@link ChainWalkFuzzTest}, built field by field in its input layout: well-formed chains
 * (direct, indirect, legacy layout with EVENT_IDX, indices about to wrap) and well-formed TX/RX traffic, so that
 * the fuzzer starts from chains the device accepts. {@code -Dvnd.fuzz.writeSeeds=true} rewrites the files.
 */
class ChainWalkSeedCorpusTest {
    // Field encodings of ChainWalkFuzzTest.address/length/putDescriptor.
    static SeedWriter dataAddress(SeedWriter w, int slot) {
        return w.u8(0).u16(slot); // DATA + 16 * slot
    }

    static SeedWriter descriptor(SeedWriter w, int slot, int length, int flags, int next) {
        dataAddress(w, slot);
        w.u8(1).u16(length); // a u16 length
        return w.u8(flags & 7).u8(next & 0x7f);
    }

    static Map<String, byte[]> splitQueueSeeds() {
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        // Queue of 16, INDIRECT negotiated; chain 0 = readable 64 + writable 1500, chain 2 = readable 100; the
        // device's index starts at 0xfffe so that both rings wrap.
        SeedWriter w = new SeedWriter().u8(4).u8(0).u8(1).u8(0).u8(2);
        descriptor(w, 0, 64, 1, 1);
        descriptor(w, 100, 1500, 2, 0);
        descriptor(w, 200, 100, 0, 0);
        w.u8(0); // no indirect entries
        w.u16(0xfffe).u16(0xfff0).u16(0);
        for (int slot = 0; slot < 16; slot++) {
            w.u8(slot == 0 ? 0 : 2);
        }
        w.u16(0);
        w.u8(2).u16(1500).u16(0).u8(1); // round: 2 chains made available; used lengths; ask for kicks
        w.u8(1).u16(0).u8(0); // round: one more (slot 0 again)
        seeds.put("direct-chains-wrapping", w.toBytes());

        // Queue of 8: descriptor 0 points at a 3-entry indirect table (readable 12, readable 1000, writable 200).
        w = new SeedWriter().u8(3).u8(0).u8(1).u8(0).u8(0);
        w.u8(1).u8(0); // address: indirect area entry 0
        w.u8(2).u8(2); // length: 16 * 3
        w.u8(4).u8(0); // INDIRECT, next 0
        w.u8(3);
        descriptor(w, 10, 12, 1, 1);
        descriptor(w, 11, 1000, 1, 2);
        descriptor(w, 12, 200, 2, 0);
        w.u16(0).u16(0).u16(0);
        for (int slot = 0; slot < 8; slot++) {
            w.u8(0);
        }
        w.u16(0);
        w.u8(1).u16(200).u8(1);
        seeds.put("indirect-table", w.toBytes());

        // Queue of 256 in the legacy layout with EVENT_IDX: 8 one-descriptor writable chains.
        w = new SeedWriter().u8(8).u8(1).u8(0).u8(1).u8(7);
        for (int i = 0; i < 8; i++) {
            descriptor(w, 300 + i, 1526, 2, 0);
        }
        w.u8(0).u16(100).u16(100).u16(0);
        for (int slot = 0; slot < 64; slot++) {
            w.u8((slot + 100) % 8);
        }
        w.u16(103); // used_event: notify after the fourth
        w.u8(8);
        for (int i = 0; i < 8; i++) {
            w.u16(60 + i);
        }
        w.u8(1);
        seeds.put("legacy-event-idx", w.toBytes());
        return seeds;
    }

    /** A 60-byte IPv4/UDP frame (checksums as the driver leaves them for NEEDS_CSUM). */
    static byte[] udpFrame() {
        byte[] f = new byte[60];
        byte[] head = {
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x08, 0x00,
            0x45, 0x00, 0x00, 0x2e, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 77, 0, 2, 10, 77, 0, 1,
            0x30, 0x39, 0x00, 0x35, 0x00, 0x1a, 0x00, 0x00};
        System.arraycopy(head, 0, f, 0, head.length);
        for (int i = head.length; i < f.length; i++) {
            f[i] = (byte) i;
        }
        return f;
    }

    static Map<String, byte[]> txRxSeeds() {
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        byte[] frame = udpFrame();
        byte[] plain = new byte[12];
        byte[] csum = {1, 0, 0, 0, 0, 0, 34, 0, 6, 0, 0, 0}; // NEEDS_CSUM, csum_start 34, csum_offset 6
        SeedWriter w = new SeedWriter().u16(frame.length - 14).u8(0).u8(1);
        w.u8(9).bytes(plain).bytes(frame); // chain 0: 72 bytes
        w.u8(9).bytes(csum).bytes(frame); // chain 1
        w.u8(8); // burst
        w.u8(2); // two frames to the guest
        w.u8(1).bytes(plain).u16(frame.length).bytes(frame);
        w.u8(1).bytes(new byte[] {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}).u16(1400).bytes(new byte[1400]);
        w.u8(0).u8(4).u8(4).u8(4).u8(4);
        seeds.put("two-tx-two-rx", w.toBytes());
        return seeds;
    }

    @Test
    void committedSeedsAreWhatTheBuildersMake() {
        SeedWriter.writeOrCheck(ChainWalkFuzzTest.class, "splitQueue", splitQueueSeeds());
        SeedWriter.writeOrCheck(ChainWalkFuzzTest.class, "txRxPaths", txRxSeeds());
    }
}
