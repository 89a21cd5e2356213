package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.prefork.testing.Commands;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.TestUsers;

/**
 * Invariant attacked: a caller gets a worker bound to its own uid, as the kernel reports
 * it (SO_PEERCRED); only a configured trusted frontend uid may name another user; root,
 * a second name for uid 0 and system users are never served; a user name is looked up,
 * never read as a uid.
 *
 * <p>Every attacker runs the real C client (or raw bytes) under its own real uid.
 */
class IdentityAttackTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    private static TestUsers users;
    private static TestUsers.User alice;
    private static TestUsers.User bob;
    private static TestUsers.User mallory;
    private static TestUsers.User frontend;
    private static DaemonFixture daemon;
    private static Path client;

    @BeforeAll
    static void startDaemonWithATrustedFrontend() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        bob = users.create("bob");
        mallory = users.create("mallory");
        frontend = users.create("frontend");
        daemon = DaemonFixture.start("identity", Map.of(
                "service", "name = \"test\"",
                "pool", "min_idle = 2\nmax_total = 6\nwait_timeout_ms = 2000",
                "policy", "trusted_uids = [" + frontend.uid() + "]"));
        client = daemon.stagedClient();
    }

    @AfterAll
    static void stopDaemonAndRemoveUsers() throws Exception {
        DaemonFixture.closeBoth(daemon, users);
    }

    @Test
    void userAskingForAnotherUserIsRefused() throws Exception {
        Commands.Result result = clientAs(alice, bob.name(), "whoami");

        assertThat(result.status()).isEqualTo(77);
        assertThat(result.stderr()).isEqualTo(refusedLine(bob.name(), alice.uid()));
        assertThat(result.stdout()).isEmpty();
    }

    @Test
    void userAskingForRootIsRefused() throws Exception {
        Commands.Result result = clientAs(alice, "root", "whoami");

        assertThat(result.status()).isEqualTo(77);
        assertThat(result.stderr()).isEqualTo(refusedLine("root", alice.uid()));
    }

    @Test
    void userClaimingAnotherUsersUidNumberAsNameIsRefusedByClientAndDaemon()
            throws Exception {
        String bobsUid = Integer.toString(bob.uid());

        Commands.Result viaClient = clientAs(alice, bobsUid, "whoami");
        List<String> viaRawBytes = RawCaller.send(alice, daemon.socket(),
                "spawn " + bobsUid + " whoami\n");

        assertThat(viaClient.status()).isEqualTo(64);
        assertThat(viaClient.stderr()).isEqualTo("prefork: user name '" + bobsUid
                + "' does not match ^[a-z_][a-z0-9_-]{0,31}$\n");
        assertThat(viaRawBytes).containsExactly("prefork 1", "error bad-request bad user name '"
                + bobsUid + "': must match [a-z_][a-z0-9_-]{0,31}");
    }

    @Test
    void untrustedUserCannotActAsAFrontendForAnother() throws Exception {
        Commands.Result result = clientAs(mallory, alice.name(), "whoami");

        assertThat(result.status()).isEqualTo(77);
        assertThat(result.stderr()).isEqualTo(refusedLine(alice.name(), mallory.uid()));
    }

    @Test
    void trustedFrontendGetsAWorkerBoundToTheUserItNames() throws Exception {
        Commands.Result result = clientAs(frontend, alice.name(), "whoami");

        assertThat(result.status()).as(result.stderr()).isZero();
        JsonNode who = JSON.readTree(result.stdout());
        assertThat(who.get("resuid").toString())
                .isEqualTo(ids(alice.uid()));
        assertThat(who.get("resgid").toString())
                .isEqualTo(ids(alice.gid()));
        assertThat(who.get("groups").toString()).isEqualTo("[" + alice.gid() + "]");
    }

    @Test
    void trustedFrontendAskingForRootIsRefused() throws Exception {
        Commands.Result result = clientAs(frontend, "root", "whoami");

        assertThat(result.status()).isEqualTo(77);
        assertThat(result.stderr()).isEqualTo("prefork: spawn refused for user 'root':"
                + " root is never served (refused)\n");
    }

    @Test
    void trustedFrontendAskingForASecondNameOfUidZeroIsRefused() throws Exception {
        String toor = "pftoor" + ThreadLocalRandom.current().nextInt(10_000, 99_999);
        // A locked, home-less second passwd entry for uid 0: names alias, numbers do not.
        Commands.check("useradd", "--non-unique", "--uid", "0", "--gid", "0",
                "--no-create-home", "--home-dir", "/nonexistent", "--no-user-group",
                "--shell", "/usr/sbin/nologin", toor);
        try {
            Commands.Result result = clientAs(frontend, toor, "whoami");

            assertThat(result.status()).isEqualTo(77);
            assertThat(result.stderr()).isEqualTo("prefork: spawn refused for user '" + toor
                    + "': root is never served (refused)\n");
        } finally {
            Commands.check("userdel", "--force", toor);
        }
    }

    @Test
    void trustedFrontendAskingForASystemUserIsRefused() throws Exception {
        Commands.Result result = clientAs(frontend, "daemon", "whoami");

        assertThat(result.status()).isEqualTo(77);
        assertThat(result.stderr()).isEqualTo("prefork: spawn refused for user 'daemon':"
                + " uid 1 is below min_uid 1000 (refused)\n");
    }

    private static Commands.Result clientAs(TestUsers.User caller, String asked,
            String... args) throws Exception {
        return AsUser.client(caller, client, daemon.socket(), asked, args);
    }

    private static String refusedLine(String asked, int callerUid) {
        return "prefork: spawn refused for user '" + asked + "': caller uid " + callerUid
                + " may only ask for a worker bound to itself (refused)\n";
    }

    private static String ids(int id) {
        return "[" + id + "," + id + "," + id + "]";
    }
}
