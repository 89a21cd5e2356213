package org.prefork.testing;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.awaitility.Awaitility;
import org.prefork.daemon.DaemonConfig;
import org.prefork.metrics.PoolMetrics;
import org.prefork.daemon.PoolStats;
import org.prefork.daemon.PreforkDaemon;
import org.prefork.protocol.ControlClient;
import org.prefork.protocol.Limits;
import org.prefork.protocol.Reply;

/**
 * A real preforkd with a real Python template, in a sandbox. Closing it stops the daemon
 * and checks that no process, FIFO or directory of it is left.
 */
public final class DaemonFixture implements AutoCloseable {

    private final Sandbox sandbox;
    private final PreforkDaemon daemon;

    private DaemonFixture(Sandbox sandbox, PreforkDaemon daemon) {
        this.sandbox = sandbox;
        this.daemon = daemon;
    }

    /** Starts a daemon; {@code extraToml} adds keys to the tables of a sandboxed config. */
    public static DaemonFixture start(String name, Map<String, String> extraToml)
            throws Exception {
        return start(name, extraToml, PoolMetrics.NOOP);
    }

    /** Starts a daemon that reports to {@code metrics}. */
    public static DaemonFixture start(String name, Map<String, String> extraToml,
            PoolMetrics metrics) throws Exception {
        Sandbox sandbox = new Sandbox(name);
        String toml = config(sandbox, extraToml);
        PreforkDaemon daemon = new PreforkDaemon(DaemonConfig.parse(toml, home()), metrics);
        try {
            daemon.start();
        } catch (Exception e) {
            daemon.stop();
            sandbox.close();
            throw e;
        }
        return new DaemonFixture(sandbox, daemon);
    }

    /**
     * A config rooted in {@code sandbox} (control.sock, workers/, state/), with
     * {@code extra} lines added to their tables; for daemons run as processes too.
     */
    public static String config(Sandbox sandbox, Map<String, String> extra) {
        StringBuilder toml = new StringBuilder();
        for (String table : List.of("daemon", "pool", "service", "policy", "limits")) {
            toml.append('[').append(table).append("]\n");
            switch (table) {
                case "daemon" -> toml.append("socket = \"").append(sandbox.resolve("control.sock"))
                        .append("\"\nworker_dir = \"").append(sandbox.resolve("workers"))
                        .append("\"\nstate_dir = \"").append(sandbox.resolve("state"))
                        .append("\"\n");
                case "pool" -> toml.append(extra.getOrDefault("pool", "")
                        .contains("fifo_open_timeout_ms") ? "" : "fifo_open_timeout_ms = 5000\n");
                default -> { }
            }
            toml.append(extra.getOrDefault(table, "")).append('\n');
        }
        return toml.toString();
    }

    public static Path home() {
        return Path.of(System.getProperty("prefork.home", "..")).toAbsolutePath().normalize();
    }

    public Path socket() {
        return sandbox.resolve("control.sock");
    }

    public Path workerDir() {
        return sandbox.resolve("workers");
    }

    /** The workers' directories (w1, w2, ...), without the daemon's own lock file. */
    public List<Path> workerDirectories() throws IOException {
        try (Stream<Path> entries = Files.list(workerDir())) {
            return entries.filter(entry -> Limits.WORKER_ID.matcher(
                    entry.getFileName().toString()).matches()).sorted().toList();
        }
    }

    /** Rewrites the daemon's config file with {@code extraToml} and reloads it. */
    public void reload(Map<String, String> extraToml) throws IOException {
        Path file = sandbox.resolve("prefork.toml");
        Files.writeString(file, config(sandbox, extraToml));
        daemon.reload(file, home());
    }

    public Sandbox sandbox() {
        return sandbox;
    }

    public PoolStats stats() {
        return daemon.stats();
    }

    public ControlClient client() throws IOException {
        return ControlClient.connect(socket());
    }

    public Reply.Status status() throws Exception {
        try (ControlClient client = client()) {
            return (Reply.Status) client.status();
        }
    }

    /** A copy of the C client that every user may run (the checkout may be private). */
    public Path stagedClient() throws IOException {
        Path lib = Files.createDirectories(sandbox.resolve("lib"));
        Path client = lib.resolve("prefork-connect");
        if (!Files.exists(client)) {
            Files.copy(home().resolve("protocol/target/prefork-connect"), client,
                    StandardCopyOption.REPLACE_EXISTING);
            Files.setPosixFilePermissions(client, PosixFilePermissions.fromString("rwxr-xr-x"));
        }
        return client;
    }

    public void awaitParked(int parked) {
        Awaitility.await().atMost(Duration.ofSeconds(30))
                .until(() -> daemon.stats().parked() == parked);
    }

    /** Stops a shared daemon, then removes its users, whichever of them was made. */
    public static void closeBoth(DaemonFixture daemon, TestUsers users) throws Exception {
        try {
            if (daemon != null) {
                daemon.close();
            }
        } finally {
            if (users != null) {
                users.close();
            }
        }
    }

    @Override
    public void close() throws Exception {
        try {
            daemon.stop();
            // stop() returns at once when a stop is already under way (a shutdown
            // request); wait for it to finish before looking for leftovers.
            daemon.awaitStop();
            assertNothingLeftBehind();
        } finally {
            sandbox.close();
        }
    }

    private void assertNothingLeftBehind() throws IOException {
        String marker = sandbox.resolve("workers").toString();
        Awaitility.await().atMost(Duration.ofSeconds(10))
                .until(() -> Processes.matching(marker).isEmpty());
        assertThat(Processes.matching(marker)).as("template and worker processes").isEmpty();
        assertThat(Files.exists(socket())).as("control socket removed").isFalse();
        try (Stream<Path> left = Files.list(workerDir())) {
            assertThat(left.toList()).as("worker directories and FIFOs").isEmpty();
        }
    }
}
