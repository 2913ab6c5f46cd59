package org.virtionetd.glue.control;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Supplier;

/**
 * {@code GET /metrics} over HTTP for a Prometheus scrape ({@code --metrics-listen}): the body is what
 * {@code exposition} gives at that moment, with {@link PrometheusExposition#CONTENT_TYPE}. Any other path is 404,
 * any other method on /metrics 405. Requests are answered one at a time on one daemon thread (a scrape every few
 * seconds needs no more); the JDK's server adds its own dispatcher thread, ended by {@link #close()}.
 */
public final class MetricsHttpServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(MetricsHttpServer.class.getName());
    public static final String PATH = "/metrics";
    private static final String TEXT = "text/plain; charset=utf-8";

    private final HttpServer server;
    private final ExecutorService executor;
    private final Supplier<String> exposition;

    /** Listens on {@code address} (port 0: a free one, see {@link #address()}). */
    public MetricsHttpServer(InetSocketAddress address, Supplier<String> exposition) throws IOException {
        this.exposition = exposition;
        try {
            this.server = HttpServer.create(address, 8);
        } catch (IOException e) {
            throw new IOException("cannot listen on " + address + " for metrics: " + e.getMessage(), e);
        }
        this.executor = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "metrics-http");
            t.setDaemon(true);
            return t;
        });
        server.setExecutor(executor);
        server.createContext("/", this::handle);
        server.start();
    }

    /** The address listened on, with the port the kernel picked for port 0. */
    public InetSocketAddress address() {
        return server.getAddress();
    }

    /** {@code http://HOST:PORT/metrics} of {@link #address()}. */
    public String url() {
        InetSocketAddress a = address();
        String host = a.getAddress().getHostAddress();
        return "http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + a.getPort() + PATH;
    }

    private void handle(HttpExchange exchange) throws IOException {
        try (exchange) {
            // The context "/" matches every path; a context "/metrics" would also take "/metricsX".
            String path = exchange.getRequestURI().getPath();
            if (!PATH.equals(path)) {
                reply(exchange, 404, TEXT, "no " + path + " here; the metrics are at " + PATH + "\n");
            } else if (!"GET".equals(exchange.getRequestMethod())) {
                exchange.getResponseHeaders().set("Allow", "GET");
                reply(exchange, 405, TEXT, exchange.getRequestMethod() + " " + PATH + ": only GET is served\n");
            } else {
                String body;
                try {
                    body = exposition.get();
                } catch (RuntimeException e) {
                    LOG.log(System.Logger.Level.WARNING, "metrics: " + e, e);
                    reply(exchange, 500, TEXT, "metrics failed: " + e + "\n");
                    return;
                }
                reply(exchange, 200, PrometheusExposition.CONTENT_TYPE, body);
            }
        }
    }

    private static void reply(HttpExchange exchange, int status, String contentType, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", contentType);
        exchange.sendResponseHeaders(status, bytes.length == 0 ? -1 : bytes.length);
        if (bytes.length > 0) {
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(bytes);
            }
        }
    }

    @Override
    public void close() {
        server.stop(0);
        executor.shutdownNow();
    }
}
