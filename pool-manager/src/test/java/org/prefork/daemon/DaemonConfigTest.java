package org.prefork.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

class DaemonConfigTest {

    private static final Path HOME = Path.of("/opt/prefork");

    private static DaemonConfig parse(String toml) throws ConfigException {
        return DaemonConfig.parse(toml, HOME);
    }

    private static void assertInvalid(String toml, String message) {
        assertThatThrownBy(() -> parse(toml)).isInstanceOf(ConfigException.class)
                .hasMessage(message);
    }

    @Test
    void defaultsServeASingleHostInstall() {
        DaemonConfig config = DaemonConfig.defaults(HOME);

        assertThat(config.socket()).isEqualTo(Path.of("/run/prefork/control.sock"));
        assertThat(config.minIdle()).isEqualTo(4);
        assertThat(config.service()).isEqualTo("brz");
        assertThat(config.python()).isEqualTo(Path.of("/usr/bin/python3"));
        assertThat(config.workerStub()).isEqualTo(HOME.resolve("worker-stub/src/main/python"));
        assertThat(config.writablePaths()).isEmpty();
        assertThat(config.minUid()).isEqualTo(1000);
        assertThat(config.trustedUids()).isEmpty();
    }

    @Test
    void readsEveryTable() throws Exception {
        DaemonConfig config = parse("""
                [daemon]
                socket = "/tmp/p/control.sock"
                socket_mode = "0660"
                [pool]
                min_idle = 2
                max_total = 8
                wait_timeout_ms = 250
                [service]
                name = "test"
                writable_paths = ["~", "/srv/bzr"]
                env_allowlist = ["BRZ_EMAIL"]
                [policy]
                trusted_uids = [998]
                min_uid = 500
                [limits]
                open_files = 256
                """);

        assertThat(config.socketMode()).isEqualTo(0660);
        assertThat(config.minIdle()).isEqualTo(2);
        assertThat(config.waitTimeoutMs()).isEqualTo(250);
        assertThat(config.writablePaths()).containsExactly("~", "/srv/bzr");
        assertThat(config.trustedUids()).containsExactly(998);
        assertThat(config.rlimits()).isEqualTo(Map.of("nofile", 256L));
    }

    @Test
    void errorsNameTheKeyTheValueAndTheRule() {
        assertInvalid("[pool]\nmin_idle = -1",
                "pool.min_idle = -1 is invalid: must be an integer from 0 to 256");
        assertInvalid("[pool]\nmin_idle = \"four\"",
                "pool.min_idle = \"four\" is invalid: must be an integer from 0 to 256");
        assertInvalid("[service]\nname = \"bzr\"",
                "service.name = \"bzr\" is invalid: must be \"brz\" or \"test\"");
        assertInvalid("[daemon]\nsocket = \"relative.sock\"",
                "daemon.socket = \"relative.sock\" is invalid: must be an absolute path");
        assertInvalid("[daemon]\nsocket_mode = \"rw-rw-rw-\"", "daemon.socket_mode ="
                + " \"rw-rw-rw-\" is invalid: must be an octal file mode such as \"0660\"");
        assertInvalid("[policy]\ntrusted_uids = [\"sshd\"]", "policy.trusted_uids has \"sshd\","
                + " which is invalid: each item must be an integer from 0 to 2147483647");
        assertInvalid("[service]\nwritable_paths = \"~\"", "service.writable_paths = \"~\" is"
                + " invalid: must be a list in [ ], each item an absolute path or \"~\"");
    }

    @Test
    void misspeltKeysAndTablesAreNamed() {
        assertInvalid("[pool]\nmin_idel = 3", "unknown key 'pool.min_idel'; [pool] takes"
                + " drain_timeout_ms, fifo_open_timeout_ms, max_total, max_waiting,"
                + " min_idle, wait_timeout_ms");
        assertInvalid("[pools]\nmin_idle = 3", "unknown section or key 'pools'; the config"
                + " has the tables [daemon], [limits], [metrics], [policy], [pool] and"
                + " [service]");
    }

    @Test
    void crossKeyRules() {
        assertInvalid("[pool]\nmin_idle = 10\nmax_total = 5",
                "pool.min_idle = 10 is invalid: must not exceed pool.max_total = 5");
        assertInvalid("[policy]\nmin_uid = 2000\nmax_uid = 1000",
                "policy.min_uid = 2000 is invalid: must not exceed policy.max_uid = 1000");
        assertInvalid("[service]\nenv_allowlist = [\"PATH\"]", "service.env_allowlist"
                + " names \"PATH\", which is invalid: the daemon sets HOME, LOGNAME, PATH"
                + " and USER itself");
    }

    @Test
    void environmentNamesFollowTheProtocolRule() {
        assertInvalid("[service]\nenv_allowlist = [\"ld_preload\"]",
                "service.env_allowlist has \"ld_preload\", which is invalid: each item must be"
                        + " an environment variable name such as \"BRZ_EMAIL\"");
    }

    @Test
    void codeLoadingVariablesCanNeverBeAllowlisted() {
        for (String name : List.of("LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH",
                "PYTHONSTARTUP", "BRZ_PLUGIN_PATH", "BRZ_HOME", "GCONV_PATH")) {
            assertInvalid("[service]\nenv_allowlist = [\"" + name + "\"]",
                    "service.env_allowlist names \"" + name + "\", which is invalid: it"
                            + " changes how programs load code, and a frontend must never set"
                            + " it for a user");
        }
    }

    @Test
    void socketGroupAndGroupListsAreNames() throws Exception {
        DaemonConfig config = parse("[daemon]\nsocket_group = \"bzr\"\n"
                + "[policy]\nallowed_groups = [\"bzr\"]\ndenied_groups = [\"nobzr\"]");

        assertThat(config.socketGroup()).isEqualTo("bzr");
        assertThat(config.allowedGroups()).containsExactly("bzr");
        assertThat(config.deniedGroups()).containsExactly("nobzr");
        assertInvalid("[daemon]\nsocket_group = \"wheel;rm\"", "daemon.socket_group ="
                + " \"wheel;rm\" is invalid: must be a group name such as \"bzr\"");
    }

    @Test
    void theMetricsEndpointIsOffUnlessAnAddressIsGiven() throws Exception {
        assertThat(DaemonConfig.defaults(HOME).metricsListenAddress()).isEmpty();
        assertThat(parse("[metrics]\naddress = \"127.0.0.1:9464\"").metricsListenAddress())
                .hasValue(new java.net.InetSocketAddress("127.0.0.1", 9464));
        assertInvalid("[metrics]\naddress = \"9464\"", "metrics.address = \"9464\" is invalid:"
                + " must be \"host:port\" such as \"127.0.0.1:9464\", or \"\" for no endpoint");
    }

    @Test
    void brokenTomlSaysSo() {
        assertThatThrownBy(() -> parse("[pool]\nmin_idle = 3\nmin_idle = 4"))
                .isInstanceOf(ConfigException.class)
                .hasMessageStartingWith("config is not valid TOML (line 3, column ");
        assertThatThrownBy(() -> DaemonConfig.load(Path.of("/nonexistent/prefork.toml"), HOME))
                .isInstanceOf(ConfigException.class)
                .hasMessage("cannot read config file /nonexistent/prefork.toml: no such file");
    }

    @Test
    void theExampleConfigShippedInDeployIsValid() throws Exception {
        Path example = Path.of(System.getProperty("prefork.home", "../"))
                .resolve("deploy/prefork.toml");
        DaemonConfig config = DaemonConfig.load(example, HOME);

        assertThat(config.envAllowlist()).contains("BRZ_EMAIL");
        assertThat(config.writablePaths()).isEqualTo(List.of("~"));
    }
}
