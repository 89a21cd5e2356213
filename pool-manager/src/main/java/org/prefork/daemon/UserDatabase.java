package org.prefork.daemon;

import java.util.Optional;
import java.util.OptionalInt;

/** Looks users up in the system's user database; never in text a client sent. */
public interface UserDatabase {

    Optional<UserAccount> byName(String name);

    Optional<UserAccount> byUid(int uid);

    /** Everyone in a group: its listed members and the users whose primary group it is. */
    java.util.Set<String> groupMembers(int gid);

    /** The gid of a group, looked up by name. */
    OptionalInt groupId(String name);
}
