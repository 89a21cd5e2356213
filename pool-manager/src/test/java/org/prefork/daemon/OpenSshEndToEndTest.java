package org.prefork.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.prefork.testing.Commands;
import org.prefork.testing.DaemonFixture;
import org.prefork.testing.Sandbox;
import org.prefork.testing.TestUsers;

/**
 * The whole path as a code host runs it: the real Breezy client speaks bzr+ssh to a real
 * OpenSSH server on loopback, whose ForceCommand is prefork's per-connection client.
 */
class OpenSshEndToEndTest {

    private TestUsers users;
    private TestUsers.User alice;
    private Sandbox ssh;
    private Process sshd;
    private int port;

    @BeforeEach
    void setUp() throws Exception {
        users = TestUsers.requireRoot();
        alice = users.create("alice");
        ssh = new Sandbox("sshd");
    }

    @AfterEach
    void tearDown() throws Exception {
        if (sshd != null) {
            sshd.destroy();
            sshd.waitFor();
        }
        if (ssh != null) {
            ssh.close();
        }
        if (users != null) {
            users.close();
        }
    }

    @Test
    void breezyBranchesLogsAndPushesOverBzrSshThroughThePool() throws Exception {
        Map<String, String> brzPool = Map.of("service", "writable_paths = [\"~\"]",
                "pool", "min_idle = 2");
        try (DaemonFixture daemon = DaemonFixture.start("e2e", brzPool)) {
            makeBranchOwnedBy(alice, alice.home().resolve("trunk"), 3);
            startSshd(daemon);
            Path local = ssh.resolve("local");
            String remote = "bzr+ssh://" + alice.name() + "@127.0.0.1:" + port;

            brz(ssh.root(), "branch", remote + alice.home().resolve("trunk"), local.toString());
            String log = brz(local, "log", "--line", remote + alice.home().resolve("trunk"));

            assertThat(local.resolve("file3.txt")).hasContent("revision 3");
            assertThat(log).contains("revision 3").contains("revision 2").contains("revision 1");

            Files.writeString(local.resolve("pushed.txt"), "made by the client\n");
            brz(local, "add", "--quiet");
            brz(local, "commit", "--quiet", "-m", "revision 4");
            Path pushed = alice.home().resolve("pushed");
            brz(local, "push", "--quiet", remote + pushed);

            assertThat(pushed.resolve(".bzr")).isDirectory();
            assertThat(brz(ssh.root(), "log", "--line", pushed.toString()))
                    .contains("revision 4");
            assertOwnedBy(pushed, alice);

            // Users usually name their home with ~ in the URL.
            brz(local, "push", "--quiet", remote + "/~/pushed-home");
            assertThat(alice.home().resolve("pushed-home/.bzr")).isDirectory();
            assertOwnedBy(alice.home().resolve("pushed-home"), alice);

            // branch, remote log and the two pushes: one pooled worker each.
            assertThat(daemon.stats().handedOut()).isEqualTo(4);
        }
    }

    @Test
    void pushOutsideTheWritablePathsIsRefused() throws Exception {
        Map<String, String> readOnly = Map.of("pool", "min_idle = 1");
        try (DaemonFixture daemon = DaemonFixture.start("e2e-ro", readOnly)) {
            makeBranchOwnedBy(alice, alice.home().resolve("trunk"), 1);
            startSshd(daemon);
            Path local = ssh.resolve("local");
            String remote = "bzr+ssh://" + alice.name() + "@127.0.0.1:" + port;
            brz(ssh.root(), "branch", remote + alice.home().resolve("trunk"), local.toString());

            Commands.Result push = Commands.run(List.of("/usr/bin/brz", "push",
                    remote + alice.home().resolve("elsewhere")), local, brzEnv(), new byte[0]);

            assertThat(push.status()).isNotZero();
            assertThat(alice.home().resolve("elsewhere")).doesNotExist();
        }
    }

    private void makeBranchOwnedBy(TestUsers.User user, Path branch, int revisions)
            throws Exception {
        brz(ssh.root(), "init", "--quiet", branch.toString());
        for (int revision = 1; revision <= revisions; revision++) {
            Files.writeString(branch.resolve("file" + revision + ".txt"), "revision " + revision);
            brz(branch, "add", "--quiet");
            brz(branch, "commit", "--quiet", "-m", "revision " + revision);
        }
        Commands.check("chown", "-R", user.uid() + ":" + user.gid(), branch.toString());
    }

    private void startSshd(DaemonFixture daemon) throws Exception {
        port = freePort();
        Path client = daemon.stagedClient();
        Commands.check("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                ssh.resolve("host_key").toString());
        Commands.check("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                ssh.resolve("client_key").toString());
        Path keys = Files.createDirectories(ssh.resolve("authorized_keys"));
        Files.copy(ssh.resolve("client_key.pub"), keys.resolve(alice.name()));
        Files.setPosixFilePermissions(keys.resolve(alice.name()),
                PosixFilePermissions.fromString("rw-r--r--"));
        Files.createDirectories(Path.of("/run/sshd"));

        Files.writeString(ssh.resolve("sshd_config"), String.join("\n",
                "ListenAddress 127.0.0.1:" + port,
                "HostKey " + ssh.resolve("host_key"),
                "PidFile " + ssh.resolve("sshd.pid"),
                "AuthorizedKeysFile " + keys + "/%u",
                // The sandbox lives under /tmp, which is world-writable.
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin no",
                "AllowUsers " + alice.name(),
                "ForceCommand " + client + " --socket " + daemon.socket() + " --env BRZ_EMAIL",
                "AcceptEnv BRZ_EMAIL",
                "LogLevel VERBOSE",
                ""));
        sshd = new ProcessBuilder("/usr/sbin/sshd", "-D", "-e", "-f",
                ssh.resolve("sshd_config").toString())
                .redirectErrorStream(true)
                .redirectOutput(ssh.resolve("sshd.log").toFile())
                .start();
        Awaitility.await().atMost(Duration.ofSeconds(20)).until(this::sshdListens);
        writeSshWrapper();
    }

    /** Breezy runs 'ssh' from PATH; this one knows our key and our throwaway host key. */
    private void writeSshWrapper() throws IOException {
        Path bin = Files.createDirectories(ssh.resolve("bin"));
        Path wrapper = bin.resolve("ssh");
        Files.writeString(wrapper, "#!/bin/sh\nexec /usr/bin/ssh -F none -i "
                + ssh.resolve("client_key") + " -o IdentitiesOnly=yes"
                + " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                + " -o BatchMode=yes -o LogLevel=ERROR -o SendEnv=BRZ_EMAIL \"$@\"\n");
        Files.setPosixFilePermissions(wrapper, PosixFilePermissions.fromString("rwxr-xr-x"));
    }

    private boolean sshdListens() {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress("127.0.0.1", port), 200);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private Map<String, String> brzEnv() throws IOException {
        Path home = Files.createDirectories(ssh.resolve("client-home"));
        return Map.of("PATH", ssh.resolve("bin") + ":/usr/bin:/bin", "HOME", home.toString(),
                "BRZ_EMAIL", "Test Client <client@prefork.invalid>", "LANG", "C.UTF-8",
                "BRZ_SSH", "openssh");
    }

    private String brz(Path directory, String... args) throws Exception {
        List<String> command = new java.util.ArrayList<>(List.of("/usr/bin/brz"));
        command.addAll(List.of(args));
        Commands.Result result = Commands.run(command, directory, brzEnv(), new byte[0]);
        assertThat(result.status()).as("brz %s failed: %s%s\nsshd log:\n%s", String.join(" ",
                args), result.stdout(), result.stderr(), sshdLog()).isZero();
        return result.stdout();
    }

    private String sshdLog() {
        try {
            return Files.readString(ssh.resolve("sshd.log"));
        } catch (IOException e) {
            return "(no sshd log)";
        }
    }

    private static void assertOwnedBy(Path tree, TestUsers.User user) throws IOException {
        try (Stream<Path> paths = Files.walk(tree)) {
            for (Path path : paths.toList()) {
                int uid = (Integer) Files.getAttribute(path, "unix:uid");
                assertThat(uid).as("owner of %s", path).isEqualTo(user.uid());
            }
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0, 1,
                java.net.InetAddress.getByName("127.0.0.1"))) {
            return socket.getLocalPort();
        }
    }
}
