package org.prefork.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

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
    void answersOtherPathsAndMethodsPlainly() throws Exception {
        try (PrometheusEndpoint endpoint =
                     PrometheusEndpoint.start(new InetSocketAddress("127.0.0.1", 0))) {
            assertThat(get(endpoint, "/", "GET").statusCode()).isEqualTo(404);
            assertThat(get(endpoint, "/metrics", "POST").statusCode()).isEqualTo(405);
        }
    }
}
