package org.prefork.daemon;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Stream;

import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;
import org.prefork.metrics.PoolMetrics;
import org.prefork.protocol.ErrorCode;
import org.prefork.protocol.Limits;
import org.prefork.protocol.Reply;
import org.prefork.protocol.Request;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * preforkd: owns the configuration, the user policy, the pool and the control socket.
 * It never runs service code itself.
 */
public final class PreforkDaemon implements ControlConnection.Handler {

    /** Exit codes, so a supervisor can tell a bad config from a crash. */
    public static final int EXIT_OK = 0;
    public static final int EXIT_FAILED = 1;
    public static final int EXIT_SERVICE_IMPORT = 4;
    public static final int EXIT_WARM_UP = 5;
    public static final int EXIT_CONFIG = 78;

    private static final Logger log = LoggerFactory.getLogger(PreforkDaemon.class);
    private static final long TEMPLATE_READY_TIMEOUT_MS = 120_000;
    private static final String LOCK_FILE = ".preforkd.lock";

    private volatile DaemonConfig config;
    private final int daemonUid;
    private final String daemonUser;
    private final UserDatabase users;
    private volatile UserPolicy policy;
    private final WorkerPool pool;
    private final PoolMetrics metrics;
    private final ControlServer server;
    private final CountDownLatch stopped = new CountDownLatch(1);
    private volatile int exitCode = EXIT_OK;
    private volatile FileLock runtimeLock;
    private final Object reloading = new Object();
    /** Counts applied reloads, so a request that waited can tell its checks went stale. */
    private final java.util.concurrent.atomic.AtomicLong reloads =
            new java.util.concurrent.atomic.AtomicLong();
    private boolean stopping;

    /** @throws ConfigException when a name in the config does not resolve (a group) */
    public PreforkDaemon(DaemonConfig config) throws ConfigException {
        this(config, PoolMetrics.NOOP);
    }

    /** @param metrics where the pool and the control server report what they do */
    public PreforkDaemon(DaemonConfig config, PoolMetrics metrics) throws ConfigException {
        this(config, metrics, POSIXFactory.getNativePOSIX());
    }

    PreforkDaemon(DaemonConfig config, PoolMetrics metrics, POSIX posix)
            throws ConfigException {
        this.config = config;
        this.daemonUid = posix.geteuid();
        this.users = new PosixUserDatabase(posix);
        this.daemonUser = posix.getpwuid(daemonUid).getLoginName();
        this.policy = new UserPolicy(users, config, daemonUid);
        checkServiceFiles(config);
        this.metrics = metrics;
        this.pool = new WorkerPool(config, metrics, this::onFatalTemplateExit);
        this.server = new ControlServer(config, this, socketGid(users, config),
                uid -> policy.mayNameOthers(new Caller(uid, -1, -1)));
    }

    /**
     * Checks what the configuration names on this system, as a start would: groups,
     * frontends, the service's files. For {@code --check}, and before binding a port.
     */
    public static void check(DaemonConfig config) throws ConfigException {
        POSIX posix = POSIXFactory.getNativePOSIX();
        UserDatabase users = new PosixUserDatabase(posix);
        new UserPolicy(users, config, posix.geteuid());
        checkServiceFiles(config);
        socketGid(users, config);
    }

    /** Without these the template cannot start; that is a configuration error. */
    private static void checkServiceFiles(DaemonConfig config) throws ConfigException {
        if (!Files.isRegularFile(config.python()) || !Files.isExecutable(config.python())) {
            throw new ConfigException("service.python = \"" + config.python()
                    + "\" is invalid: there is no executable file there");
        }
        Path template = config.workerStub().resolve("prefork_template.py");
        if (!Files.isRegularFile(template)) {
            throw new ConfigException("service.worker_stub = \"" + config.workerStub()
                    + "\" is invalid: it holds no prefork_template.py");
        }
    }

    /** The gid the control socket gets, or -1 to leave the daemon's own. */
    private static int socketGid(UserDatabase users, DaemonConfig config)
            throws ConfigException {
        if (config.socketGroup().isEmpty()) {
            return -1;
        }
        return users.groupId(config.socketGroup()).orElseThrow(() -> new ConfigException(
                "daemon.socket_group = \"" + config.socketGroup()
                        + "\" is invalid: no such group"));
    }

    /** Prepares the directories, warms the template, fills the pool, then listens. */
    public void start() throws IOException, InterruptedException {
        // The config holds no secrets: paths, numbers, names and group rules.
        log.debug("configuration: {}", config);
        if (daemonUid != 0) {
            log.warn("running unprivileged as uid {}: only that uid can be served", daemonUid);
        }
        claimRuntime();
        prepareDirectories();
        pool.start(TEMPLATE_READY_TIMEOUT_MS);
        server.start();
        JvmWarmUp.run(config, users, daemonUser);
        log.info("preforkd ready: {}", pool.stats());
    }

    /**
     * Makes sure no other daemon uses our socket or worker directory before we touch
     * either: a second start by mistake must not wreck the running daemon's sessions.
     * The lock lives as long as this process.
     */
    private void claimRuntime() throws IOException {
        ControlServer.refuseIfAnotherDaemonListens(config.socket());
        Files.createDirectories(config.workerDir());
        Path lockFile = config.workerDir().resolve(LOCK_FILE);
        // 0600: a user who could open it could hold a lock on it and keep us from ever
        // starting again (the directory is 0711, so anyone can reach the name).
        FileChannel channel = FileChannel.open(lockFile, Set.of(StandardOpenOption.CREATE,
                StandardOpenOption.WRITE), PosixFilePermissions.asFileAttribute(
                        PosixFilePermissions.fromString("rw-------")));
        Files.setPosixFilePermissions(lockFile, PosixFilePermissions.fromString("rw-------"));
        FileLock lock = channel.tryLock();
        if (lock == null) {
            channel.close();
            throw new IOException("another daemon is already using " + config.workerDir()
                    + " (it holds " + lockFile + ")");
        }
        runtimeLock = lock;
    }

    private void prepareDirectories() throws IOException {
        // Workers' directories hang below this one: users must pass through it, but
        // nobody needs to list who has a session now.
        Files.createDirectories(config.workerDir());
        Files.setPosixFilePermissions(config.workerDir(),
                PosixFilePermissions.fromString("rwx--x--x"));
        removeWorkerDirectories();
        Files.createDirectories(config.warmDir());
        Files.setPosixFilePermissions(config.warmDir(),
                PosixFilePermissions.fromString("rwx------"));
    }

    /** Removes what workers of this or an earlier, crashed daemon left behind. */
    private void removeWorkerDirectories() throws IOException {
        try (Stream<Path> entries = Files.list(config.workerDir())) {
            for (Path entry : entries.toList()) {
                if (Limits.WORKER_ID.matcher(entry.getFileName().toString()).matches()) {
                    Trees.remove(entry);
                }
            }
        }
    }

    /** Blocks until the daemon was asked to stop and has stopped; returns the exit code. */
    public int awaitStop() throws InterruptedException {
        stopped.await();
        return exitCode;
    }

    /** Stops in stages; safe to call more than once and from any thread. */
    public void stop() {
        synchronized (this) {
            if (stopping) {
                return;
            }
            stopping = true;
        }
        if (runtimeLock == null) {
            // We never owned the socket or the worker directory: leave them alone.
            stopped.countDown();
            return;
        }
        log.info("stopping: {}", pool.stats());
        try {
            // Draining: new spawns get 'shutting-down', status still answers, and the
            // sessions' callers keep their connections for the exit status.
            pool.shutdown();
            server.close();
            removeWorkerDirectories();
            // Removed while still held, so no other daemon can be holding it now.
            Files.deleteIfExists(config.workerDir().resolve(LOCK_FILE));
            runtimeLock.channel().close();
        } catch (IOException e) {
            log.error("stopping cleanly failed: {}", e.getMessage());
            exitCode = exitCode == EXIT_OK ? EXIT_FAILED : exitCode;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            stopped.countDown();
            log.info("stopped");
        }
    }

    /**
     * Reads the configuration again and applies it without touching a session: the
     * policy, the pool's bounds and timeouts, the environment allowlist, the writable
     * paths and the rlimits. A file that does not validate changes nothing.
     */
    public void reload(Path file, Path preforkHome) {
        // Its own lock: a reload reading a slow file must never hold up stop().
        synchronized (reloading) {
            reloadNow(file, preforkHome);
        }
    }

    private void reloadNow(Path file, Path preforkHome) {
        try {
            DaemonConfig read = DaemonConfig.load(file, preforkHome);
            List<String> kept = new ArrayList<>();
            DaemonConfig next = config.reloadWith(read, kept);
            UserPolicy nextPolicy = new UserPolicy(users, next, daemonUid);
            kept.forEach(key -> log.warn("reload: {} changed; it takes effect on restart", key));

            policy = nextPolicy;
            config = next;
            pool.reconfigure(next);
            server.reconfigure(next);
            reloads.incrementAndGet();
            log.info("configuration reloaded from {}", file);
        } catch (ConfigException | RuntimeException e) {
            log.error("reload refused, the running configuration stays: {}", e.getMessage());
        }
    }

    private void onFatalTemplateExit(int templateExitCode) {
        exitCode = templateExitCode == EXIT_SERVICE_IMPORT || templateExitCode == EXIT_WARM_UP
                ? templateExitCode : EXIT_FAILED;
        new Thread(this::stop, "stop-after-template-exit").start();
    }

    @Override
    public Reply.Status status() {
        return new Reply.Status(pool.stats().toStatusFields());
    }

    @Override
    public Worker handOut(Caller caller, Request.Spawn spawn, Map<String, String> env)
            throws Refusal, InterruptedException {
        long generation = reloads.get();
        // Checked now, so that a refusal never waits for a worker; checked again at
        // hand-out only if a reload came in between.
        Binding first = bindingFor(caller, spawn, env);
        log.info("spawn for {} (uid {}) asked by uid {} (pid:{})", first.user().name(),
                first.user().uid(), caller.uid(), caller.pid());
        return pool.handOut(first.user().name(), () -> reloads.get() == generation ? first
                : bindingFor(caller, spawn, env));
    }

    /** Everything a worker is told, from one snapshot of the policy and the config. */
    private Binding bindingFor(Caller caller, Request.Spawn spawn, Map<String, String> env)
            throws Refusal {
        UserPolicy current = policy;
        DaemonConfig config = this.config;
        UserAccount account = current.authorize(caller, spawn.user());
        Caller frontend = current.identify(caller);
        var args = ServiceCommand.normalize(config.service(), spawn.args());
        Map<String, String> allowed = new java.util.LinkedHashMap<>(env);
        allowed.keySet().retainAll(config.envAllowlist());
        return new Binding(account, frontend, args, Map.copyOf(allowed), config);
    }

    @Override
    public void shutdown(Caller caller) throws Refusal {
        if (!caller.isRoot() && caller.uid() != daemonUid) {
            throw new Refusal(ErrorCode.REFUSED, "shutdown refused: only root"
                    + (daemonUid == 0 ? "" : " or uid " + daemonUid) + " may stop the daemon");
        }
        log.info("shutdown asked by uid {} (pid:{})", caller.uid(), caller.pid());
        new Thread(this::stop, "stop-on-request").start();
    }

    @Override
    public void refused(ErrorCode code) {
        metrics.refused(code.wireName());
    }

    @Override
    public boolean envAllowed(String name) {
        return config.envAllowlist().contains(name);
    }

    public PoolStats stats() {
        return pool.stats();
    }

    public DaemonConfig config() {
        return config;
    }
}
