package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
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
 * Invariant attacked: a worker's environment is an allowlist, never inherited and never
 * chosen by the frontend: PATH, HOME, USER and LOGNAME are the bound user's own, and of
 * what a frontend offers only names in {@code service.env_allowlist} arrive. Code-loading
 * names (LD_*, PYTHON*) and a replacement HOME are dropped.
 */
class EnvironmentAttackTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String EMAIL = "Alice Example <alice@example.com>";

    private static TestUsers users;
    private static TestUsers.User alice;
    private static DaemonFixture daemon;

    @BeforeAll
    static void startDaemonThatAllowsOnlyBrzEmail() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        daemon = DaemonFixture.start("environment", Map.of(
                "service", "name = \"test\"\nenv_allowlist = [\"BRZ_EMAIL\"]",
                "pool", "min_idle = 1\nmax_total = 3"));
    }

    @AfterAll
    static void stopDaemonAndRemoveUsers() throws Exception {
        DaemonFixture.closeBoth(daemon, users);
    }

    @Test
    void frontendCannotSmuggleCodeLoadingVariablesOrAnotherHome() throws Exception {
        Map<String, String> offered = new LinkedHashMap<>();
        offered.put("LD_PRELOAD", "/tmp/x.so");
        offered.put("PYTHONPATH", "/tmp");
        offered.put("BRZ_EMAIL", EMAIL);
        offered.put("HOME", "/root");

        try (ControlClient frontend = daemon.client()) {
            Reply.Ok ok = (Reply.Ok) frontend.spawn(alice.name(), List.of("whoami"), offered);
            String whoami = readSession(ok);

            assertThat(environ(whoami)).isEqualTo(expectedEnvironment(EMAIL));
            assertThat(frontend.readReply()).isEqualTo(new Reply.Exit(ok.workerId(),
                    ExitStatus.code(0)));
        }
    }

    @Test
    void cClientForwardsOnlyAllowlistedNamesOfItsOwnEnvironment() throws Exception {
        Path client = daemon.stagedClient();
        List<String> command = List.of(client.toString(), "--socket", daemon.socket().toString(),
                "--env", "LD_LIBRARY_PATH", "--env", "PYTHONPATH", "--env", "BRZ_EMAIL",
                "--env", "HOME", "--", "whoami");
        Map<String, String> sshEnv = Map.of("LD_LIBRARY_PATH", "/tmp", "PYTHONPATH", "/tmp",
                "BRZ_EMAIL", EMAIL, "HOME", "/root");

        Commands.Result result = AsUser.run(alice, sshEnv, new byte[0], command);

        assertThat(result.status()).as(result.stderr()).isZero();
        assertThat(environ(result.stdout())).isEqualTo(expectedEnvironment(EMAIL));
    }

    private static Map<String, String> expectedEnvironment(String email) {
        return Map.of("PATH", "/usr/bin:/bin", "HOME", alice.home().toString(),
                "USER", alice.name(), "LOGNAME", alice.name(), "BRZ_EMAIL", email);
    }

    private static Map<String, String> environ(String whoami) throws Exception {
        return JSON.convertValue(JSON.readTree(whoami).get("environ"),
                new TypeReference<Map<String, String>>() { });
    }

    private static String readSession(Reply.Ok ok) throws Exception {
        try (ControlClient.Session session = ControlClient.Session.open(ok)) {
            session.stdin().close();
            return new String(session.stdout().readAllBytes(), StandardCharsets.UTF_8);
        }
    }
}
