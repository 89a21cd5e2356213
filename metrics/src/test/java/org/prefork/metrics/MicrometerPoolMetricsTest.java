package org.prefork.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import org.junit.jupiter.api.Test;

class MicrometerPoolMetricsTest {

    private final SimpleMeterRegistry registry = new SimpleMeterRegistry();
    private final MicrometerPoolMetrics metrics = new MicrometerPoolMetrics(registry);

    @Test
    void countsHandOutsAndTheirWait() {
        metrics.handedOut(TimeUnit.MILLISECONDS.toNanos(2));
        metrics.handedOut(TimeUnit.MILLISECONDS.toNanos(4));

        assertThat(registry.get("prefork.handouts").counter().count()).isEqualTo(2);
        assertThat(registry.get("prefork.handout.wait").timer().totalTime(TimeUnit.MILLISECONDS))
                .isEqualTo(6);
    }

    @Test
    void countsRefusalsByCodeAndExitsByKind() {
        metrics.refused("pool-exhausted");
        metrics.refused("pool-exhausted");
        metrics.refused("refused");
        metrics.workerExited(true);
        metrics.workerExited(false);
        metrics.workerExited(false);

        assertThat(registry.get("prefork.refusals").tag("code", "pool-exhausted").counter()
                .count()).isEqualTo(2);
        assertThat(registry.get("prefork.refusals").tag("code", "refused").counter().count())
                .isEqualTo(1);
        assertThat(registry.get("prefork.worker.exits").tag("how", "signal").counter().count())
                .isEqualTo(1);
        assertThat(registry.get("prefork.worker.exits").tag("how", "code").counter().count())
                .isEqualTo(2);
    }

    @Test
    void gaugesReadTheCountsWhenScraped() {
        AtomicInteger parked = new AtomicInteger(4);
        metrics.watch(new PoolMetrics.Counts() {
            @Override
            public int parked() {
                return parked.get();
            }

            @Override
            public int bound() {
                return 2;
            }

            @Override
            public int waiting() {
                return 1;
            }
        });
        parked.set(3);

        assertThat(registry.get("prefork.workers").tag("state", "parked").gauge().value())
                .isEqualTo(3);
        assertThat(registry.get("prefork.workers").tag("state", "bound").gauge().value())
                .isEqualTo(2);
        assertThat(registry.get("prefork.requests.waiting").gauge().value()).isEqualTo(1);
    }
}
