package org.virtionetd.glue.control;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** GET /metrics on an ephemeral loopback port: the exposition at each scrape, 404 elsewhere, 405 for other methods. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class MetricsHttpServerTest {
    private static final HttpClient CLIENT = HttpClient.newBuilder().proxy(HttpClient.Builder.NO_PROXY)
            .connectTimeout(Duration.ofSeconds(10)).build();

    static HttpResponse<String> send(String method, URI uri) throws IOException, InterruptedException {
        HttpRequest req = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10))
                .method(method, HttpRequest.BodyPublishers.noBody()).build();
        return CLIENT.send(req, HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void servesTheExpositionOfEachScrape() throws Exception {
        AtomicInteger scrapes = new AtomicInteger();
        try (MetricsHttpServer m = new MetricsHttpServer(new InetSocketAddress("127.0.0.1", 0), () -> {
            scrapes.incrementAndGet();
            return PrometheusExposition.render(List.of(PrometheusExpositionTest.report("vnd0", 1)));
        })) {
            assertThat(m.address().getPort()).isPositive();
            assertThat(m.url()).isEqualTo("http://127.0.0.1:" + m.address().getPort() + "/metrics");
            HttpResponse<String> r = send("GET", URI.create(m.url()));
            assertThat(r.statusCode()).isEqualTo(200);
            assertThat(r.headers().firstValue("Content-Type")).hasValue("text/plain; version=0.0.4; charset=utf-8");
            assertThat(r.body()).isEqualTo(PrometheusExposition.render(
                    List.of(PrometheusExpositionTest.report("vnd0", 1))));
            assertThat(send("GET", URI.create(m.url())).statusCode()).isEqualTo(200);
            assertThat(scrapes.get()).as("the counters are read at each scrape").isEqualTo(2);
            assertThat(Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals("metrics-http")))
                    .as("one handler thread, a daemon").hasSize(1).allMatch(Thread::isDaemon);
        }
    }

    @Test
    void otherPathsAre404AndOtherMethods405() throws Exception {
        try (MetricsHttpServer m = new MetricsHttpServer(new InetSocketAddress("127.0.0.1", 0), () -> "x 1\n")) {
            String base = "http://127.0.0.1:" + m.address().getPort();
            for (String path : List.of("/", "/metricsx", "/metrics/x", "/favicon.ico")) {
                HttpResponse<String> r = send("GET", URI.create(base + path));
                assertThat(r.statusCode()).as(path).isEqualTo(404);
                assertThat(r.body()).as(path).contains("/metrics");
            }
            for (String method : List.of("POST", "PUT", "DELETE")) {
                HttpResponse<String> r = send(method, URI.create(base + "/metrics"));
                assertThat(r.statusCode()).as(method).isEqualTo(405);
                assertThat(r.headers().firstValue("Allow")).as(method).hasValue("GET");
            }
            assertThat(send("GET", URI.create(base + "/metrics?x=1")).body()).isEqualTo("x 1\n");
        }
    }

    @Test
    void aFailingExpositionIs500AndTheServerGoesOn() throws Exception {
        AtomicInteger n = new AtomicInteger();
        try (MetricsHttpServer m = new MetricsHttpServer(new InetSocketAddress("127.0.0.1", 0), () -> {
            if (n.incrementAndGet() == 1) {
                throw new IllegalStateException("boom");
            }
            return "";
        })) {
            HttpResponse<String> r = send("GET", URI.create(m.url()));
            assertThat(r.statusCode()).isEqualTo(500);
            assertThat(r.body()).contains("boom");
            assertThat(send("GET", URI.create(m.url())).statusCode()).isEqualTo(200);
        }
    }

    @Test
    void aPortInUseIsNamedAndCloseStopsListening() throws Exception {
        MetricsHttpServer first = new MetricsHttpServer(new InetSocketAddress("127.0.0.1", 0), () -> "");
        InetSocketAddress taken = first.address();
        assertThatThrownBy(() -> new MetricsHttpServer(taken, () -> ""))
                .isInstanceOf(IOException.class).hasMessageContaining("cannot listen on " + taken);
        first.close();
        assertThatThrownBy(() -> send("GET", URI.create(first.url()))).isInstanceOf(IOException.class);
    }
}
