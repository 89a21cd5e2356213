package org.prefork.daemon;

import java.util.Arrays;
import java.util.Optional;
import java.util.TreeSet;

import jnr.posix.Group;
import jnr.posix.POSIX;
import jnr.posix.Passwd;

/** {@link UserDatabase} over libc's {@code getpwnam} and group enumeration, via JNR-POSIX. */
public final class PosixUserDatabase implements UserDatabase {

    private final POSIX posix;

    public PosixUserDatabase(POSIX posix) {
        this.posix = posix;
    }

    @Override
    public Optional<UserAccount> byName(String name) {
        // getpwnam and the getgrent cursor are process-global state in libc.
        synchronized (PosixUserDatabase.class) {
            Passwd entry = posix.getpwnam(name);
            if (entry == null || !name.equals(entry.getLoginName())) {
                return Optional.empty();
            }
            int gid = (int) entry.getGID();
            TreeSet<Integer> groups = new TreeSet<>();
            groups.add(gid);
            groups.addAll(supplementaryGroups(name));
            return Optional.of(new UserAccount(name, (int) entry.getUID(), gid,
                    entry.getHome(), groups.stream().toList()));
        }
    }

    private TreeSet<Integer> supplementaryGroups(String name) {
        TreeSet<Integer> groups = new TreeSet<>();
        posix.setgrent();
        try {
            for (Group group = posix.getgrent(); group != null; group = posix.getgrent()) {
                String[] members = group.getMembers();
                if (members != null && Arrays.asList(members).contains(name)) {
                    groups.add((int) group.getGID());
                }
            }
        } finally {
            posix.endgrent();
        }
        return groups;
    }
}
