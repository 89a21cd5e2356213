package org.prefork.cli;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;
import jnr.posix.Passwd;

/**
 * The user the demo's sessions run as. As root that is an unprivileged account made for
 * the run (and removed after it); otherwise the caller itself.
 */
record DemoUser(String name, int uid, int gid, Path home, boolean createdForRun) {

    static final String NAME = "prefork-demo";
    static final String MARKER = "prefork demo, removed after the demo";

    static DemoUser prepare(Path work) throws IOException, InterruptedException {
        POSIX posix = POSIXFactory.getNativePOSIX();
        if (posix.geteuid() != 0) {
            Passwd self = posix.getpwuid(posix.geteuid());
            return new DemoUser(self.getLoginName(), (int) self.getUID(), (int) self.getGID(),
                    Path.of(self.getHome()), false);
        }

        Passwd existing = posix.getpwnam(NAME);
        // A user with our marker was left by an interrupted demo: ours to remove too.
        boolean created = existing == null || MARKER.equals(existing.getGECOS());
        Path home = work.resolve("home");
        if (existing == null) {
            Exec.run(List.of("useradd", "--create-home", "--home-dir", home.toString(),
                    "--shell", "/usr/sbin/nologin", "--user-group", "--comment", MARKER,
                    NAME), null, null);
        } else {
            Exec.run(List.of("mkdir", "-p", home.toString()), null, null);
            Exec.run(List.of("chown", NAME + ":", home.toString()), null, null);
        }
        Passwd entry = posix.getpwnam(NAME);
        return new DemoUser(NAME, (int) entry.getUID(), (int) entry.getGID(), home, created);
    }

    boolean isSelf() {
        return !createdForRun && !name.equals(NAME);
    }

    /** Hands a tree to this user, so its sessions can read what the demo made as root. */
    void own(Path tree) throws IOException, InterruptedException {
        if (!isSelf()) {
            Exec.run(List.of("chown", "-R", uid + ":" + gid, tree.toString()), null, null);
        }
    }

    void removeIfCreated() throws IOException, InterruptedException {
        if (createdForRun) {
            Exec.run(List.of("userdel", NAME), null, null);
        }
    }
}
