package org.prefork.security;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.prefork.testing.Commands;
import org.prefork.testing.TestUsers;

/**
 * Runs programs as a test user, the way a local attacker runs them: real uid, gid and
 * groups of that user (setpriv), a minimal environment, cwd {@code /}.
 */
final class AsUser {

    static final Map<String, String> MINIMAL_ENV = Map.of("PATH", "/usr/bin:/bin");

    private AsUser() {
    }

    static List<String> command(TestUsers.User user, List<String> command) {
        List<String> full = new ArrayList<>(List.of("setpriv",
                "--reuid", Integer.toString(user.uid()),
                "--regid", Integer.toString(user.gid()), "--init-groups", "--"));
        full.addAll(command);
        return full;
    }

    static Commands.Result run(TestUsers.User user, String... command)
            throws IOException, InterruptedException {
        return run(user, Map.of(), new byte[0], List.of(command));
    }

    /** Runs with {@code extraEnv} added to the minimal environment and {@code input}. */
    static Commands.Result run(TestUsers.User user, Map<String, String> extraEnv, byte[] input,
            List<String> command) throws IOException, InterruptedException {
        Map<String, String> env = new java.util.HashMap<>(MINIMAL_ENV);
        env.putAll(extraEnv);
        return Commands.run(command(user, command), Path.of("/"), env, input);
    }

    /** Starts without waiting; the caller talks to the process and waits for it. */
    static Process start(TestUsers.User user, List<String> command) throws IOException {
        ProcessBuilder builder = new ProcessBuilder(command(user, command))
                .directory(Path.of("/").toFile());
        builder.environment().clear();
        builder.environment().putAll(MINIMAL_ENV);
        return builder.start();
    }

    /** Runs the staged C client as {@code caller}, asking for {@code asked} (or itself). */
    static Commands.Result client(TestUsers.User caller, Path client, Path socket,
            String asked, String... args) throws IOException, InterruptedException {
        return run(caller, Map.of(), new byte[0], client(client, socket, asked, args));
    }

    /** The staged C client's command line; {@code asked} null means no {@code --user}. */
    static List<String> client(Path client, Path socket, String asked, String... args) {
        List<String> command = new ArrayList<>(List.of(client.toString(),
                "--socket", socket.toString()));
        if (asked != null) {
            command.addAll(List.of("--user", asked));
        }
        command.add("--");
        command.addAll(List.of(args));
        return command;
    }
}
