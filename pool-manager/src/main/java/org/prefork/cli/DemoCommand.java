package org.prefork.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.prefork.daemon.DaemonConfig;
import org.prefork.daemon.PreforkDaemon;
import org.prefork.daemon.Trees;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The main job on an embedded default: a real Breezy branch, real smart-server
 * connections started cold and through the pool, measured the same way.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Compare cold Breezy smart-server connections with"
        + " pooled ones, measured from starting the per-connection command to the"
        + " complete hello reply.")
final class DemoCommand implements Callable<Integer> {

    @Option(names = "--runs", defaultValue = "20",
            description = "Connections on each side (default: ${DEFAULT-VALUE}).")
    private int runs;

    /** Untimed connections per side first: page cache for cold, code paths for pooled. */
    private static final int WARM_UP_RUNS = 5;

    private final Progress progress = new Progress();

    @Override
    public Integer call() throws Exception {
        if (runs < 1 || runs > 10_000) {
            System.err.println("prefork: --runs must be from 1 to 10000, got " + runs);
            return 64;
        }
        // The daemon's routine INFO lines would drown the demo's own output.
        System.setProperty("prefork.log.level", System.getProperty("prefork.log.level", "WARN"));

        Path work = Files.createTempDirectory("prefork-demo-");
        Files.setPosixFilePermissions(work, PosixFilePermissions.fromString("rwxr-xr-x"));
        Cleanup cleanup = new Cleanup(work);
        // Ctrl-C runs shutdown hooks, not this method's finally: clean up from both.
        Thread hook = new Thread(cleanup::run, "demo-cleanup");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            cleanup.user = DemoUser.prepare(work);
            DemoUser user = cleanup.user;
            progress.step("sessions run as %s (uid %d)", user.name(), user.uid());
            Path branch = makeBranch(work, user);
            Path launcher = stageLauncher(work);

            cleanup.daemon = new PreforkDaemon(
                    DaemonConfig.parse(demoConfig(work, user), Main.home()));
            progress.step("starting preforkd and warming the Breezy template");
            cleanup.daemon.start();
            progress.step("pool ready: %s", cleanup.daemon.stats());

            progress.step("running %d cold and %d pooled connections, interleaved", runs, runs);
            JsonNode result = probe(work, user, branch, launcher);
            System.out.println(summary(result));
            return 0;
        } finally {
            cleanup.run();
            removeHook(hook);
        }
    }

    private static void removeHook(Thread hook) {
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException e) {
            // Already shutting down (interrupted): the hook is running or has run.
        }
    }

    /** Undoes what the demo made, once, whether it ended or was interrupted. */
    private static final class Cleanup {
        private final Path work;
        private volatile DemoUser user;
        private volatile PreforkDaemon daemon;
        private boolean done;

        Cleanup(Path work) {
            this.work = work;
        }

        synchronized void run() {
            if (done) {
                return;
            }
            done = true;
            if (daemon != null) {
                daemon.stop();
            }
            try {
                // The demo user's sessions wrote below here: remove without following links.
                Trees.remove(work);
                if (user != null) {
                    user.removeIfCreated();
                }
            } catch (IOException | InterruptedException e) {
                System.err.println("prefork: demo cleanup incomplete: " + e.getMessage());
            }
        }
    }

    private Path makeBranch(Path work, DemoUser user) throws IOException, InterruptedException {
        progress.step("creating a Breezy branch with 3 revisions");
        Path branch = work.resolve("repo/trunk");
        Path brzHome = work.resolve("brz-home");
        Files.createDirectories(brzHome);
        Map<String, String> env = Map.of("PATH", "/usr/bin:/bin", "HOME", brzHome.toString(),
                "BRZ_EMAIL", "prefork demo <demo@prefork.invalid>", "LANG", "C.UTF-8");

        Exec.run(List.of("/usr/bin/brz", "init", "--quiet", "--create-prefix",
                branch.toString()), null, env);
        for (int revision = 1; revision <= 3; revision++) {
            Files.writeString(branch.resolve("file" + revision + ".txt"),
                    "revision " + revision + "\n");
            Exec.run(List.of("/usr/bin/brz", "add", "--quiet"), branch, env);
            Exec.run(List.of("/usr/bin/brz", "commit", "--quiet", "-m",
                    "revision " + revision), branch, env);
        }
        user.own(work.resolve("repo"));
        return branch;
    }

    /**
     * The checkout may sit in a directory the session user cannot enter (root's home),
     * so the launcher and the C client are copied to where that user can run them.
     */
    private static Path stageLauncher(Path work) throws IOException {
        Path bin = Files.createDirectories(work.resolve("bin"));
        Path lib = Files.createDirectories(work.resolve("lib"));
        Path launcher = bin.resolve("prefork");
        Files.copy(Main.home().resolve("bin/prefork"), launcher,
                StandardCopyOption.REPLACE_EXISTING);
        Files.copy(Main.home().resolve("protocol/target/prefork-connect"),
                lib.resolve("prefork-connect"), StandardCopyOption.REPLACE_EXISTING);
        return launcher;
    }

    private static String demoConfig(Path work, DemoUser user) {
        return String.join("\n",
                "[daemon]",
                "socket = \"" + work.resolve("control.sock") + "\"",
                "worker_dir = \"" + work.resolve("workers") + "\"",
                "state_dir = \"" + work.resolve("state") + "\"",
                "[pool]",
                "min_idle = 4",
                "[policy]",
                "min_uid = " + Math.min(1000, Math.max(1, user.uid())),
                "");
    }

    private JsonNode probe(Path work, DemoUser user, Path branch, Path launcher)
            throws IOException, InterruptedException {
        String serve = "--directory=" + branch.getParent();
        List<String> command = new ArrayList<>(List.of("/usr/bin/python3", "-E", "-s",
                Main.home().resolve("worker-stub/src/main/python/prefork_worker/probe.py")
                        .toString(),
                "--runs", Integer.toString(runs), "--warm-up", Integer.toString(WARM_UP_RUNS)));
        if (!user.isSelf()) {
            command.addAll(List.of("--as-user", user.name()));
        }
        command.addAll(List.of("--cold", "/usr/bin/brz", "serve", "--inet", serve));
        command.addAll(List.of("--pooled", launcher.toString(), "connect", "--socket",
                work.resolve("control.sock").toString(), "--", "serve", "--inet", serve));

        Map<String, String> env = Map.of("PATH", "/usr/bin:/bin", "LANG", "C.UTF-8",
                "HOME", user.home().toString());
        return new ObjectMapper().readTree(Exec.run(command, work, env));
    }

    static String summary(JsonNode result) {
        double cold = result.path("cold").path("median").asDouble();
        double pooled = result.path("pooled").path("median").asDouble();
        double ratio = cold / pooled;
        String times = ratio >= 10 ? String.format("%.0fx", ratio) : String.format("%.1fx", ratio);
        return String.format("connection time: cold %.1f ms, pooled %.1f ms, %s faster",
                cold, pooled, times);
    }
}
