package org.prefork.metrics;

/**
 * What the pool tells its meters. The pool calls these on its hot path, so the default
 * does nothing and an implementation must not block.
 */
public interface PoolMetrics {

    /** Meters nothing; the pool's default. */
    PoolMetrics NOOP = new PoolMetrics() {
    };

    /** The counts a gauge reads; the pool answers from one consistent snapshot. */
    interface Counts {
        int parked();

        int bound();

        int waiting();
    }

    /** A worker was handed out after the request waited this long for it. */
    default void handedOut(long waitNanos) {
    }

    /** A request was refused; {@code code} is the control protocol's error code. */
    default void refused(String code) {
    }

    /** A worker ended: by exit code, or by signal. */
    default void workerExited(boolean bySignal) {
    }

    /** Registers gauges that read {@code counts} when scraped. */
    default void watch(Counts counts) {
    }
}
