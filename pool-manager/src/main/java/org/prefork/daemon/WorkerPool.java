package org.prefork.daemon;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.IntConsumer;

import org.prefork.metrics.PoolMetrics;
import org.prefork.protocol.ErrorCode;
import org.prefork.protocol.ExitStatus;
import org.prefork.protocol.TemplateCodec;
import org.prefork.protocol.TemplateEvent;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The pool state machine. It hands out the oldest parked worker to each request,
 * replenishes from the template at once, and learns of every exit from the template.
 * All state lives under one lock; nothing blocking happens while it is held.
 */
public final class WorkerPool implements TemplateLink.Listener {

    private static final Logger log = LoggerFactory.getLogger(WorkerPool.class);

    /** How long a parked worker may take to confirm its privilege drop. */
    private static final long BIND_TIMEOUT_MS = 10_000;

    /** Restart backoff: doubles from the first delay up to the cap, with jitter. */
    private static final long RESTART_FIRST_DELAY_MS = 100;
    private static final long RESTART_MAX_DELAY_MS = 10_000;
    private static final long STATS_PERIOD_MS = 30_000;
    private static final long REPLENISH_DELAY_MS = 25;

    private volatile DaemonConfig config;
    private final PoolMetrics metrics;
    private final IntConsumer onFatalTemplateExit;
    private final ScheduledExecutorService housekeeper =
            Executors.newSingleThreadScheduledExecutor(runnable -> {
                Thread thread = new Thread(runnable, "pool-housekeeper");
                thread.setDaemon(true);
                return thread;
            });
    private volatile TemplateLink template;
    private int restartsInARow;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final Map<String, Worker> workers = new LinkedHashMap<>();
    private final Deque<Worker> parked = new ArrayDeque<>();
    private long nextWorkerNumber = 1;
    private int waiting;
    private long handedOut;
    private long exhausted;
    private String templateState = "starting";
    private boolean closing;

    /**
     * @param onFatalTemplateExit called with the template's exit code when it failed in a
     *     way a restart cannot mend (bad arguments, service import, warm-up)
     */
    public WorkerPool(DaemonConfig config, PoolMetrics metrics,
            IntConsumer onFatalTemplateExit) {
        this.config = config;
        this.metrics = metrics;
        this.onFatalTemplateExit = onFatalTemplateExit;
        metrics.watch(new PoolMetrics.Counts() {
            @Override
            public int parked() {
                return stats().parked();
            }

            @Override
            public int bound() {
                return stats().bound();
            }

            @Override
            public int waiting() {
                return stats().waiting();
            }
        });
    }

    /** Starts the template and waits until it is warm; then fills the pool. */
    public void start(long readyTimeoutMs) throws IOException, InterruptedException {
        startTemplate();
        lock.lock();
        try {
            long remainingNs = TimeUnit.MILLISECONDS.toNanos(readyTimeoutMs);
            while (templateState.equals("starting") && remainingNs > 0) {
                remainingNs = changed.awaitNanos(remainingNs);
            }
            if (templateState.equals("starting")) {
                throw new IOException("template did not become ready within "
                        + readyTimeoutMs + " ms");
            }
            if (!templateState.equals("up")) {
                throw new IOException("template exited before it was ready (its log is above)");
            }
        } finally {
            lock.unlock();
        }
        replenish();
        housekeeper.scheduleAtFixedRate(() -> log.debug("pool {}", stats()),
                STATS_PERIOD_MS, STATS_PERIOD_MS, TimeUnit.MILLISECONDS);
    }

    private void startTemplate() throws IOException {
        TemplateLink link = new TemplateLink(config, this);
        // Set before starting: its events may arrive at once and refer to it.
        template = link;
        try {
            link.start();
        } catch (IOException e) {
            template = null;  // nothing started, nothing to stop
            throw e;
        }
    }

    /**
     * Hands the oldest parked worker to {@code binding}'s user and waits until it has
     * dropped its privileges. Waits for a parked worker within the configured bounds.
     */
    Worker handOut(String userName, BindingSource source)
            throws Refusal, InterruptedException {
        long askedAtNanos = System.nanoTime();
        Worker worker = takeParked(userName);
        Binding binding = bindingFor(worker, source, askedAtNanos);
        try {
            template.send(TemplateCodec.bind(worker.id, binding.toJson()));
            worker.bound.get(BIND_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (IOException | TimeoutException e) {
            lock.lock();
            try {
                markStopped(worker.id);
            } finally {
                lock.unlock();
            }
            // The template stops parked workers only, and this one has its binding;
            // it is still the template's unreaped child, so its pid is still its own.
            ProcessHandle.of(worker.pid).ifPresent(ProcessHandle::destroyForcibly);
            throw new Refusal(ErrorCode.WORKER_FAILED, "worker " + worker.id
                    + " could not be bound to " + binding.user().name() + ": " + e);
        } catch (ExecutionException e) {
            throw new Refusal(ErrorCode.WORKER_FAILED, "worker " + worker.id
                    + " could not be bound to " + binding.user().name() + ": "
                    + e.getCause().getMessage());
        } finally {
            replenishAfterHandOut();
        }
        log.info("handed out {} to {}", worker, binding.user().name());
        return worker;
    }

    /**
     * Makes the binding only once a worker is taken: a request may have waited for one
     * through a reload, and what it was checked against then may no longer hold.
     */
    interface BindingSource {
        Binding binding() throws Refusal;
    }

    private Binding bindingFor(Worker worker, BindingSource source, long askedAtNanos)
            throws Refusal {
        Binding binding;
        try {
            binding = source.binding();
        } catch (Refusal | RuntimeException e) {
            putBack(worker);
            throw e;
        }
        lock.lock();
        try {
            handedOut++;
        } finally {
            lock.unlock();
        }
        metrics.handedOut(worker.boundAtNanos - askedAtNanos);
        return binding;
    }

    /** Returns an untouched worker to the head of the queue: it is still the oldest. */
    private void putBack(Worker worker) {
        lock.lock();
        try {
            worker.state = Worker.State.PARKED;
            worker.user = "-";
            worker.boundAtNanos = 0;
            parked.addFirst(worker);
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private Worker takeParked(String user) throws Refusal, InterruptedException {
        lock.lock();
        try {
            if (closing) {
                throw new Refusal(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down");
            }
            if (parked.isEmpty() && waiting >= config.maxWaiting()) {
                exhausted++;
                throw new Refusal(ErrorCode.POOL_EXHAUSTED, "pool exhausted: "
                        + waiting + " requests are already waiting for a worker");
            }
            awaitParked();
            Worker worker = parked.pollFirst();
            worker.state = Worker.State.BINDING;
            worker.user = user;
            worker.boundAtNanos = System.nanoTime();
            return worker;
        } finally {
            lock.unlock();
        }
    }

    private void awaitParked() throws Refusal, InterruptedException {
        long remainingNs = TimeUnit.MILLISECONDS.toNanos(config.waitTimeoutMs());
        waiting++;
        try {
            while (parked.isEmpty() && !closing) {
                if (remainingNs <= 0) {
                    exhausted++;
                    throw new Refusal(ErrorCode.POOL_EXHAUSTED, "pool exhausted: no worker"
                            + " became free within " + config.waitTimeoutMs() + " ms");
                }
                remainingNs = changed.awaitNanos(remainingNs);
            }
        } finally {
            waiting--;
        }
        if (closing) {
            throw new Refusal(ErrorCode.SHUTTING_DOWN, "the daemon is shutting down");
        }
    }

    /**
     * Asks for the replacement only after the bind: the template is single-threaded, and
     * a fork queued before the bind would delay this worker's 'bound'. And while other
     * workers are still parked, a little later still: forking and rehearsing the
     * replacement takes a core for milliseconds, just when the new session answers its
     * first request (measured: pooled 7.4 ms at once, 6.3 ms deferred). An empty pool
     * is refilled at once.
     */
    private void replenishAfterHandOut() {
        boolean othersParked;
        lock.lock();
        try {
            othersParked = !parked.isEmpty();
        } finally {
            lock.unlock();
        }
        if (!othersParked) {
            replenish();
            return;
        }
        try {
            housekeeper.schedule(this::replenish, REPLENISH_DELAY_MS, TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException e) {
            // The pool is shutting down: nothing to replenish.
        }
    }

    /** Applies a reloaded configuration: new bounds hold from the next request on. */
    void reconfigure(DaemonConfig next) {
        lock.lock();
        try {
            config = next;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        replenish();
    }

    /** Forks until the idle target is met, within max_total. Sends outside the lock. */
    private void replenish() {
        List<String> toFork = new ArrayList<>();
        lock.lock();
        try {
            int idle = count(Worker.State.PARKED) + count(Worker.State.FORKING);
            while (!closing && templateState.equals("up")
                    && idle + toFork.size() < config.minIdle()
                    && workers.size() < config.maxTotal()) {
                Worker worker = new Worker("w" + nextWorkerNumber++);
                workers.put(worker.id, worker);
                toFork.add(worker.id);
            }
        } finally {
            lock.unlock();
        }
        for (String id : toFork) {
            template.sendQuietly(TemplateCodec.fork(id));
        }
    }

    @Override
    public void onEvent(TemplateEvent event) {
        if (event instanceof TemplateEvent.Exited exited) {
            onExited(exited);
            replenish();
            return;
        }
        boolean parkedWhileClosing;
        lock.lock();
        try {
            apply(event);
            parkedWhileClosing = closing && event instanceof TemplateEvent.Parked p
                    && markStopped(p.workerId());
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        if (parkedWhileClosing) {
            // It was forking when the shutdown began, so the first round of stops missed it.
            template.sendQuietly(TemplateCodec.stop(((TemplateEvent.Parked) event).workerId()));
        }
        if (event instanceof TemplateEvent.Ready || event instanceof TemplateEvent.ForkFailed) {
            replenish();
        }
    }

    private void apply(TemplateEvent event) {
        if (event instanceof TemplateEvent.Ready ready) {
            templateState = "up";
            restartsInARow = 0;
            log.info("template ready (pid:{}), warmed in {} ms", ready.templatePid(),
                    ready.warmMs());
        } else if (event instanceof TemplateEvent.Parked p) {
            Worker worker = expect(p.workerId(), Worker.State.FORKING);
            if (worker != null) {
                worker.pid = p.pid();
                worker.dir = Path.of(p.dir());
                worker.state = Worker.State.PARKED;
                parked.addLast(worker);
                log.debug("parked {}", worker);
            }
        } else if (event instanceof TemplateEvent.Bound b) {
            Worker worker = expect(b.workerId(), Worker.State.BINDING);
            if (worker != null) {
                worker.state = Worker.State.BOUND;
                worker.bound.complete(null);
            }
        } else if (event instanceof TemplateEvent.BindFailed f) {
            Worker worker = workers.get(f.workerId());
            if (worker != null) {
                log.error("{} for {} failed to bind: {}", worker, worker.user, f.reason());
                worker.bound.completeExceptionally(new IOException(f.reason()));
            }
        } else if (event instanceof TemplateEvent.ForkFailed f) {
            workers.remove(f.workerId());
            log.error("template could not fork {}: {}", f.workerId(), f.reason());
        }
    }

    private void onExited(TemplateEvent.Exited exited) {
        Worker worker;
        lock.lock();
        try {
            worker = workers.remove(exited.workerId());
            if (worker == null) {
                log.warn("template reported exit of unknown worker {}", exited.workerId());
                return;
            }
            parked.remove(worker);
            worker.state = Worker.State.EXITED;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        logExit(worker, exited.status());
        if (!worker.stopRequested) {
            metrics.workerExited(exited.status().bySignal());
        }
        worker.bound.completeExceptionally(
                new IOException("worker exited before binding: " + exited.status()));
        worker.exit.complete(exited.status());
    }

    private static void logExit(Worker worker, ExitStatus status) {
        long sessionMs = worker.boundAtNanos == 0 ? 0
                : TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - worker.boundAtNanos);
        if (worker.stopRequested) {
            log.debug("{} stopped ({})", worker, status);
        } else if (status.bySignal() && status.value() == 9) {
            log.warn("{} for {} was killed by SIGKILL after {} ms (out of memory?)",
                    worker, worker.user, sessionMs);
        } else {
            log.info("{} for {} exited with {} after {} ms", worker, worker.user, status,
                    sessionMs);
        }
    }

    @Override
    public void onTemplateExit(int exitCode) {
        List<Worker> lost;
        long restartDelayMs;
        lock.lock();
        try {
            templateState = closing ? "stopped" : "down";
            lost = new ArrayList<>(workers.values());
            workers.clear();
            parked.clear();
            restartDelayMs = nextRestartDelayMs();
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        lost.forEach(WorkerPool::forgetAfterTemplateLoss);

        if (closing) {
            log.info("template exited with code {}", exitCode);
        } else if (TemplateLink.FATAL_EXIT_CODES.contains(exitCode)) {
            log.error("template failed with code {}, which a restart cannot mend", exitCode);
            onFatalTemplateExit.accept(exitCode);
        } else {
            log.error("template exited unexpectedly with code {}; {} workers lost;"
                    + " restarting in {} ms", exitCode, lost.size(), restartDelayMs);
            housekeeper.schedule(this::restartTemplate, restartDelayMs, TimeUnit.MILLISECONDS);
        }
    }

    private long nextRestartDelayMs() {
        long delay = Math.min(RESTART_MAX_DELAY_MS,
                RESTART_FIRST_DELAY_MS << Math.min(restartsInARow, 16));
        restartsInARow++;
        // Jitter of up to a fifth, so that hosts restarted together do not retry together.
        return delay + ThreadLocalRandom.current().nextLong(delay / 5 + 1);
    }

    private void restartTemplate() {
        lock.lock();
        try {
            if (closing) {
                return;
            }
            templateState = "starting";
        } finally {
            lock.unlock();
        }
        try {
            startTemplate();
        } catch (IOException e) {
            log.error("restarting the template failed: {}", e.getMessage());
            onTemplateExit(-1);
        }
    }

    /**
     * The template was the workers' parent; without it nobody reports their exit. A
     * bound session goes on (its FIFOs are open), so its caller is told when it ends.
     */
    private static void forgetAfterTemplateLoss(Worker worker) {
        IOException gone = new IOException("template exited; exit status of " + worker
                + " is unknown");
        worker.bound.completeExceptionally(gone);
        if (worker.state != Worker.State.BOUND) {
            worker.exit.completeExceptionally(gone);
            return;
        }
        ProcessHandle.of(worker.pid).ifPresentOrElse(
                handle -> handle.onExit().thenRun(() -> worker.exit.completeExceptionally(gone)),
                () -> worker.exit.completeExceptionally(gone));
    }

    private Worker expect(String id, Worker.State state) {
        Worker worker = workers.get(id);
        if (worker == null || worker.state != state) {
            log.warn("template event for {} in unexpected state {} (expected {})", id,
                    worker == null ? "unknown" : worker.state, state);
            return null;
        }
        return worker;
    }

    /** Returns true when the worker is still known, so there is something to stop. */
    private boolean markStopped(String workerId) {
        Worker worker = workers.get(workerId);
        if (worker != null) {
            worker.stopRequested = true;
        }
        return worker != null;
    }

    private int count(Worker.State state) {
        return (int) workers.values().stream().filter(w -> w.state == state).count();
    }

    public PoolStats stats() {
        lock.lock();
        try {
            int bound = count(Worker.State.BINDING) + count(Worker.State.BOUND);
            return new PoolStats(parked.size(), count(Worker.State.FORKING), bound, waiting,
                    handedOut, exhausted, templateState);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Stops in stages: refuse new requests and stop parked workers; let bound sessions
     * finish until the drain deadline; then terminate what is left and end the template.
     */
    public void shutdown() throws InterruptedException {
        List<String> toStop = beginClosing();
        toStop.forEach(id -> template.sendQuietly(TemplateCodec.stop(id)));

        if (!awaitNoWorkers(config.drainTimeoutMs())) {
            log.warn("drain deadline of {} ms passed; terminating {} sessions",
                    config.drainTimeoutMs(), stats().total());
            signalRemaining(false);
            if (!awaitNoWorkers(2_000)) {
                signalRemaining(true);
                awaitNoWorkers(2_000);
            }
        }

        housekeeper.shutdownNow();
        TemplateLink template = this.template;
        if (template == null) {
            return;  // the start failed before the template did
        }
        template.closeInput();
        if (!template.awaitExit(5_000)) {
            log.warn("template (pid:{}) did not exit within 5000 ms; killing it",
                    template.pid());
            template.kill();
            template.awaitExit(5_000);
        }
    }

    private List<String> beginClosing() {
        lock.lock();
        try {
            closing = true;
            changed.signalAll();
            parked.forEach(w -> w.stopRequested = true);
            return parked.stream().map(w -> w.id).toList();
        } finally {
            lock.unlock();
        }
    }

    private boolean awaitNoWorkers(long timeoutMs) throws InterruptedException {
        lock.lock();
        try {
            long remainingNs = TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            while (!workers.isEmpty() && remainingNs > 0 && !templateState.equals("stopped")) {
                remainingNs = changed.awaitNanos(remainingNs);
            }
            return workers.isEmpty();
        } finally {
            lock.unlock();
        }
    }

    private void signalRemaining(boolean forcibly) {
        List<Long> pids;
        lock.lock();
        try {
            pids = workers.values().stream().filter(w -> w.pid > 0).map(w -> w.pid).toList();
        } finally {
            lock.unlock();
        }
        for (long pid : pids) {
            ProcessHandle.of(pid).ifPresent(h -> {
                if (forcibly) {
                    h.destroyForcibly();
                } else {
                    h.destroy();
                }
            });
        }
    }
}
