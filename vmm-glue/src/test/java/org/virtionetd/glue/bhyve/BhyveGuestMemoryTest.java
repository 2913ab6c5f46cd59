package org.virtionetd.glue.bhyve;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.memory.GuestMemory;
import org.virtionetd.virtio.memory.MemoryRegion;
import org.virtionetd.virtio.os.LinuxNative;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BhyveGuestMemoryTest {
    static final long MIB = 1L << 20;
    static final long GIB = 1L << 30;
    static final int RW = Vmmapi.MemoryMapping.PROT_READ | Vmmapi.MemoryMapping.PROT_WRITE;
    private FakeVmmapi fake;

    @AfterEach
    void closeFake() {
        if (fake != null) {
            LinuxNative.close(fake.memfd);
        }
    }

    /** bhyve's layout: lowmem from 0, highmem at 4 GiB, and the boot ROM as device memory just below 4 GiB. */
    private FakeVmmapi bhyveLayout() throws IOException {
        fake = new FakeVmmapi("testvm", 4 * GIB + 32 * MIB);
        fake.segment(0, 64 * MIB, "").segment(1, 32 * MIB, "").segment(10, 2 * MIB, "bootrom");
        fake.map(0, 0, 64 * MIB, RW | 4).map(4 * GIB - 2 * MIB, 10, 2 * MIB, 1 | 4).map(4 * GIB, 1, 32 * MIB, RW | 4);
        return fake;
    }

    @Test
    void systemMemoryOnlyAtOffsetEqualToGpa() throws Exception {
        try (Vmmapi.VmContext vm = bhyveLayout().open("testvm");
             GuestMemory mem = BhyveGuestMemory.map(vm)) {
            assertThat(mem.regions()).extracting(MemoryRegion::guestAddress).containsExactly(0L, 4 * GIB);
            assertThat(mem.regions()).extracting(MemoryRegion::size).containsExactly(64 * MIB, 32 * MIB);
            assertThat(mem.regions()).extracting(MemoryRegion::fdOffset).containsExactly(0L, 4 * GIB);
            assertThat(fake.openFds).isEqualTo(2);
            // The boot ROM (device memory) is not guest RAM for the NIC.
            assertThat(mem.contains(4 * GIB - MIB, 16)).isFalse();
            // Bytes written at a gpa land at that offset of /dev/vmm/NAME (here the memfd), above 4 GiB too.
            byte[] data = "virtio-netd on bhyve".getBytes();
            mem.write(4 * GIB + 12345, data, 0, data.length);
            mem.write(0x1000, data, 0, data.length);
            assertThat(readDevice(4 * GIB + 12345, data.length)).isEqualTo(data);
            assertThat(readDevice(0x1000, data.length)).isEqualTo(data);
            // And the other way round: the VM's writes are seen through the GuestMemory.
            writeDevice(63 * MIB, new byte[] {1, 2, 3, 4});
            byte[] back = new byte[4];
            mem.read(63 * MIB, back, 0, 4);
            assertThat(back).containsExactly(1, 2, 3, 4);
            assertThat(mem.locate(64 * MIB - 2, 4)).isEqualTo(GuestMemory.NOWHERE);
        }
        assertThat(fake.closed).isTrue();
    }

    private byte[] readDevice(long offset, int length) throws IOException {
        long page = offset & ~4095L;
        long addr = LinuxNative.mmapShared(fake.memfd, page, 8192);
        try {
            byte[] out = new byte[length];
            ByteBuffer b = new com.sun.jna.Pointer(addr).getByteBuffer(offset - page, length).order(ByteOrder.LITTLE_ENDIAN);
            b.get(out);
            return out;
        } finally {
            LinuxNative.munmap(addr, 8192);
        }
    }

    private void writeDevice(long offset, byte[] data) throws IOException {
        long page = offset & ~4095L;
        long addr = LinuxNative.mmapShared(fake.memfd, page, 8192);
        try {
            new com.sun.jna.Pointer(addr).write(offset - page, data, 0, data.length);
        } finally {
            LinuxNative.munmap(addr, 8192);
        }
    }

    @Test
    void noSystemMemoryIsAnError() throws Exception {
        fake = new FakeVmmapi("empty", MIB);
        try (Vmmapi.VmContext vm = fake.open("empty")) {
            assertThatThrownBy(() -> BhyveGuestMemory.map(vm))
                    .hasMessage("VM empty has no system memory mapped (is bhyve running it?)");
        }
    }

    @Test
    void hostileMapsAreRefusedNamingTheMapping() throws Exception {
        fake = new FakeVmmapi("odd", 64 * MIB);
        fake.segment(0, 64 * MIB, "").map(0x1800, 0, 4 * MIB, RW);
        try (Vmmapi.VmContext vm = fake.open("odd")) {
            assertThatThrownBy(() -> BhyveGuestMemory.map(vm))
                    .hasMessage("VM odd mapping at gpa 0x1800 length 0x400000: not page aligned");
        }
        fake.mappings.clear();
        fake.map(0, 0, 4 * MIB, 1); // read-only system memory
        try (Vmmapi.VmContext vm = fake.open("odd")) {
            assertThatThrownBy(() -> BhyveGuestMemory.map(vm))
                    .hasMessage("VM odd mapping at gpa 0x0 length 0x400000: system memory without read-write "
                            + "protection (prot 1)");
        }
        fake.mappings.clear();
        fake.map(-4096L, 0, 8192, RW); // wraps
        try (Vmmapi.VmContext vm = fake.open("odd")) {
            assertThatThrownBy(() -> BhyveGuestMemory.map(vm)).hasMessageEndingWith(": empty or wraps around");
        }
    }

    @Test
    void tooManyMappingsIsBounded() throws Exception {
        fake = new FakeVmmapi("many", 128 * MIB);
        fake.segment(0, 128 * MIB, "");
        for (int i = 0; i <= BhyveGuestMemory.MAX_MAPPINGS; i++) {
            fake.map(i * 2 * MIB, 0, MIB, RW);
        }
        try (Vmmapi.VmContext vm = fake.open("many")) {
            assertThatThrownBy(() -> BhyveGuestMemory.systemMemory(vm))
                    .hasMessage("VM many reports more than 64 memory mappings");
        }
    }

    @Test
    void theRealBindingRefusesOffFreeBsd() {
        assertThat(FreeBsdVmmapi.isAvailable()).isFalse();
        assertThatThrownBy(() -> new FreeBsdVmmapi().open("testvm")).isInstanceOf(IOException.class)
                .hasMessageStartingWith("VM testvm: libvmmapi needs FreeBSD; this is Linux");
    }
}
