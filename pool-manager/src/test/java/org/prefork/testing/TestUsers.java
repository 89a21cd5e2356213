package org.prefork.testing;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

import jnr.posix.POSIXFactory;
import jnr.posix.Passwd;
import org.junit.jupiter.api.Assumptions;

/**
 * Real local users for tests, made with {@code useradd} and removed with {@code userdel}.
 * Tests that need them need root; without it they are skipped with the reason printed.
 */
public final class TestUsers implements AutoCloseable {

    public record User(String name, int uid, int gid, Path home) {
    }

    private final List<String> created = new ArrayList<>();

    public static TestUsers requireRoot() {
        boolean root = POSIXFactory.getNativePOSIX().geteuid() == 0;
        if (!root) {
            System.out.println("SKIPPED: this test creates users and binds workers to them;"
                    + " it needs root");
        }
        Assumptions.assumeTrue(root, "needs root to create users and drop privileges");
        return new TestUsers();
    }

    /** A new user with a home of its own and an unlocked (password-less) account. */
    public User create(String role) throws IOException, InterruptedException {
        String name = "pf" + role + ThreadLocalRandom.current().nextInt(10_000, 99_999);
        Commands.check("useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name);
        created.add(name);
        // useradd leaves the account locked and OpenSSH refuses locked accounts even
        // for key logins; '*' unlocks it without giving it a password.
        Commands.check("usermod", "-p", "*", name);
        Passwd entry = POSIXFactory.getNativePOSIX().getpwnam(name);
        return new User(name, (int) entry.getUID(), (int) entry.getGID(),
                Path.of(entry.getHome()));
    }

    @Override
    public void close() throws IOException, InterruptedException {
        for (String name : created) {
            // Sessions of the user may still be winding down; userdel refuses then.
            for (int attempt = 0; attempt < 20; attempt++) {
                if (Commands.run(List.of("userdel", "--remove", name)).status() != 8) {
                    break;
                }
                Thread.sleep(100);
            }
        }
        created.clear();
    }
}
