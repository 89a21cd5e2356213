package org.prefork.daemon;

import java.util.Optional;

/** Looks users up in the system's user database; never in text a client sent. */
public interface UserDatabase {

    Optional<UserAccount> byName(String name);
}
