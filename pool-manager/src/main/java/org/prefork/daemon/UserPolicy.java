package org.prefork.daemon;

import java.util.Set;

import org.prefork.protocol.ErrorCode;

/**
 * Decides which user a caller may get a worker bound to. The caller's identity comes
 * from the kernel; the requested name is only looked up, never trusted.
 */
public final class UserPolicy {

    private final UserDatabase users;
    private final Set<Integer> trustedUids;
    private final int minUid;
    private final int maxUid;
    private final int daemonUid;

    public UserPolicy(UserDatabase users, DaemonConfig config, int daemonUid) {
        this.users = users;
        this.trustedUids = Set.copyOf(config.trustedUids());
        this.minUid = config.minUid();
        this.maxUid = config.maxUid();
        this.daemonUid = daemonUid;
    }

    /** Returns the account to bind, or throws a refusal that says why. */
    public UserAccount authorize(Caller caller, String userName) throws Refusal {
        UserAccount account = users.byName(userName).orElseThrow(() -> new Refusal(
                ErrorCode.UNKNOWN_USER, "spawn refused: no user named '" + userName + "'"));

        if (!mayNameOthers(caller) && caller.uid() != account.uid()) {
            throw refuse(userName, "caller uid " + caller.uid()
                    + " may only ask for a worker bound to itself");
        }
        if (account.uid() == 0) {
            throw refuse(userName, "root is never served");
        }
        if (account.uid() < minUid) {
            throw refuse(userName, "uid " + account.uid() + " is below min_uid " + minUid);
        }
        if (account.uid() > maxUid) {
            throw refuse(userName, "uid " + account.uid() + " is above max_uid " + maxUid);
        }
        if (daemonUid != 0 && account.uid() != daemonUid) {
            throw refuse(userName, "the daemon runs unprivileged as uid " + daemonUid
                    + " and can only serve that uid");
        }
        return account;
    }

    /** Root and the configured frontends may name another user; everyone else is itself. */
    public boolean mayNameOthers(Caller caller) {
        return caller.isRoot() || trustedUids.contains(caller.uid());
    }

    private static Refusal refuse(String userName, String why) {
        return new Refusal(ErrorCode.REFUSED,
                "spawn refused for user '" + userName + "': " + why);
    }
}
