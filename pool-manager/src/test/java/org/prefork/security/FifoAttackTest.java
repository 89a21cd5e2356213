package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowable;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.awaitility.Awaitility;
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
 * Invariant attacked: a session's FIFOs live in a directory that only the requesting
 * caller's uid (the user's own under OpenSSH, or a trusted frontend's) and root can
 * reach; a parked worker's FIFOs are root's alone; the FIFOs are unlinked once the
 * session opened them; and what the caller opens under those names is a FIFO.
 *
 * <p>Opening attempts use non-blocking opens, so that a regression shows up as a
 * success or another errno, never as a hung test.
 */
class FifoAttackTest {

    private static final List<String> FIFO_NAMES = List.of("stdin", "stdout", "stderr");

    private static TestUsers users;
    private static TestUsers.User alice;
    private static TestUsers.User bob;
    private static TestUsers.User mallory;
    private static TestUsers.User frontend;
    private static DaemonFixture daemon;

    @BeforeAll
    static void startDaemonWithATrustedFrontend() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        bob = users.create("bob");
        mallory = users.create("mallory");
        frontend = users.create("frontend");
        daemon = DaemonFixture.start("fifos", Map.of(
                "service", "name = \"test\"",
                "pool", "min_idle = 2\nmax_total = 6\nfifo_open_timeout_ms = 2000",
                "policy", "trusted_uids = [" + frontend.uid() + "]"));
    }

    @AfterAll
    static void stopDaemonAndRemoveUsers() throws Exception {
        DaemonFixture.closeBoth(daemon, users);
    }

    @Test
    void anotherUserCannotOpenAnySessionFifoOrListTheSessionDirectory() throws Exception {
        try (RawCaller.Held session = RawCaller.frontend(alice, daemon.socket(),
                alice.name())) {
            Path dir = sessionDir(session.readLine());

            assertAttributes(dir, alice.name(), alice.name(), "rwx------");
            assertLockedOut(bob, dir);

            session.poke();
            assertThat(session.readLine()).isEqualTo("echo through the frontend");
            assertThat(session.readLine()).matches("exit w[0-9]+ code:0");
        }
    }

    @Test
    void trustedFrontendCanOpenTheFifosItAskedForButMalloryCannot() throws Exception {
        try (RawCaller.Held session = RawCaller.frontend(frontend, daemon.socket(),
                alice.name())) {
            Path dir = sessionDir(session.readLine());

            assertAttributes(dir, alice.name(), frontend.name(), "rwx--x---");
            for (String name : FIFO_NAMES) {
                assertAttributes(dir.resolve(name), alice.name(), frontend.name(),
                        "rw-rw----");
            }
            assertLockedOut(mallory, dir);

            session.poke();
            assertThat(session.readLine()).isEqualTo("echo through the frontend");
            assertThat(session.readLine()).matches("exit w[0-9]+ code:0");
        }
    }

    @Test
    void noUnprivilegedUserCanOpenAParkedWorkersFifos() throws Exception {
        daemon.awaitParked(2);
        List<Path> parked = parkedDirs();

        assertThat(parked).hasSize(2);
        for (Path dir : parked) {
            assertAttributes(dir, "root", "root", "rwx------");
            for (TestUsers.User user : List.of(mallory, alice, frontend)) {
                assertLockedOut(user, dir);
            }
        }
    }

    @Test
    void fifosAreUnlinkedOnceTheSessionOpenedThem() throws Exception {
        try (ControlClient caller = daemon.client()) {
            Reply.Ok ok = (Reply.Ok) caller.spawn(alice.name(), List.of("echo"), Map.of());
            Path dir = Path.of(ok.stdinFifo()).getParent();

            try (ControlClient.Session session = ControlClient.Session.open(ok)) {
                Awaitility.await().atMost(Duration.ofSeconds(5))
                        .until(() -> list(dir).isEmpty());
                assertThat(dir).isDirectory();

                session.stdin().write("still served\n".getBytes(StandardCharsets.UTF_8));
                session.stdin().close();
                assertThat(new String(session.stdout().readAllBytes(), StandardCharsets.UTF_8))
                        .isEqualTo("still served\n");
            }
            assertThat(caller.readReply()).isEqualTo(new Reply.Exit(ok.workerId(),
                    ExitStatus.code(0)));
        }
    }

    /**
     * Whoever can write into the session directory between {@code ok} and the caller's
     * open (today the bound user, see the test above; it wins that moment by watching the
     * world-readable workers directory with inotify) can replace a FIFO with a link. A
     * caller that follows it opens, and for stdin truncates, a file of the caller's own:
     * here root's, as a root frontend's. The test makes the link itself, so that this
     * checks the Java client alone.
     */
    @Test
    void javaClientRefusesALinkWhereAFifoWasDue() throws Exception {
        Path victim = daemon.sandbox().resolve("root-only.conf");
        Files.writeString(victim, "root's settings\n");
        Files.setPosixFilePermissions(victim, PosixFilePermissions.fromString("rw-------"));
        try (ControlClient caller = daemon.client()) {
            Reply.Ok ok = (Reply.Ok) caller.spawn(alice.name(), List.of("echo"), Map.of());
            replaceWithLink(ok.stdinFifo(), victim);
            // Links for the other two as well, so that a client that follows links
            // never blocks on a FIFO the worker will not open.
            replaceWithLink(ok.stdoutFifo(), Path.of("/dev/null"));
            replaceWithLink(ok.stderrFifo(), Path.of("/dev/null"));

            Throwable open = catchThrowable(() -> ControlClient.Session.open(ok).close());

            assertThat(victim).as("root's file linked as %s", ok.stdinFifo())
                    .hasContent("root's settings");
            assertThat(open).as("opening a link where a FIFO was due")
                    .isInstanceOf(IOException.class);
            // The worker gives up (link refused, or FIFO timeout); its exit ends the call.
            assertThat(caller.readReply()).isInstanceOf(Reply.Exit.class);
        }
    }

    private static void replaceWithLink(String fifo, Path target) throws IOException {
        Files.delete(Path.of(fifo));
        Files.createSymbolicLink(Path.of(fifo), target);
    }

    /** Every open of every FIFO, both ways, and a listing: each refused with EACCES. */
    private static void assertLockedOut(TestUsers.User user, Path dir) throws Exception {
        for (String name : FIFO_NAMES) {
            String fifo = dir.resolve(name).toString();
            for (String open : List.of("if=" + fifo, "of=" + fifo)) {
                Commands.Result dd = AsUser.run(user, "dd", open, "iflag=nonblock",
                        "oflag=nonblock", "conv=notrunc,nocreat", "count=0");
                assertThat(dd.status()).as("%s: dd %s", user.name(), open).isEqualTo(1);
                assertThat(dd.stderr()).as("%s: dd %s", user.name(), open).isEqualTo(
                        "dd: failed to open '" + fifo + "': Permission denied\n");
            }
        }
        Commands.Result ls = AsUser.run(user, "ls", dir.toString());
        assertThat(ls.status()).as("%s lists %s", user.name(), dir).isEqualTo(2);
        assertThat(ls.stderr()).isEqualTo("ls: cannot open directory '" + dir
                + "': Permission denied\n");
    }

    private static void assertAttributes(Path path, String owner, String group,
            String mode) throws IOException {
        PosixFileAttributes attributes = Files.readAttributes(path, PosixFileAttributes.class,
                LinkOption.NOFOLLOW_LINKS);
        assertThat(attributes.owner().getName()).as("owner of %s", path).isEqualTo(owner);
        assertThat(attributes.group().getName()).as("group of %s", path).isEqualTo(group);
        assertThat(PosixFilePermissions.toString(attributes.permissions()))
                .as("mode of %s", path).isEqualTo(mode);
    }

    private static Path sessionDir(String okLine) {
        assertThat(okLine).startsWith("ok ");
        return Path.of(okLine.split(" ")[3]).getParent();
    }

    private static List<Path> parkedDirs() throws IOException {
        try (Stream<Path> dirs = daemon.workerDirectories().stream()) {
            return dirs.filter(dir -> {
                try {
                    return Files.getOwner(dir).getName().equals("root");
                } catch (IOException e) {
                    return false;
                }
            }).toList();
        }
    }

    private static List<Path> list(Path dir) throws IOException {
        try (Stream<Path> entries = Files.list(dir)) {
            return entries.toList();
        }
    }
}
