package org.prefork.metrics;

import java.io.Closeable;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;

/**
 * Serves the pool's meters for Prometheus to scrape at {@code GET /metrics}. It reads
 * only meters, never the pool's lock, so a slow scraper cannot slow a hand-out.
 */
public final class PrometheusEndpoint implements Closeable {

    private static final String CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
    private static final int THREADS = 4;

    static {
        // The JDK's server waits for a request forever by default, so one client that
        // never finishes its request would hold a thread for good. It reads these once,
        // when its classes load, which is why they are set here, before any server.
        setIfAbsent("sun.net.httpserver.maxReqTime", "10");
        setIfAbsent("sun.net.httpserver.maxRspTime", "10");
    }

    private static void setIfAbsent(String key, String seconds) {
        if (System.getProperty(key) == null) {
            System.setProperty(key, seconds);
        }
    }

    private final PrometheusMeterRegistry registry =
            new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    private final HttpServer server;

    private PrometheusEndpoint(HttpServer server) {
        this.server = server;
    }

    /** Listens on {@code address}; port 0 picks a free one (see {@link #port()}). */
    public static PrometheusEndpoint start(InetSocketAddress address) throws IOException {
        HttpServer server = HttpServer.create(address, 16);
        PrometheusEndpoint endpoint = new PrometheusEndpoint(server);
        server.createContext("/", endpoint::handle);
        server.setExecutor(Executors.newFixedThreadPool(THREADS, runnable -> {
            Thread thread = new Thread(runnable, "metrics-endpoint");
            thread.setDaemon(true);
            return thread;
        }));
        server.start();
        return endpoint;
    }

    /** The meters to register with, for example through {@link MicrometerPoolMetrics}. */
    public PrometheusMeterRegistry registry() {
        return registry;
    }

    public int port() {
        return server.getAddress().getPort();
    }

    private void handle(HttpExchange exchange) throws IOException {
        try (exchange) {
            if (!exchange.getRequestURI().getPath().equals("/metrics")) {
                reply(exchange, 404, "not found: the meters are at /metrics\n");
            } else if (!exchange.getRequestMethod().equals("GET")) {
                reply(exchange, 405, "only GET\n");
            } else {
                exchange.getResponseHeaders().set("Content-Type", CONTENT_TYPE);
                reply(exchange, 200, registry.scrape());
            }
        }
    }

    private static void reply(HttpExchange exchange, int status, String body)
            throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    @Override
    public void close() {
        server.stop(0);
        registry.close();
    }
}
