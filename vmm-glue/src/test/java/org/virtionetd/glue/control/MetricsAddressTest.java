package org.virtionetd.glue.control;

import org.junit.jupiter.api.Test;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** --metrics-listen: ADDR:PORT, [IPV6]:PORT, :PORT and PORT (loopback); a wrong value is named with its fault. */
class MetricsAddressTest {
    /** Resolves literals only: the test asks no name server. */
    private static InetSocketAddress parse(String text) {
        return MetricsAddress.parse(text, host -> {
            if (host.chars().allMatch(c -> Character.isDigit(c) || c == '.' || c == ':')) {
                return InetAddress.getByName(host);
            }
            throw new UnknownHostException(host);
        });
    }

    @Test
    void aPortAloneListensOnLoopback() {
        assertThat(parse("9100")).isEqualTo(new InetSocketAddress(InetAddress.getLoopbackAddress(), 9100));
        assertThat(parse(":9100")).isEqualTo(new InetSocketAddress(InetAddress.getLoopbackAddress(), 9100));
        assertThat(MetricsAddress.parse("9100").getAddress().isLoopbackAddress()).isTrue();
    }

    @Test
    void anAddressAndPort() throws Exception {
        assertThat(parse("0.0.0.0:9100")).isEqualTo(new InetSocketAddress(InetAddress.getByName("0.0.0.0"), 9100));
        assertThat(parse("127.0.0.1:0").getPort()).isZero();
        assertThat(parse("[::1]:65535")).isEqualTo(new InetSocketAddress(InetAddress.getByName("::1"), 65535));
    }

    @Test
    void aWrongValueNamesItselfAndWhatIsWrong() {
        assertThatThrownBy(() -> parse("127.0.0.1:99999")).hasMessageContaining("--metrics-listen '127.0.0.1:99999'")
                .hasMessageContaining("port 99999 is outside 0..65535");
        assertThatThrownBy(() -> parse("127.0.0.1:http")).hasMessageContaining("'127.0.0.1:http'")
                .hasMessageContaining("port 'http' is not a number 0..65535");
        assertThatThrownBy(() -> parse("127.0.0.1:")).hasMessageContaining("port '' is not a number");
        assertThatThrownBy(() -> parse("-1")).hasMessageContaining("port '-1'");
        assertThatThrownBy(() -> parse("::1:9100")).hasMessageContaining("'::1:9100'")
                .hasMessageContaining("[ADDR]:PORT");
        assertThatThrownBy(() -> parse("[::1]9100")).hasMessageContaining("'[::1]9100'")
                .hasMessageContaining("[ADDR]:PORT");
        assertThatThrownBy(() -> parse("[]:9100")).hasMessageContaining("[ADDR]:PORT");
        assertThatThrownBy(() -> parse("nohost.invalid:9100")).hasMessageContaining("'nohost.invalid:9100'")
                .hasMessageContaining("cannot resolve host 'nohost.invalid'");
    }
}
