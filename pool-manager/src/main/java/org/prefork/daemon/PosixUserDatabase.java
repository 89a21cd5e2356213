package org.prefork.daemon;

import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
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
