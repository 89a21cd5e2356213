package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.prefork.protocol.ControlClient;
import org.prefork.protocol.ExitStatus;
import org.prefork.protocol.Reply;
import org.prefork.testing.Commands;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.TestUsers;

/**
 * Invariant attacked: every worker inherits the template's memory, so the template holds
 * nothing a worker may not see. It starts with a minimal environment; what one user's
 * session brought (its binding and environment) must not stay in the memory the next
 * user's worker is forked from; and a user cannot read its own worker's memory (the
 * template's copy) from outside, because the worker is not dumpable.
 */
class TemplateMemoryAttackTest {

    private static TestUsers users;
    private static TestUsers.User alice;
    private static TestUsers.User bob;
    private static DaemonFixture daemon;

    @BeforeAll
    static void startDaemon() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        bob = users.create("bob");
        daemon = DaemonFixture.start("memory", Map.of(
                "service", "name = \"test\"\nenv_allowlist = [\"BRZ_EMAIL\"]",
                "pool", "min_idle = 2\nmax_total = 4"));
    }

    @AfterAll
    static void stopDaemonAndRemoveUsers() throws Exception {
        DaemonFixture.closeBoth(daemon, users);
    }

    @Test
    void bobsBindingLeavesNoTraceInTheMemoryLaterWorkersAreForkedFrom() throws Exception {
        String secret = "bob-" + UUID.randomUUID() + "@prefork.invalid";
        try (ControlClient client = daemon.client()) {
            Reply.Ok ok = (Reply.Ok) client.spawn(bob.name(), List.of("exit", "0"),
                    Map.of("BRZ_EMAIL", secret));
            ControlClient.Session.open(ok).close();
            assertThat(client.readReply()).isInstanceOf(Reply.Exit.class);
        }
        // Workers forked after bob's binding passed through the template.
        daemon.awaitParked(2);
        ProcessHandle template = Proc.template(ProcessHandle.current().pid());
        List<Long> inheritors = new ArrayList<>(Proc.parkedWorkers(template));
        inheritors.add(template.pid());

        for (long pid : inheritors) {
            assertThat(Proc.findInMemory(pid, Proc.bytes(secret)))
                    .as("bob's BRZ_EMAIL in the memory of pid %d", pid).isEmpty();
        }
        // The search does find what is there: the secret is in this JVM's heap.
        assertThat(Proc.findInMemory(ProcessHandle.current().pid(), Proc.bytes(secret)))
                .isPresent();
    }

    @Test
    void templateStartsWithOnlyPathAndLang() throws Exception {
        long template = Proc.template(ProcessHandle.current().pid()).pid();

        byte[] environ = Files.readAllBytes(Path.of("/proc", Long.toString(template),
                "environ"));

        assertThat(new String(environ, StandardCharsets.UTF_8).split("\0"))
                .containsExactlyInAnyOrder("PATH=/usr/bin:/bin", "LANG=C.UTF-8");
    }

    @Test
    void userCannotReadItsOwnWorkersMemoryFromOutside() throws Exception {
        try (ControlClient frontend = daemon.client()) {
            Reply.Ok ok = (Reply.Ok) frontend.spawn(alice.name(), List.of("echo"), Map.of());
            String proc = "/proc/" + ok.pid();
            try (ControlClient.Session session = ControlClient.Session.open(ok)) {
                Commands.Result environ = AsUser.run(alice, "cat", proc + "/environ");
                Commands.Result mem = AsUser.run(alice, "dd", "if=" + proc + "/mem",
                        "count=1");

                assertThat(environ.status()).isEqualTo(1);
                assertThat(environ.stderr()).isEqualTo("cat: " + proc
                        + "/environ: Permission denied\n");
                assertThat(mem.status()).isEqualTo(1);
                assertThat(mem.stderr()).isEqualTo("dd: failed to open '" + proc
                        + "/mem': Permission denied\n");
                session.stdin().close();
            }
            assertThat(frontend.readReply()).isEqualTo(new Reply.Exit(ok.workerId(),
                    ExitStatus.code(0)));
        }
    }
}
