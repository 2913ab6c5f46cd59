package org.virtionetd.backends;

import org.junit.jupiter.api.Test;
import org.virtionetd.backends.nullnet.NullBackend;
import org.virtionetd.backends.offload.OffloadingBackend;
import org.virtionetd.backends.vswitch.SwitchPort;
import org.virtionetd.virtio.net.NetBackend;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The registry assembles what a device gets: the spec it names, behind the software engine where needed. */
class BackendsAssemblyTest {
    static NetBackend openOne(String text, Backends.Offloads offloads) throws Exception {
        List<NetBackend> opened = Backends.assemble(text, offloads).open(1);
        assertThat(opened).hasSize(1);
        return opened.get(0);
    }

    @Test
    void aBackendCarryingEveryOffloadIsNotWrapped() throws Exception {
        for (Backends.Offloads o : Backends.Offloads.values()) {
            NetBackend b = openOne("null", o);
            assertThat(b).as("null under %s", o).isInstanceOf(NullBackend.class);
            b.close();
        }
    }

    @Test
    void aSwitchPortCarriesItsOffloadsEvenUnderSoftwareOffload() throws Exception {
        NetBackend b = openOne("switch:asm0", Backends.Offloads.SOFTWARE);
        try {
            assertThat(b).isInstanceOf(SwitchPort.class);
            assertThat(b.capabilities()).as("the port still offers its offloads").isNotZero();
        } finally {
            b.close();
        }
        assertThat(Backends.assemble("switch:asm0", Backends.Offloads.SOFTWARE).toString()).isEqualTo("switch:asm0");
    }

    @Test
    void aPortWithoutOffloadsGetsTheEngineUnlessNoneAreWanted() throws Exception {
        NetBackend b = openOne("switch:asm1,no-offload", Backends.Offloads.BACKEND);
        try {
            assertThat(b).isInstanceOf(OffloadingBackend.class);
            assertThat(((OffloadingBackend) b).inner()).isInstanceOf(SwitchPort.class);
        } finally {
            b.close();
        }
        NetBackend none = openOne("switch:asm1", Backends.Offloads.NONE);
        try {
            assertThat(none).isInstanceOf(SwitchPort.class);
            assertThat(none.capabilities()).isZero();
        } finally {
            none.close();
        }
    }

    @Test
    void theAssembledNameIsTheSpecAsOpened() {
        assertThat(Backends.assemble("tap:t0", Backends.Offloads.BACKEND).toString()).isEqualTo("tap:t0");
        assertThat(Backends.assemble("tap:t0", Backends.Offloads.SOFTWARE).toString()).isEqualTo("tap:t0,no-offload");
        assertThat(Backends.assemble("tap0", Backends.Offloads.NONE).toString()).isEqualTo("tap:tap0,no-offload");
        assertThat(Backends.assemble("switch:s", Backends.Offloads.NONE).toString()).isEqualTo("switch:s,no-offload");
        assertThat(Backends.assemble("null:source=64", Backends.Offloads.SOFTWARE).toString())
                .isEqualTo("null:source=64");
        assertThatThrownBy(() -> Backends.assemble("vde:/tmp/x", Backends.Offloads.BACKEND))
                .hasMessageContaining("unknown backend 'vde'");
    }
}
