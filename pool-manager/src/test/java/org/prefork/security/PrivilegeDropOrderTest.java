package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

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
 * Invariant attacked: no byte from a client reaches service code before the irrevocable
 * privilege drop to the target user. The FIFOs are the only way in: while a worker is
 * parked it holds no end of them (and only root can reach them, see
 * {@link FifoAttackTest}); when the caller learns their paths in {@code ok}, the worker
 * already is the user for good.
 */
class PrivilegeDropOrderTest {

    private static TestUsers users;
    private static TestUsers.User alice;
    private static DaemonFixture daemon;

    @BeforeAll
    static void startDaemon() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        daemon = DaemonFixture.start("droporder", Map.of(
                "service", "name = \"test\"",
                "pool", "min_idle = 2\nmax_total = 4"));
    }

    @AfterAll
    static void stopDaemonAndRemoveUsers() throws Exception {
        DaemonFixture.closeBoth(daemon, users);
    }

    @Test
    void parkedWorkerHoldsNoFifoEndSoEvenRootCannotWriteBeforeTheBind() throws Exception {
        daemon.awaitParked(2);
        List<Long> parked = Proc.parkedWorkers(Proc.template(ProcessHandle.current().pid()));

        assertThat(parked).hasSize(2);
        for (long pid : parked) {
            assertThat(openFiles(pid)).as("files worker %d holds", pid)
                    .noneMatch(file -> file.startsWith(daemon.workerDir().toString()));
        }
        List<Path> fifos = parkedStdinFifos();
        assertThat(fifos).hasSize(2);
        for (Path stdin : fifos) {
            Commands.Result write = Commands.run(List.of("dd", "of=" + stdin,
                    "oflag=nonblock", "conv=notrunc,nocreat", "count=0"));

            assertThat(write.status()).as("root opens %s to write", stdin).isEqualTo(1);
            assertThat(write.stderr()).isEqualTo("dd: failed to open '" + stdin
                    + "': No such device or address\n");
        }
    }

    @Test
    void workerIsAlreadyTheUserForGoodWhenTheCallerGetsOk() throws Exception {
        try (ControlClient caller = daemon.client()) {
            Reply.Ok ok = (Reply.Ok) caller.spawn(alice.name(), List.of("echo"), Map.of());

            // Nothing has opened the FIFOs yet: this is the worker as a client first meets it.
            String uid = Integer.toString(alice.uid());
            String gid = Integer.toString(alice.gid());
            assertThat(Proc.status(ok.pid(), "Uid")).containsExactly(uid, uid, uid, uid);
            assertThat(Proc.status(ok.pid(), "Gid")).containsExactly(gid, gid, gid, gid);
            assertThat(Proc.status(ok.pid(), "Groups")).containsExactly(gid);
            assertThat(Proc.status(ok.pid(), "NoNewPrivs")).containsExactly("1");
            for (String set : List.of("CapInh", "CapPrm", "CapEff", "CapAmb")) {
                assertThat(Proc.status(ok.pid(), set)).as(set)
                        .containsExactly("0000000000000000");
            }
            assertThat(Files.getOwner(Path.of(ok.stdinFifo())).getName())
                    .isEqualTo(alice.name());

            runEcho(ok);
            assertThat(caller.readReply()).isEqualTo(new Reply.Exit(ok.workerId(),
                    ExitStatus.code(0)));
        }
    }

    private static void runEcho(Reply.Ok ok) throws IOException {
        try (ControlClient.Session session = ControlClient.Session.open(ok)) {
            session.stdin().write("first byte after the drop\n".getBytes(StandardCharsets.UTF_8));
            session.stdin().close();
            assertThat(new String(session.stdout().readAllBytes(), StandardCharsets.UTF_8))
                    .isEqualTo("first byte after the drop\n");
        }
    }

    private static List<String> openFiles(long pid) throws IOException {
        List<String> files = new ArrayList<>();
        try (Stream<Path> fds = Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            for (Path fd : fds.toList()) {
                files.add(Files.readSymbolicLink(fd).toString());
            }
        }
        return files;
    }

    private static List<Path> parkedStdinFifos() throws IOException {
        return daemon.workerDirectories().stream().map(dir -> dir.resolve("stdin")).toList();
    }
}
