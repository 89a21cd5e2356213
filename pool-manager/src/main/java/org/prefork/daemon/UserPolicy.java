package org.prefork.daemon;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
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
    private final Map<Integer, String> allowedGroups;
    private final Map<Integer, String> deniedGroups;
    private final int daemonUid;

    /** Resolves the configured group names now, so a typo stops the start, not a user. */
    public UserPolicy(UserDatabase users, DaemonConfig config, int daemonUid)
            throws ConfigException {
        this.users = users;
        this.trustedUids = Set.copyOf(config.trustedUids());
        this.minUid = config.minUid();
        this.maxUid = config.maxUid();
        this.allowedGroups = resolve(users, "policy.allowed_groups", config.allowedGroups());
        this.deniedGroups = resolve(users, "policy.denied_groups", config.deniedGroups());
        this.daemonUid = daemonUid;
        for (int uid : trustedUids) {
            checkFrontend(users, uid);
        }
    }

    /**
     * The FIFOs of the sessions a frontend asks for are shared with its primary group,
     * so that group must hold the frontend alone.
     */
    private static void checkFrontend(UserDatabase users, int uid) throws ConfigException {
        String key = "policy.trusted_uids names uid " + uid;
        UserAccount frontend = users.byUid(uid).orElseThrow(
                () -> new ConfigException(key + ", which is invalid: no such user"));
        java.util.Set<String> others = new java.util.TreeSet<>(users.groupMembers(frontend.gid()));
        others.remove(frontend.name());
        if (!others.isEmpty()) {
            throw new ConfigException(key + " (" + frontend.name() + "), which is invalid:"
                    + " its primary group (gid " + frontend.gid() + ") also holds "
                    + String.join(", ", others) + "; the FIFOs of the sessions it asks for"
                    + " are shared with that group, so it needs a group of its own");
        }
    }

    /**
     * Who a caller is for the worker's FIFO group: a frontend by its passwd entry, never
     * by the gid its process happens to run with (sg, newgrp and setgid would choose).
     */
    public Caller identify(Caller peer) {
        if (peer.isRoot() || !trustedUids.contains(peer.uid())) {
            return peer;
        }
        return users.byUid(peer.uid())
                .map(account -> new Caller(peer.uid(), account.gid(), peer.pid()))
                .orElse(peer);
    }

    private static Map<Integer, String> resolve(UserDatabase users, String key,
            List<String> names) throws ConfigException {
        Map<Integer, String> gids = new LinkedHashMap<>();
        for (String name : names) {
            int gid = users.groupId(name).orElseThrow(() -> new ConfigException(key
                    + " names \"" + name + "\", which is invalid: no such group"));
            gids.put(gid, name);
        }
        return Map.copyOf(gids);
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
        checkGroups(account);
        if (daemonUid != 0 && account.uid() != daemonUid) {
            throw refuse(userName, "the daemon runs unprivileged as uid " + daemonUid
                    + " and can only serve that uid");
        }
        return account;
    }

    private void checkGroups(UserAccount account) throws Refusal {
        for (int gid : account.groups()) {
            if (deniedGroups.containsKey(gid)) {
                throw refuse(account.name(), "member of denied group '"
                        + deniedGroups.get(gid) + "'");
            }
        }
        boolean allowed = allowedGroups.isEmpty()
                || account.groups().stream().anyMatch(allowedGroups::containsKey);
        if (!allowed) {
            throw refuse(account.name(), "not a member of any allowed group ("
                    + String.join(", ", allowedGroups.values()) + ")");
        }
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
