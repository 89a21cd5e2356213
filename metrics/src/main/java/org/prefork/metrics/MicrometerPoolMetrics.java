package org.prefork.metrics;

import java.util.concurrent.TimeUnit;
import java.util.function.ToDoubleFunction;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;

/**
 * {@link PoolMetrics} on Micrometer. Names are dotted here and become
 * {@code prefork_handouts_total}, {@code prefork_handout_wait_seconds} and so on in
 * Prometheus, with the units in the names.
 */
public final class MicrometerPoolMetrics implements PoolMetrics {

    private final MeterRegistry registry;
    private final Counter handouts;
    private final Timer handoutWait;
    private final Counter exitsByCode;
    private final Counter exitsBySignal;

    public MicrometerPoolMetrics(MeterRegistry registry) {
        this.registry = registry;
        this.handouts = Counter.builder("prefork.handouts")
                .description("Workers handed out to sessions").register(registry);
        this.handoutWait = Timer.builder("prefork.handout.wait")
                .description("Time a request waited for a parked worker").register(registry);
        this.exitsByCode = exits("code");
        this.exitsBySignal = exits("signal");
    }

    private Counter exits(String how) {
        return Counter.builder("prefork.worker.exits").tag("how", how)
                .description("Workers that ended, by exit code or by signal")
                .register(registry);
    }

    @Override
    public void handedOut(long waitNanos) {
        handouts.increment();
        handoutWait.record(waitNanos, TimeUnit.NANOSECONDS);
    }

    @Override
    public void refused(String code) {
        Counter.builder("prefork.refusals").tag("code", code)
                .description("Requests answered with an error, by error code")
                .register(registry).increment();
    }

    @Override
    public void workerExited(boolean bySignal) {
        (bySignal ? exitsBySignal : exitsByCode).increment();
    }

    @Override
    public void watch(Counts counts) {
        gauge("parked", counts, Counts::parked);
        gauge("bound", counts, Counts::bound);
        Gauge.builder("prefork.requests.waiting", counts, Counts::waiting).strongReference(true)
                .description("Requests waiting for a parked worker").register(registry);
    }

    private void gauge(String state, Counts counts,
            ToDoubleFunction<Counts> value) {
        // Strong: Micrometer holds gauge state weakly by default, and a collected
        // Counts would read NaN. The pool lives as long as its registry anyway.
        Gauge.builder("prefork.workers", counts, value).tag("state", state)
                .strongReference(true).description("Workers by state").register(registry);
    }
}
