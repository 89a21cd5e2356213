package org.prefork.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;

import org.junit.jupiter.api.Test;
import org.prefork.protocol.ErrorCode;

class UserPolicyTest {

    private static final UserAccount ALICE =
            new UserAccount("alice", 1001, 1001, "/home/alice", List.of(1001, 2000));
    private static final UserAccount BOB =
            new UserAccount("bob", 1002, 1002, "/home/bob", List.of(1002, 3000));
    private static final UserAccount ROOT =
            new UserAccount("root", 0, 0, "/root", List.of(0));
    private static final UserAccount DAEMON =
            new UserAccount("daemon", 1, 1, "/usr/sbin", List.of(1));
    private static final UserAccount FRONTEND =
            new UserAccount("frontend", 998, 998, "/var/lib/frontend", List.of(998));
    /** A frontend whose primary group is shared with alice: a misconfiguration. */
    private static final UserAccount SHARED =
            new UserAccount("shared", 997, 1001, "/var/lib/shared", List.of(1001));

    /** An in-memory user database: the policy's rules, not libc, are under test. */
    private static final UserDatabase USERS = new UserDatabase() {
        private final Map<String, UserAccount> users = Map.of("alice", ALICE, "bob", BOB,
                "root", ROOT, "daemon", DAEMON, "frontend", FRONTEND, "shared", SHARED);
        private final Map<String, Integer> groups = Map.of("bzr", 2000, "banned", 3000);

        @Override
        public Optional<UserAccount> byName(String name) {
            return Optional.ofNullable(users.get(name));
        }

        @Override
        public Optional<UserAccount> byUid(int uid) {
            return users.values().stream().filter(u -> u.uid() == uid).findFirst();
        }

        @Override
        public java.util.Set<String> groupMembers(int gid) {
            return users.values().stream().filter(u -> u.groups().contains(gid))
                    .map(UserAccount::name).collect(java.util.stream.Collectors.toSet());
        }

        @Override
        public OptionalInt groupId(String name) {
            Integer gid = groups.get(name);
            return gid == null ? OptionalInt.empty() : OptionalInt.of(gid);
        }
    };

    private static UserPolicy policy(String policyToml, int daemonUid) throws Exception {
        DaemonConfig config = DaemonConfig.parse("[policy]\n" + policyToml, Path.of("/opt"));
        return new UserPolicy(USERS, config, daemonUid);
    }

    private static void assertRefused(UserPolicy policy, Caller caller, String user,
            ErrorCode code, String message) {
        assertThatThrownBy(() -> policy.authorize(caller, user)).isInstanceOf(Refusal.class)
                .hasMessage(message)
                .extracting(e -> ((Refusal) e).code()).isEqualTo(code);
    }

    @Test
    void aCallerGetsItselfAndNobodyElse() throws Exception {
        UserPolicy policy = policy("", 0);
        Caller alice = new Caller(1001, 1001, 77);

        assertThat(policy.authorize(alice, "alice")).isEqualTo(ALICE);
        assertRefused(policy, alice, "bob", ErrorCode.REFUSED, "spawn refused for user 'bob':"
                + " caller uid 1001 may only ask for a worker bound to itself");
    }

    @Test
    void rootAndTrustedFrontendsMayNameOthers() throws Exception {
        UserPolicy policy = policy("trusted_uids = [998]", 0);

        assertThat(policy.authorize(new Caller(998, 998, 5), "bob")).isEqualTo(BOB);
        assertThat(policy.authorize(new Caller(0, 0, 5), "alice")).isEqualTo(ALICE);
        assertRefused(policy, new Caller(999, 999, 5), "bob", ErrorCode.REFUSED,
                "spawn refused for user 'bob': caller uid 999 may only ask for a worker"
                        + " bound to itself");
    }

    @Test
    void aFrontendIsKnownByItsPrimaryGroupNotByTheGidItRunsWith() throws Exception {
        UserPolicy policy = policy("trusted_uids = [998]", 0);

        // Running under another group (sg, newgrp) must not share the FIFOs with it.
        assertThat(policy.identify(new Caller(998, 4242, 5))).isEqualTo(new Caller(998, 998, 5));
        assertThat(policy.identify(new Caller(1001, 4242, 5)))
                .isEqualTo(new Caller(1001, 4242, 5));
    }

    @Test
    void aFrontendWhosePrimaryGroupHoldsOthersStopsTheStart() {
        assertThatThrownBy(() -> policy("trusted_uids = [997]", 0))
                .isInstanceOf(ConfigException.class)
                .hasMessage("policy.trusted_uids names uid 997 (shared), which is invalid: its"
                        + " primary group (gid 1001) also holds alice; the FIFOs of the"
                        + " sessions it asks for are shared with that group, so it needs a"
                        + " group of its own");
        assertThatThrownBy(() -> policy("trusted_uids = [4000]", 0))
                .isInstanceOf(ConfigException.class)
                .hasMessage("policy.trusted_uids names uid 4000, which is invalid: no such user");
    }

    @Test
    void rootIsNeverServedNotEvenToRoot() throws Exception {
        UserPolicy policy = policy("min_uid = 1", 0);

        assertRefused(policy, new Caller(0, 0, 1), "root", ErrorCode.REFUSED,
                "spawn refused for user 'root': root is never served");
    }

    @Test
    void uidRangeIsEnforced() throws Exception {
        assertRefused(policy("", 0), new Caller(0, 0, 1), "daemon", ErrorCode.REFUSED,
                "spawn refused for user 'daemon': uid 1 is below min_uid 1000");
        assertRefused(policy("max_uid = 1001", 0), new Caller(0, 0, 1), "bob",
                ErrorCode.REFUSED, "spawn refused for user 'bob': uid 1002 is above max_uid 1001");
    }

    @Test
    void groupRulesAreEnforcedDeniedFirst() throws Exception {
        UserPolicy policy = policy("allowed_groups = [\"bzr\"]\ndenied_groups = [\"banned\"]", 0);
        Caller root = new Caller(0, 0, 1);

        assertThat(policy.authorize(root, "alice")).isEqualTo(ALICE);
        assertRefused(policy, root, "bob", ErrorCode.REFUSED,
                "spawn refused for user 'bob': member of denied group 'banned'");
        assertRefused(policy("allowed_groups = [\"bzr\"]", 0), root, "bob", ErrorCode.REFUSED,
                "spawn refused for user 'bob': not a member of any allowed group (bzr)");
    }

    @Test
    void unknownGroupsStopTheStart() {
        assertThatThrownBy(() -> policy("allowed_groups = [\"bazaar\"]", 0))
                .isInstanceOf(ConfigException.class)
                .hasMessage("policy.allowed_groups names \"bazaar\", which is invalid:"
                        + " no such group");
    }

    @Test
    void unknownUsersAreNamed() throws Exception {
        assertRefused(policy("", 0), new Caller(0, 0, 1), "carol", ErrorCode.UNKNOWN_USER,
                "spawn refused: no user named 'carol'");
    }

    @Test
    void anUnprivilegedDaemonServesOnlyItsOwnUid() throws Exception {
        UserPolicy policy = policy("", 1001);

        assertThat(policy.authorize(new Caller(1001, 1001, 1), "alice")).isEqualTo(ALICE);
        assertRefused(policy, new Caller(0, 0, 1), "bob", ErrorCode.REFUSED,
                "spawn refused for user 'bob': the daemon runs unprivileged as uid 1001"
                        + " and can only serve that uid");
    }
}
