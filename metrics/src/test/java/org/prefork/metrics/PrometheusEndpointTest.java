package org.prefork.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

import org.junit.jupiter.api.Test;

class PrometheusEndpointTest {

    private static HttpResponse<String> get(PrometheusEndpoint endpoint, String path,
            String method) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + endpoint.port() + path))
                .method(method, HttpRequest.BodyPublishers.noBody()).build();
        return HttpClient.newHttpClient().send(request, HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void servesThePoolsMetersInPrometheusTextFormat() throws Exception {
        try (PrometheusEndpoint endpoint =
                     PrometheusEndpoint.start(new InetSocketAddress("127.0.0.1", 0))) {
            MicrometerPoolMetrics metrics = new MicrometerPoolMetrics(endpoint.registry());
            metrics.handedOut(2_000_000);
            metrics.refused("pool-exhausted");

            HttpResponse<String> response = get(endpoint, "/metrics", "GET");

            assertThat(response.statusCode()).isEqualTo(200);
            assertThat(response.headers().firstValue("Content-Type"))
                    .hasValue("text/plain; version=0.0.4; charset=utf-8");
            assertThat(response.body())
                    .contains("prefork_handouts_total 1.0")
                    .contains("prefork_refusals_total{code=\"pool-exhausted\"} 1.0")
                    .contains("prefork_handout_wait_seconds_count 1");
        }
    }

    @Test
    void aClientThatNeverFinishesItsRequestBlocksNobody() throws Exception {
        try (PrometheusEndpoint endpoint =
                     PrometheusEndpoint.start(new InetSocketAddress("127.0.0.1", 0));
             java.net.Socket slow = new java.net.Socket("127.0.0.1", endpoint.port())) {
            slow.getOutputStream().write(
                    "GET /metrics HTTP/1.1\r\nHost: x\r\n".getBytes(StandardCharsets.US_ASCII));
            slow.getOutputStream().flush();

            HttpRequest scrape = HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + endpoint.port() + "/metrics"))
                    .timeout(java.time.Duration.ofSeconds(5)).build();

            assertThat(HttpClient.newHttpClient()
                    .send(scrape, HttpResponse.BodyHandlers.ofString()).statusCode())
                    .isEqualTo(200);
            // And the server gives up on the slow one (maxReqTime, 10 s, checked each second).
            slow.setSoTimeout(15_000);
            assertThat(slow.getInputStream().read()).isEqualTo(-1);
        }
    }

    @Test
    void answersOtherPathsAndMethodsPlainly() throws Exception {
        try (PrometheusEndpoint endpoint =
                     PrometheusEndpoint.start(new InetSocketAddress("127.0.0.1", 0))) {
            assertThat(get(endpoint, "/", "GET").statusCode()).isEqualTo(404);
            assertThat(get(endpoint, "/metrics", "POST").statusCode()).isEqualTo(405);
        }
    }
}
