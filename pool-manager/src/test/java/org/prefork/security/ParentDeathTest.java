package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

import org.awaitility.Awaitility;
import org.awaitility.core.ConditionTimeoutException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.prefork.cli.Main;
import org.prefork.protocol.ControlClient;
import org.prefork.protocol.Reply;
import org.prefork.testing.Commands;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.Sandbox;
import org.prefork.testing.TestUsers;

/**
 * Invariant attacked: if preforkd dies (SIGKILL, no chance to clean up), the template
 * and the parked workers die with it (parent-death signal), while a bound session in
 * progress goes on and ends normally.
 *
 * <p>The daemon runs as a JVM of its own under a small reaper that is a child subreaper:
 * orphans of the killed daemon are reparented to it, so the test learns how each of them
 * ended (and none is left as a zombie).
 */
class ParentDeathTest {

    /* Prints "daemon PID", then "reaped PID code:N|signal:N" for every orphan it reaps. */
    private static final String REAPER = """
            import ctypes, os, sys
            PR_SET_CHILD_SUBREAPER = 36
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            pid = os.fork()
            if pid == 0:
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.execv(sys.argv[2], sys.argv[2:])
            print('daemon', pid, flush=True)
            while True:
                try:
                    child, status = os.waitpid(-1, 0)
                except ChildProcessError:
                    break
                if os.WIFSIGNALED(status):
                    how = 'signal:%d' % os.WTERMSIG(status)
                else:
                    how = 'code:%d' % os.WEXITSTATUS(status)
                print('reaped', child, how, flush=True)
            """;

    private TestUsers users;
    private TestUsers.User alice;
    private Sandbox sandbox;
    private Process reaper;
    private long daemonPid;
    private final Map<Long, String> reaped = new ConcurrentHashMap<>();

    @BeforeEach
    void startDaemonProcess() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        sandbox = new Sandbox("parentdeath");
        reaper = new ProcessBuilder(reaperCommand()).redirectErrorStream(true).start();
        BufferedReader out = new BufferedReader(new InputStreamReader(reaper.getInputStream(),
                StandardCharsets.UTF_8));
        String first = out.readLine();
        assertThat(first).as("reaper's first line").startsWith("daemon ");
        daemonPid = Long.parseLong(first.substring("daemon ".length()));
        Thread collector = new Thread(() -> collectReaped(out), "reaped-collector");
        collector.setDaemon(true);
        collector.start();
        Awaitility.await().atMost(Duration.ofSeconds(60)).until(() -> parked() == 2);
    }

    @AfterEach
    void stopEverything() throws Exception {
        try {
            if (reaper != null) {
                // Only our own daemon, if a failed test left it running.
                ProcessHandle.of(daemonPid).filter(daemon -> daemon.parent()
                        .map(ProcessHandle::pid).orElse(-1L) == reaper.pid())
                        .ifPresent(ProcessHandle::destroyForcibly);
                if (!reaper.waitFor(30, TimeUnit.SECONDS)) {
                    reaper.destroyForcibly();
                }
            }
        } finally {
            if (sandbox != null) {
                sandbox.close();
            }
            if (users != null) {
                users.close();
            }
        }
    }

    @Test
    void killedDaemonTakesTemplateAndParkedWorkersButNotTheBoundSession() throws Exception {
        try (ControlClient frontend = ControlClient.connect(socket())) {
            Reply.Ok ok = (Reply.Ok) frontend.spawn(alice.name(), List.of("echo"), Map.of());
            long template;
            List<Long> parked;
            try (ControlClient.Session session = ControlClient.Session.open(ok)) {
                assertThat(roundTrip(session, "before\n")).isEqualTo("before\n");
                template = Proc.template(daemonPid).pid();
                parked = awaitParkedWorkers(template);

                Commands.check("kill", "-KILL", Long.toString(daemonPid));

                awaitGone(template, parked);
                assertThat(Proc.running(ok.pid())).as("bound worker after the kill").isTrue();
                assertThat(roundTrip(session, "after\n")).isEqualTo("after\n");
                session.stdin().close();
                assertThat(session.stdout().readAllBytes()).isEmpty();
            }
            awaitReaped(ok.pid(), "code:0");
            assertDiedWithTheDaemon(template, parked);
        }
    }

    @Test
    void cClientKeepsRelayingTheSessionWhenTheDaemonDies() throws Exception {
        Path stderr = sandbox.resolve("client.err");
        Process client = new ProcessBuilder(AsUser.command(alice, List.of(
                stagedClient().toString(), "--socket", socket().toString(), "--", "echo")))
                .redirectError(stderr.toFile()).start();
        try {
            OutputStream toClient = client.getOutputStream();
            InputStream fromClient = client.getInputStream();
            assertThat(relay(toClient, fromClient, "before\n")).isEqualTo("before\n");
            long template = Proc.template(daemonPid).pid();
            long worker = boundWorker(template);

            Commands.check("kill", "-KILL", Long.toString(daemonPid));
            awaitGone(template, List.of());

            String echoed = relay(toClient, fromClient, "after\n");

            assertThat(echoed).as("session through the C client after the daemon's death"
                    + " (client %s; its stderr: %s)", client.isAlive() ? "running"
                    : "exited " + client.exitValue(), Files.readString(stderr))
                    .isEqualTo("after\n");
            toClient.close();
            assertThat(client.waitFor(10, TimeUnit.SECONDS)).isTrue();
            assertThat(client.exitValue()).isEqualTo(70);
            assertThat(Files.readString(stderr)).isEqualTo("prefork: preforkd closed the"
                    + " control connection before the worker's exit status\n");
            awaitReaped(worker, "code:0");
            assertDiedWithTheDaemon(template, List.of());
        } finally {
            client.destroyForcibly();
            client.waitFor();
        }
    }

    /** Writes a line to the session and reads as many bytes back, or what came instead. */
    private static String roundTrip(ControlClient.Session session, String line)
            throws Exception {
        return relay(session.stdin(), session.stdout(), line);
    }

    private static String relay(OutputStream to, InputStream from, String line)
            throws Exception {
        byte[] bytes = line.getBytes(StandardCharsets.UTF_8);
        try {
            to.write(bytes);
            to.flush();
        } catch (IOException e) {
            return "(write failed: " + e.getMessage() + ")";
        }
        CompletableFuture<byte[]> back = CompletableFuture.supplyAsync(() -> {
            try {
                return from.readNBytes(bytes.length);
            } catch (IOException e) {
                return ("(read failed: " + e.getMessage() + ")").getBytes(StandardCharsets.UTF_8);
            }
        });
        return new String(back.get(10, TimeUnit.SECONDS), StandardCharsets.UTF_8);
    }

    private void awaitReaped(long pid, String... how) {
        try {
            Awaitility.await().atMost(Duration.ofSeconds(10))
                    .until(() -> reaped.containsKey(pid));
        } catch (ConditionTimeoutException e) {
            throw new AssertionError("pid " + pid + " was not reaped within 10 s (still "
                    + (Proc.running(pid) ? "running" : "not running") + "); reaped: "
                    + reaped, e);
        }
        assertThat(reaped.get(pid)).as("how pid %d ended", pid).isIn((Object[]) how);
    }

    private static List<Long> awaitParkedWorkers(long template) {
        ProcessHandle handle = ProcessHandle.of(template).orElseThrow();
        Awaitility.await().until(() -> Proc.parkedWorkers(handle).size() == 2);
        return Proc.parkedWorkers(handle);
    }

    /** The template's one child that no longer runs as root. */
    private static long boundWorker(long template) throws IOException {
        for (ProcessHandle child : ProcessHandle.of(template).orElseThrow().children()
                .toList()) {
            if (!Proc.status(child.pid(), "Uid").get(0).equals("0")) {
                return child.pid();
            }
        }
        throw new AssertionError("no bound worker under the template " + template);
    }

    private static void awaitGone(long template, List<Long> parked) {
        List<Long> all = new ArrayList<>(parked);
        all.add(template);
        for (long pid : all) {
            Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> !Proc.running(pid));
        }
    }

    /**
     * How the template and the parked workers ended, where the reaper saw it. The
     * template dies by its parent-death signal (SIGKILL), or stops cleanly on the end of
     * its command pipe if it sees that first; a parked worker dies by SIGKILL, or exits 1
     * when its socket to the template ends. The dying daemon or template may reap some
     * itself, and then the reaper never sees them. Call it after a later exit was reaped,
     * so that the earlier ones are recorded.
     */
    private void assertDiedWithTheDaemon(long template, List<Long> parked) {
        if (reaped.containsKey(template)) {
            assertThat(reaped.get(template)).as("how the template ended")
                    .isIn("signal:9", "code:0");
        }
        for (long pid : parked) {
            if (reaped.containsKey(pid)) {
                assertThat(reaped.get(pid)).as("how parked worker %d ended", pid)
                        .isIn("signal:9", "code:1");
            }
        }
    }

    private void collectReaped(BufferedReader out) {
        try {
            for (String line = out.readLine(); line != null; line = out.readLine()) {
                String[] fields = line.split(" ");
                if (fields.length == 3 && fields[0].equals("reaped")) {
                    reaped.put(Long.parseLong(fields[1]), fields[2]);
                }
            }
        } catch (IOException e) {
            // The reaper ended.
        }
    }

    private List<String> reaperCommand() throws IOException {
        Path config = Files.writeString(sandbox.resolve("prefork.toml"), DaemonFixture.config(
                sandbox, Map.of("service", "name = \"test\"", "pool", "min_idle = 2")));
        return new ArrayList<>(List.of("/usr/bin/python3", "-I", "-c", REAPER,
                sandbox.resolve("daemon.log").toString(),
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Dprefork.home=" + DaemonFixture.home(),
                "-cp", System.getProperty("java.class.path"),
                Main.class.getName(), "daemon", "--config", config.toString()));
    }

    private Path socket() {
        return sandbox.resolve("control.sock");
    }

    private Path stagedClient() throws IOException {
        Path client = Files.createDirectories(sandbox.resolve("lib")).resolve("prefork-connect");
        Files.copy(DaemonFixture.home().resolve("protocol/target/prefork-connect"), client,
                StandardCopyOption.REPLACE_EXISTING);
        Files.setPosixFilePermissions(client, PosixFilePermissions.fromString("rwxr-xr-x"));
        return client;
    }

    private int parked() {
        try (ControlClient client = ControlClient.connect(socket())) {
            Reply.Status status = (Reply.Status) client.status();
            return Integer.parseInt(status.values().get("parked"));
        } catch (Exception e) {
            return -1;
        }
    }
}
