package org.prefork.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.prefork.metrics.MicrometerPoolMetrics;
import org.prefork.protocol.ControlClient;
import org.prefork.protocol.ErrorCode;
import org.prefork.protocol.ExitStatus;
import org.prefork.protocol.Reply;
import org.prefork.testing.Commands;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.TestUsers;

/**
 * The pool end to end with the built-in test service: a real daemon, a real Python
 * template, real forks, real users, and the real C client.
 */
class PoolIntegrationTest {

    private static final Map<String, String> TEST_POOL = Map.of(
            "service", "name = \"test\"",
            "pool", "min_idle = 2\nmax_total = 4\nwait_timeout_ms = 300");

    private TestUsers users;
    private TestUsers.User alice;

    @BeforeEach
    void createUser() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
    }

    @AfterEach
    void removeUsers() throws Exception {
        if (users != null) {
            users.close();
        }
    }

    private static Reply.Ok spawn(ControlClient client, String user, String... args)
            throws Exception {
        Reply reply = client.spawn(user, List.of(args), Map.of());
        assertThat(reply).isInstanceOf(Reply.Ok.class);
        return (Reply.Ok) reply;
    }

    /** Runs one session to its end over the FIFOs and returns its exit line. */
    private static Reply.Exit runSession(ControlClient client, Reply.Ok ok, String input)
            throws Exception {
        try (ControlClient.Session session = ControlClient.Session.open(ok)) {
            session.stdin().write(input.getBytes(StandardCharsets.UTF_8));
            session.stdin().close();
            session.stdout().readAllBytes();
        }
        return (Reply.Exit) client.readReply();
    }

    @Test
    void replenishesToMinIdleAfterEachHandOutWithoutWaitingForTheSession() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("refill", TEST_POOL)) {
            daemon.awaitParked(2);

            for (int handOut = 1; handOut <= 3; handOut++) {
                try (ControlClient client = daemon.client()) {
                    Reply.Ok ok = spawn(client, alice.name(), "echo");
                    try (ControlClient.Session session = ControlClient.Session.open(ok)) {
                        // The session is still running: the pool refills anyway.
                        daemon.awaitParked(2);
                        assertThat(daemon.stats().bound()).isEqualTo(1);
                        session.stdin().write("ping\n".getBytes(StandardCharsets.UTF_8));
                        session.stdin().close();
                        assertThat(new String(session.stdout().readAllBytes(),
                                StandardCharsets.UTF_8)).isEqualTo("ping\n");
                    }
                    assertThat(client.readReply())
                            .isEqualTo(new Reply.Exit(ok.workerId(), ExitStatus.code(0)));
                }
                assertThat(daemon.stats().handedOut()).isEqualTo(handOut);
            }
        }
    }

    @ParameterizedTest
    @CsvSource({"exit 0, code:0", "exit 3, code:3", "kill 9, signal:9", "kill 15, signal:15"})
    void exitStatusReachesTheCaller(String command, String expected) throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("exit", TEST_POOL);
             ControlClient client = daemon.client()) {
            Reply.Ok ok = spawn(client, alice.name(), command.split(" "));

            Reply.Exit exit = runSession(client, ok, "");

            assertThat(exit.status()).isEqualTo(ExitStatus.parse(expected));
        }
    }

    @Test
    void cClientRelaysTheSessionAndExitsWithTheWorkersStatus() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("client", TEST_POOL)) {
            Path client = daemon.stagedClient();
            List<String> base = List.of(client.toString(), "--socket",
                    daemon.socket().toString(), "--user", alice.name(), "--");

            Commands.Result echo = Commands.run(concat(base, "echo"), null, null,
                    "over the FIFOs\n".getBytes(StandardCharsets.UTF_8));
            Commands.Result three = Commands.run(concat(base, "exit", "3"), null, null,
                    new byte[0]);
            Commands.Result killed = Commands.run(concat(base, "kill", "9"), null, null,
                    new byte[0]);
            Commands.Result stderr = Commands.run(concat(base, "stderr", "to-the-caller"),
                    null, null, new byte[0]);

            assertThat(echo.status()).isZero();
            assertThat(echo.stdout()).isEqualTo("over the FIFOs\n");
            assertThat(three.status()).isEqualTo(3);
            assertThat(killed.status()).isEqualTo(137);
            assertThat(stderr.stderr()).contains("to-the-caller");
        }
    }

    @Test
    void exhaustedPoolSaysSoAndRecoversWhenAWorkerIsFree() throws Exception {
        Map<String, String> oneWorker = Map.of("service", "name = \"test\"",
                "pool", "min_idle = 1\nmax_total = 1\nwait_timeout_ms = 300");
        try (DaemonFixture daemon = DaemonFixture.start("exhausted", oneWorker)) {
            daemon.awaitParked(1);
            try (ControlClient first = daemon.client()) {
                Reply.Ok ok = spawn(first, alice.name(), "echo");
                try (ControlClient second = daemon.client()) {
                    assertThat(second.spawn(alice.name(), List.of("echo"), Map.of()))
                            .isEqualTo(new Reply.Error(ErrorCode.POOL_EXHAUSTED,
                                    "pool exhausted: no worker became free within 300 ms"));
                }
                runSession(first, ok, "");
            }
            try (ControlClient third = daemon.client()) {
                assertThat(runSession(third, spawn(third, alice.name(), "exit", "0"), "")
                        .status()).isEqualTo(ExitStatus.code(0));
            }
            assertThat(daemon.stats().exhausted()).isEqualTo(1);
        }
    }

    @Test
    void abandonedWorkerExitsAfterTheFifoTimeoutAndItsDirectoryGoes() throws Exception {
        Map<String, String> shortTimeout = Map.of("service", "name = \"test\"",
                "pool", "min_idle = 1\nfifo_open_timeout_ms = 500");
        try (DaemonFixture daemon = DaemonFixture.start("abandoned", shortTimeout);
             ControlClient client = daemon.client()) {
            Reply.Ok ok = spawn(client, alice.name(), "echo");

            assertThat(client.readReply())
                    .isEqualTo(new Reply.Exit(ok.workerId(), ExitStatus.code(75)));
            assertThat(Path.of(ok.stdinFifo()).getParent()).doesNotExist();
        }
    }

    @Test
    void anotherUserCannotOpenTheFifosOrListTheDirectory() throws Exception {
        TestUsers.User mallory = users.create("mallory");
        try (DaemonFixture daemon = DaemonFixture.start("fifos", TEST_POOL);
             ControlClient client = daemon.client()) {
            Reply.Ok ok = spawn(client, alice.name(), "echo");
            Path dir = Path.of(ok.stdinFifo()).getParent();

            for (String fifo : List.of(ok.stdinFifo(), ok.stdoutFifo(), ok.stderrFifo())) {
                Commands.Result open = asUser(mallory, "dd", "if=" + fifo, "count=0");
                assertThat(open.status()).as("mallory opens " + fifo).isNotZero();
                assertThat(open.stderr()).contains("Permission denied");
            }
            Commands.Result list = asUser(mallory, "ls", dir.toString());
            assertThat(list.status()).isNotZero();
            assertThat(list.stderr()).contains("Permission denied");

            assertThat(Files.getOwner(dir).getName()).isEqualTo(alice.name());
            assertThat(runSession(client, ok, "").status()).isEqualTo(ExitStatus.code(0));
        }
    }

    @Test
    void aCallerThatIsNotTrustedGetsOnlyItself() throws Exception {
        TestUsers.User bob = users.create("bob");
        try (DaemonFixture daemon = DaemonFixture.start("policy", TEST_POOL)) {
            String client = daemon.stagedClient().toString();
            String socket = daemon.socket().toString();

            Commands.Result asBob = asUser(alice, client, "--socket", socket, "--user",
                    bob.name(), "--", "exit", "0");
            Commands.Result asSelf = asUser(alice, client, "--socket", socket, "--", "whoami");

            assertThat(asBob.status()).isEqualTo(77);
            assertThat(asBob.stderr()).contains("spawn refused for user '" + bob.name()
                    + "': caller uid " + alice.uid()
                    + " may only ask for a worker bound to itself");
            assertThat(asSelf.status()).isZero();
            assertThat(asSelf.stdout()).contains("\"resuid\": [" + alice.uid() + ", "
                    + alice.uid() + ", " + alice.uid() + "]");
        }
    }

    @Test
    void theSocketGetsItsModeAndGroupAndOutsidersCannotConnect() throws Exception {
        TestUsers.User mallory = users.create("mallory");
        Map<String, String> groupSocket = Map.of("service", "name = \"test\"",
                "daemon", "socket_mode = \"0660\"\nsocket_group = \"" + alice.name() + "\"");
        try (DaemonFixture daemon = DaemonFixture.start("socket", groupSocket)) {
            String client = daemon.stagedClient().toString();
            String socket = daemon.socket().toString();

            Commands.Result member = asUser(alice, client, "--socket", socket, "--", "exit", "0");
            Commands.Result outsider = asUser(mallory, client, "--socket", socket, "--",
                    "exit", "0");

            assertThat(Files.getAttribute(daemon.socket(), "unix:mode")).isEqualTo(0140660);
            assertThat(Files.getAttribute(daemon.socket(), "unix:gid")).isEqualTo(alice.gid());
            assertThat(member.status()).isZero();
            assertThat(outsider.status()).isEqualTo(69);
            assertThat(outsider.stderr()).contains("Permission denied");
        }
    }

    @Test
    void rootAndUnknownUsersAreRefusedWithTheReason() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("refusals", TEST_POOL);
             ControlClient client = daemon.client()) {
            assertThat(client.spawn("root", List.of("echo"), Map.of()))
                    .isEqualTo(new Reply.Error(ErrorCode.REFUSED,
                            "spawn refused for user 'root': root is never served"));
            assertThat(client.spawn("nosuchuser", List.of("echo"), Map.of()))
                    .isEqualTo(new Reply.Error(ErrorCode.UNKNOWN_USER,
                            "spawn refused: no user named 'nosuchuser'"));
            assertThat(client.spawn("daemon", List.of("echo"), Map.of()))
                    .isEqualTo(new Reply.Error(ErrorCode.REFUSED,
                            "spawn refused for user 'daemon': uid 1 is below min_uid 1000"));
        }
    }

    @Test
    void malformedInputGetsAnErrorAndTheDaemonKeepsServing() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("malformed", TEST_POOL);
             ControlClient client = daemon.client()) {
            byte[] huge = new byte[10 * 1024 * 1024 + 1];
            java.util.Arrays.fill(huge, (byte) 'a');
            huge[huge.length - 1] = '\n';

            client.sendRaw(huge);
            assertThat(errorCode(client.readReply())).isEqualTo(ErrorCode.LINE_TOO_LONG);
            client.sendRaw("spawn ali\0ce\n".getBytes(StandardCharsets.ISO_8859_1));
            assertThat(errorCode(client.readReply())).isEqualTo(ErrorCode.BAD_REQUEST);
            client.sendRaw(new byte[] {'s', 'p', 'a', 'w', 'n', ' ', (byte) 0xff, '\n'});
            assertThat(errorCode(client.readReply())).isEqualTo(ErrorCode.BAD_REQUEST);
            client.sendRaw("spawn 1001\n".getBytes(StandardCharsets.UTF_8));
            assertThat(errorCode(client.readReply())).isEqualTo(ErrorCode.BAD_REQUEST);

            assertThat(client.status()).isInstanceOf(Reply.Status.class);
            try (ControlClient other = daemon.client()) {
                assertThat(runSession(other, spawn(other, alice.name(), "exit", "0"), "")
                        .status()).isEqualTo(ExitStatus.code(0));
            }
        }
    }

    @Test
    void shutdownRequestStopsTheDaemonAndLeavesNothingBehind() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("shutdown", TEST_POOL)) {
            daemon.awaitParked(2);
            try (ControlClient client = daemon.client()) {
                runSession(client, spawn(client, alice.name(), "echo"), "bye");
            }
            try (ControlClient client = daemon.client()) {
                assertThat(client.shutdown()).isEqualTo(new Reply.ShutdownOk());
            }
            // Closing the fixture waits for the stop and asserts: no template or worker
            // process, no socket, no worker directory or FIFO.
        }
    }

    @Test
    void aSessionRunningWhileTheDaemonDrainsEndsNormallyAndLateCallersAreTold() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("drain", TEST_POOL);
             ControlClient client = daemon.client()) {
            Reply.Ok ok = spawn(client, alice.name(), "echo");
            try (ControlClient.Session session = ControlClient.Session.open(ok)) {
                try (ControlClient other = daemon.client()) {
                    assertThat(other.shutdown()).isEqualTo(new Reply.ShutdownOk());
                }
                Awaitility.await().atMost(Duration.ofSeconds(10))
                        .until(() -> daemon.stats().parked() == 0);
                try (ControlClient late = daemon.client()) {
                    assertThat(late.spawn(alice.name(), List.of("echo"), Map.of()))
                            .isEqualTo(new Reply.Error(ErrorCode.SHUTTING_DOWN,
                                    "the daemon is shutting down"));
                }

                // Draining: the session goes on and ends by itself.
                session.stdin().write("still here\n".getBytes(StandardCharsets.UTF_8));
                session.stdin().close();
                assertThat(new String(session.stdout().readAllBytes(),
                        StandardCharsets.UTF_8)).isEqualTo("still here\n");
            }
            assertThat(client.readReply())
                    .isEqualTo(new Reply.Exit(ok.workerId(), ExitStatus.code(0)));
        }
    }

    @Test
    void aRequestQueuedBeforeAReloadIsCheckedAgainstTheNewPolicy() throws Exception {
        TestUsers.User bob = users.create("bob");
        Map<String, String> oneWorker = Map.of("service", "name = \"test\"",
                "pool", "min_idle = 1\nmax_total = 1\nwait_timeout_ms = 20000");
        try (DaemonFixture daemon = DaemonFixture.start("requeue", oneWorker);
             ControlClient alices = daemon.client();
             ControlClient bobs = daemon.client()) {
            Reply.Ok ok = spawn(alices, alice.name(), "echo");
            var bobsReply = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
                try {
                    return bobs.spawn(bob.name(), List.of("whoami"), Map.of());
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            });
            Awaitility.await().atMost(Duration.ofSeconds(10))
                    .until(() -> daemon.stats().waiting() == 1);

            // Bob was created after alice, so his uid is the higher one.
            Map<String, String> tighter = new java.util.HashMap<>(oneWorker);
            tighter.put("policy", "max_uid = " + alice.uid());
            daemon.reload(tighter);
            runSession(alices, ok, "");

            assertThat(bobsReply.get(20, java.util.concurrent.TimeUnit.SECONDS))
                    .isEqualTo(new Reply.Error(ErrorCode.REFUSED, "spawn refused for user '"
                            + bob.name() + "': uid " + bob.uid() + " is above max_uid "
                            + alice.uid()));
            // The worker he did not get went back to the pool, untouched.
            daemon.awaitParked(1);
            assertThat(daemon.stats().handedOut()).isEqualTo(1);
        }
    }

    @Test
    void theRuntimeLockCanBeOpenedByRootAlone() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("lock", TEST_POOL)) {
            Path lock = daemon.workerDir().resolve(".preforkd.lock");

            assertThat(Files.getPosixFilePermissions(lock))
                    .isEqualTo(java.nio.file.attribute.PosixFilePermissions.fromString(
                            "rw-------"));
            Commands.Result squat = asUser(alice, "dd", "if=" + lock, "count=0");
            assertThat(squat.stderr()).contains("Permission denied");
        }
    }

    @Test
    void aKilledTemplateIsRestartedAndThePoolRefills() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("restart", TEST_POOL)) {
            daemon.awaitParked(2);
            ProcessHandle template = templateOf(daemon);

            template.destroyForcibly();

            Awaitility.await().atMost(Duration.ofSeconds(30)).until(() ->
                    daemon.stats().template().equals("up") && daemon.stats().parked() == 2
                            && templateOf(daemon).pid() != template.pid());
            try (ControlClient client = daemon.client()) {
                assertThat(runSession(client, spawn(client, alice.name(), "exit", "4"), "")
                        .status()).isEqualTo(ExitStatus.code(4));
            }
        }
    }

    @Test
    void metersCountHandOutsRefusalsExitsAndWorkersByState() throws Exception {
        SimpleMeterRegistry registry = new SimpleMeterRegistry();
        try (DaemonFixture daemon = DaemonFixture.start("meters", TEST_POOL,
                new MicrometerPoolMetrics(registry));
             ControlClient client = daemon.client()) {
            daemon.awaitParked(2);
            client.spawn("root", List.of("echo"), Map.of());
            runSession(client, spawn(client, alice.name(), "kill", "9"), "");
            try (ControlClient second = daemon.client()) {
                runSession(second, spawn(second, alice.name(), "exit", "0"), "");
            }
            daemon.awaitParked(2);

            assertThat(registry.get("prefork.handouts").counter().count()).isEqualTo(2);
            assertThat(registry.get("prefork.refusals").tag("code", "refused").counter()
                    .count()).isEqualTo(1);
            assertThat(registry.get("prefork.worker.exits").tag("how", "signal").counter()
                    .count()).isEqualTo(1);
            assertThat(registry.get("prefork.worker.exits").tag("how", "code").counter()
                    .count()).isEqualTo(1);
            assertThat(registry.get("prefork.workers").tag("state", "parked").gauge().value())
                    .isEqualTo(2);
        }
    }

    @Test
    void theTemplateGetsNothingOfTheDaemonsEnvironment() throws Exception {
        try (DaemonFixture daemon = DaemonFixture.start("template-env", TEST_POOL)) {
            byte[] environ = Files.readAllBytes(
                    Path.of("/proc", Long.toString(templateOf(daemon).pid()), "environ"));

            List<String> names = java.util.Arrays.stream(
                    new String(environ, StandardCharsets.UTF_8).split("\0"))
                    .map(entry -> entry.substring(0, entry.indexOf('='))).sorted().toList();

            // Every worker inherits the template's memory: it must start with nothing
            // of ours (this JVM has HOME, MAVEN_* and the rest of a root shell).
            assertThat(names).containsExactly("LANG", "PATH");
        }
    }

    private static ProcessHandle templateOf(DaemonFixture daemon) {
        String marker = daemon.workerDir().toString();
        return ProcessHandle.current().children()
                .filter(p -> p.info().arguments().map(a -> String.join(" ", a))
                        .orElse("").contains(marker))
                .findFirst().orElseThrow();
    }

    private static ErrorCode errorCode(Reply reply) {
        assertThat(reply).isInstanceOf(Reply.Error.class);
        return ((Reply.Error) reply).code();
    }

    private static Commands.Result asUser(TestUsers.User user, String... command)
            throws Exception {
        List<String> full = new java.util.ArrayList<>(List.of("setpriv", "--reuid",
                Integer.toString(user.uid()), "--regid", Integer.toString(user.gid()),
                "--init-groups", "--"));
        full.addAll(List.of(command));
        return Commands.run(full, Path.of("/"), Map.of("PATH", "/usr/bin:/bin"), new byte[0]);
    }

    private static List<String> concat(List<String> base, String... more) {
        List<String> all = new java.util.ArrayList<>(base);
        all.addAll(List.of(more));
        return all;
    }
}
