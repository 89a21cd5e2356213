package org.prefork.daemon;

import java.util.List;

/** A user as the system's user database knows it, with every group it belongs to. */
public record UserAccount(String name, int uid, int gid, String home, List<Integer> groups) {

    public UserAccount {
        groups = List.copyOf(groups);
    }
}
