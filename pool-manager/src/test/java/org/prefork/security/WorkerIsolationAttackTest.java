package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.prefork.protocol.ControlClient;
import org.prefork.protocol.ExitStatus;
import org.prefork.protocol.Reply;
import org.prefork.testing.Commands;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.TestUsers;

/**
 * Invariant attacked: a worker bound to user A can never act as anyone else: real,
 * effective and saved uid and gid are A's, root cannot be regained, no capability is
 * left, no new privilege can be gained, it holds fds 0, 1 and 2 only, and it can neither
 * read nor signal the daemon, the template, a parked worker or another user's worker.
 *
 * <p>The probes run inside alice's worker (the test service's {@code whoami}, {@code read}
 * and {@code signal}), reached through the real C client run as alice.
 */
class WorkerIsolationAttackTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    private static TestUsers users;
    private static TestUsers.User alice;
    private static TestUsers.User bob;
    private static DaemonFixture daemon;
    private static Path client;
    private static HeldSession bobsSession;
    private static HeldSession alicesOtherSession;

    @BeforeAll
    static void startDaemonAndHoldTwoSessions() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        bob = users.create("bob");
        daemon = DaemonFixture.start("isolation", Map.of(
                "service", "name = \"test\"",
                "pool", "min_idle = 2\nmax_total = 8"));
        client = daemon.stagedClient();
        bobsSession = HeldSession.open(daemon, bob);
        alicesOtherSession = HeldSession.open(daemon, alice);
    }

    @AfterAll
    static void stopDaemonAndRemoveUsers() throws Exception {
        try {
            for (HeldSession session : new HeldSession[] {bobsSession, alicesOtherSession}) {
                if (session != null) {
                    session.close();
                }
            }
            if (daemon != null) {
                daemon.close();
            }
        } finally {
            if (users != null) {
                users.close();
            }
        }
    }

    @Test
    void boundWorkerHasOnlyTheUsersIdsAndCannotRegainRoot() throws Exception {
        JsonNode who = JSON.readTree(probe("whoami"));

        String uids = "[" + alice.uid() + "," + alice.uid() + "," + alice.uid() + "]";
        String gids = "[" + alice.gid() + "," + alice.gid() + "," + alice.gid() + "]";
        assertThat(who.get("resuid").toString()).isEqualTo(uids);
        assertThat(who.get("resgid").toString()).isEqualTo(gids);
        assertThat(who.get("groups").toString()).isEqualTo("[" + alice.gid() + "]");
        assertThat(who.get("setuid0").asText()).isEqualTo("error EPERM");
        assertThat(who.get("no_new_privs").asInt()).isEqualTo(1);
        assertThat(who.get("dumpable").asInt()).isZero();
        Map<String, Integer> capabilities = JSON.convertValue(who.get("capabilities"),
                new TypeReference<Map<String, Integer>>() { });
        assertThat(capabilities).isEqualTo(
                Map.of("CapInh", 0, "CapPrm", 0, "CapEff", 0, "CapAmb", 0));
    }

    @Test
    void boundWorkerHoldsFdsZeroOneTwoAndNothingElse() throws Exception {
        JsonNode who = JSON.readTree(probe("whoami"));

        assertThat(who.get("fds").toString()).isEqualTo("[0,1,2]");
    }

    @Test
    void boundWorkerHoldsOnlyItsThreeFifoEndsAsSeenFromOutside() throws Exception {
        long pid = bobsSession.ok.pid();
        Path fdDir = Path.of("/proc", Long.toString(pid), "fd");

        Map<String, String> fds = new TreeMap<>();
        try (Stream<Path> entries = Files.list(fdDir)) {
            for (Path fd : entries.toList()) {
                fds.put(fd.getFileName().toString(), Files.readSymbolicLink(fd).toString());
            }
        }

        // Unlinked once opened, so the kernel shows them as deleted.
        assertThat(fds).isEqualTo(Map.of(
                "0", bobsSession.ok.stdinFifo() + " (deleted)",
                "1", bobsSession.ok.stdoutFifo() + " (deleted)",
                "2", bobsSession.ok.stderrFifo() + " (deleted)"));
    }

    @Test
    void probesWorkOnWhatTheWorkerMayReach() throws Exception {
        // Without these, an "error" below could be a broken probe rather than a refusal.
        assertThat(probe("read", "/proc/self/status")).matches("ok [0-9]+\n");
        assertThat(probe("signal", Long.toString(alicesOtherSession.ok.pid()), "0"))
                .isEqualTo("ok\n");
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"daemon", "template", "parked worker", "bob's worker"})
    void boundWorkerCannotReadTheEnvironmentOf(String target) throws Exception {
        assertThat(probeAgainst(target, "read", "/proc/%d/environ"))
                .isEqualTo("error EACCES\n");
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"daemon", "template", "parked worker", "bob's worker"})
    void boundWorkerCannotReadTheMemoryOf(String target) throws Exception {
        assertThat(probeAgainst(target, "read", "/proc/%d/mem"))
                .isEqualTo("error EACCES\n");
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"daemon", "template", "parked worker", "bob's worker"})
    void boundWorkerCannotSignal(String target) throws Exception {
        assertThat(probeAgainst(target, "signal", "%d", "0")).isEqualTo("error EPERM\n");
    }

    /**
     * Runs a probe whose arguments name the target's pid ({@code %d}). A parked target
     * may be the very worker the probe is handed (the oldest parked one goes first); then
     * the probe would have aimed at itself, so it runs again at another parked worker.
     */
    private static String probeAgainst(String target, String... pattern) throws Exception {
        for (int attempt = 0; attempt < 3; attempt++) {
            long pid = pidOf(target);
            String[] args = Arrays.stream(pattern)
                    .map(arg -> arg.replace("%d", Long.toString(pid))).toArray(String[]::new);
            String out = probe(args);
            if (!target.equals("parked worker") || stillParked(pid)) {
                return out;
            }
        }
        throw new AssertionError("every parked target was handed to the probe itself");
    }

    private static long pidOf(String target) {
        long daemonPid = ProcessHandle.current().pid();
        return switch (target) {
            case "daemon" -> daemonPid;
            case "template" -> Proc.template(daemonPid).pid();
            case "parked worker" -> {
                daemon.awaitParked(2);
                // The youngest (highest pid here) is the last to be handed out.
                yield Proc.parkedWorkers(Proc.template(daemonPid)).stream()
                        .max(Long::compare).orElseThrow();
            }
            case "bob's worker" -> bobsSession.ok.pid();
            default -> throw new IllegalArgumentException(target);
        };
    }

    private static boolean stillParked(long pid) {
        try {
            return Proc.running(pid) && Proc.status(pid, "Uid").get(0).equals("0");
        } catch (IOException e) {
            return false;
        }
    }

    /** Runs one test-service command in a fresh worker bound to alice; returns stdout. */
    private static String probe(String... args) throws Exception {
        Commands.Result result = AsUser.client(alice, client, daemon.socket(), null, args);
        assertThat(result.status()).as("probe %s: %s", List.of(args), result.stderr())
                .isZero();
        return result.stdout();
    }

    /** An echo session asked for by root and held open, so its worker can be a target. */
    private record HeldSession(ControlClient caller, Reply.Ok ok,
            ControlClient.Session session) implements AutoCloseable {

        static HeldSession open(DaemonFixture daemon, TestUsers.User user) throws Exception {
            ControlClient caller = daemon.client();
            Reply.Ok ok = (Reply.Ok) caller.spawn(user.name(), List.of("echo"), Map.of());
            return new HeldSession(caller, ok, ControlClient.Session.open(ok));
        }

        @Override
        public void close() throws Exception {
            session.stdin().write("bye\n".getBytes(StandardCharsets.UTF_8));
            session.stdin().close();
            assertThat(new String(session.stdout().readAllBytes(), StandardCharsets.UTF_8))
                    .isEqualTo("bye\n");
            session.close();
            assertThat(caller.readReply()).isEqualTo(new Reply.Exit(ok.workerId(),
                    ExitStatus.code(0)));
            caller.close();
        }
    }
}
