package org.virtionetd.backends.tap;

import org.junit.jupiter.api.Test;
import org.virtionetd.virtio.net.NetBackend;
import org.virtionetd.virtio.testsupport.NetNs;

import java.io.IOException;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class TapBackendSpecTest {
    @Test
    void tapColonName() {
        BackendSpec s = BackendSpec.parse("tap:vm0-net");
        assertThat(s.tapName()).isEqualTo("vm0-net");
        assertThat(s.offload()).isTrue();
        assertThat(s.toString()).isEqualTo("tap:vm0-net");
    }

    @Test
    void bhyveSpellings() {
        assertThat(BackendSpec.parse("tap0").tapName()).isEqualTo("tap0");
        assertThat(BackendSpec.parse("vmnet12").tapName()).isEqualTo("vmnet12");
    }

    @Test
    void noOffloadAsOptionOrFlag() {
        assertThat(BackendSpec.parse("tap:t1,no-offload").offload()).isFalse();
        assertThat(BackendSpec.parse("tap3").withoutOffload().offload()).isFalse();
        assertThat(BackendSpec.parse("tap3").withoutOffload().toString()).isEqualTo("tap:tap3,no-offload");
    }

    @Test
    void errorsNameTheWrongPart() {
        assertThatThrownBy(() -> BackendSpec.parse("vale0:1")).hasMessageContaining("unknown backend 'vale0'");
        assertThatThrownBy(() -> BackendSpec.parse("tapx")).hasMessageContaining("unknown backend 'tapx'");
        assertThatThrownBy(() -> BackendSpec.parse("tap:")).hasMessageContaining("empty");
        assertThatThrownBy(() -> BackendSpec.parse("tap:a,offload=yes"))
                .hasMessageContaining("unknown option 'offload=yes'");
        assertThatThrownBy(() -> BackendSpec.parse("tap:a-name-that-is-too-long"))
                .hasMessageContaining("at most 15");
        assertThatThrownBy(() -> BackendSpec.parse("tap:a/b")).hasMessageContaining("forbidden character at 1");
        assertThatThrownBy(() -> BackendSpec.parse("")).hasMessageContaining("empty");
    }

    @Test
    void openGivesOneTapBackendPerQueuePair() throws IOException {
        String name = NetNs.uniqueLinkName("vnt");
        List<NetBackend> bs = BackendSpec.parse("tap:" + name + ",no-offload").open(2);
        try {
            assertThat(bs).hasSize(2).allMatch(b -> b instanceof TapBackend && b.name().equals("tap:" + name));
            assertThat(bs).allMatch(b -> !((TapBackend) b).vnetHeader());
        } finally {
            bs.forEach(NetBackend::close);
        }
    }
}
