package org.prefork.daemon;

import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.Set;
import java.util.TreeSet;

import jnr.ffi.LibraryLoader;
import jnr.ffi.byref.IntByReference;
import jnr.posix.Group;
import jnr.posix.POSIX;
import jnr.posix.Passwd;

/**
 * {@link UserDatabase} over libc's {@code getpwnam} (JNR-POSIX) and {@code getgrouplist}
 * (JNR-FFI), so NSS sources such as LDAP count as well as {@code /etc/group}.
 */
public final class PosixUserDatabase implements UserDatabase {

    /** The part of libc that JNR-POSIX does not wrap. */
    public interface GroupList {
        int getgrouplist(String user, int group, int[] groups, IntByReference ngroups);
    }

    private static final int MAX_GROUPS = 65_536;

    private final POSIX posix;
    private final GroupList libc = LibraryLoader.create(GroupList.class).load("c");

    public PosixUserDatabase(POSIX posix) {
        this.posix = posix;
    }

    @Override
    public Optional<UserAccount> byName(String name) {
        // getpwnam returns a pointer into libc's static storage.
        synchronized (PosixUserDatabase.class) {
            Passwd entry = posix.getpwnam(name);
            if (entry == null || !name.equals(entry.getLoginName())) {
                return Optional.empty();
            }
            int gid = (int) entry.getGID();
            return Optional.of(new UserAccount(name, (int) entry.getUID(), gid,
                    entry.getHome(), groups(name, gid)));
        }
    }

    @Override
    public Optional<UserAccount> byUid(int uid) {
        synchronized (PosixUserDatabase.class) {
            Passwd entry = posix.getpwuid(uid);
            return entry == null ? Optional.empty() : byName(entry.getLoginName());
        }
    }

    @Override
    public Set<String> groupMembers(int gid) {
        synchronized (PosixUserDatabase.class) {
            Set<String> members = new TreeSet<>();
            Group group = posix.getgrgid(gid);
            if (group != null && group.getMembers() != null) {
                members.addAll(Arrays.asList(group.getMembers()));
            }
            // Enumerating the whole user database is slow, but this runs at start only.
            posix.setpwent();
            try {
                for (Passwd user = posix.getpwent(); user != null; user = posix.getpwent()) {
                    if (user.getGID() == gid) {
                        members.add(user.getLoginName());
                    }
                }
            } finally {
                posix.endpwent();
            }
            return members;
        }
    }

    @Override
    public OptionalInt groupId(String name) {
        synchronized (PosixUserDatabase.class) {
            Group group = posix.getgrnam(name);
            return group == null || !name.equals(group.getName())
                    ? OptionalInt.empty() : OptionalInt.of((int) group.getGID());
        }
    }

    private List<Integer> groups(String name, int gid) {
        int[] groups = new int[64];
        IntByReference count = new IntByReference(groups.length);
        // -1 means the array was too small; the count then says how large it must be.
        while (libc.getgrouplist(name, gid, groups, count) == -1
                && count.intValue() > groups.length && count.intValue() <= MAX_GROUPS) {
            groups = new int[count.intValue()];
            count = new IntByReference(groups.length);
        }
        TreeSet<Integer> sorted = new TreeSet<>();
        Arrays.stream(groups, 0, Math.min(count.intValue(), groups.length))
                .forEach(sorted::add);
        sorted.add(gid);
        return sorted.stream().toList();
    }
}
