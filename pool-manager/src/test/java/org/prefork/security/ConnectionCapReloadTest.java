package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;
import org.prefork.testing.Commands;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.TestUsers;

/**
 * Attacks the per-uid connection cap through reloads: a uid made trusted, then untrusted
 * again, while its connections are open must neither lock itself out for good nor slip
 * past the cap.
 */
class ConnectionCapReloadTest {

    private static final String CAP = "max_connections_per_uid = 4";

    @Test
    void trustChangedByReloadWhileConnectionsAreOpenKeepsTheCountRight() throws Exception {
        try (TestUsers users = TestUsers.requireRoot()) {
            TestUsers.User alice = users.create("alice");
            Map<String, String> capped = Map.of("service", "name = \"test\"", "daemon", CAP);
            Map<String, String> trusted = Map.of("service", "name = \"test\"", "daemon", CAP,
                    "policy", "trusted_uids = [" + alice.uid() + "]");
            try (DaemonFixture daemon = DaemonFixture.start("capreload", capped)) {
                Path client = daemon.stagedClient();

                try (RawCaller.Held open = RawCaller.hold(alice, daemon.socket(), 4)) {
                    assertThat(AsUser.client(alice, client, daemon.socket(), null, "exit", "0")
                            .stderr()).contains("too many open control connections");
                    daemon.reload(trusted);
                }
                daemon.reload(capped);

                // Her four connections closed while she was trusted; they still count off.
                Awaitility.await().atMost(Duration.ofSeconds(10)).until(() ->
                        AsUser.client(alice, client, daemon.socket(), null, "exit", "0")
                                .status() == 0);
                try (RawCaller.Held open = RawCaller.hold(alice, daemon.socket(), 4)) {
                    Commands.Result fifth =
                            AsUser.client(alice, client, daemon.socket(), null, "exit", "0");
                    assertThat(fifth.status()).isEqualTo(75);
                }
            }
        }
    }
}
