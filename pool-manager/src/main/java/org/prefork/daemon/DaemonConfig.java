package org.prefork.daemon;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.dataformat.toml.TomlMapper;

/**
 * The validated contents of {@code prefork.toml}. Every key has a default that serves a
 * single-host install; a bad value stops the start with a message naming the key, the
 * value and what is allowed.
 */
public record DaemonConfig(
        Path socket,
        int socketMode,
        String socketGroup,
        int maxConnectionsPerUid,
        Path workerDir,
        Path stateDir,
        int minIdle,
        int maxTotal,
        long waitTimeoutMs,
        int maxWaiting,
        long fifoOpenTimeoutMs,
        long drainTimeoutMs,
        String service,
        Path python,
        Path workerStub,
        int startupMs,
        List<String> writablePaths,
        List<String> envAllowlist,
        List<Integer> trustedUids,
        int minUid,
        int maxUid,
        List<String> allowedGroups,
        List<String> deniedGroups,
        Map<String, Long> rlimits,
        String metricsAddress) {

    private static final long MAX_FILE_BYTES = 1 << 20;
    private static final Pattern ABSOLUTE_PATH = Pattern.compile("/[^\\x00]*");
    private static final Pattern WRITABLE_PATH = Pattern.compile("~|/[^\\x00]*");
    private static final Pattern OCTAL_MODE = Pattern.compile("0?[0-7]{3}");
    private static final Pattern SERVICE = Pattern.compile("brz|test");
    private static final Pattern ENV_NAME = Pattern.compile("[A-Z_][A-Z0-9_]{0,63}");
    private static final Pattern GROUP_NAME = Pattern.compile("[a-z_][a-z0-9_-]{0,31}");

    /**
     * Names that change how a program finds the code it runs. A frontend passes values
     * on behalf of users, so none of these may ever be allowlisted.
     */
    private static final Pattern CODE_LOADING_ENV = Pattern.compile(
            "LD_.*|PYTHON.*|BRZ_PLUGIN.*|BZR_PLUGIN.*|BRZ_HOME|BZR_HOME|GCONV_PATH|LOCPATH"
                    + "|NLSPATH|HOSTALIASES|RES_OPTIONS|MALLOC_.*|GLIBC_TUNABLES|IFS|ENV|BASH_ENV");
    private static final Set<String> SECTIONS =
            Set.of("daemon", "pool", "service", "policy", "limits", "metrics");
    private static final Pattern LISTEN_ADDRESS =
            Pattern.compile("|[A-Za-z0-9.\\-]+:[0-9]{1,5}|\\[[0-9A-Fa-f:]+\\]:[0-9]{1,5}");

    /** Names the daemon sets itself; a frontend can never supply them. */
    private static final Set<String> RESERVED_ENV =
            Set.of("HOME", "USER", "LOGNAME", "PATH");

    public static DaemonConfig load(Path file, Path preforkHome) throws ConfigException {
        String text;
        try {
            // A FIFO would block the reader and a huge file exhaust the heap.
            if (Files.exists(file) && !Files.isRegularFile(file)) {
                throw new ConfigException("cannot read config file " + file
                        + ": not a regular file");
            }
            if (Files.exists(file) && Files.size(file) > MAX_FILE_BYTES) {
                throw new ConfigException("cannot read config file " + file + ": larger than "
                        + MAX_FILE_BYTES + " bytes");
            }
            text = Files.readString(file);
        } catch (NoSuchFileException e) {
            throw new ConfigException("cannot read config file " + file + ": no such file");
        } catch (AccessDeniedException e) {
            throw new ConfigException("cannot read config file " + file
                    + ": permission denied");
        } catch (IOException e) {
            throw new ConfigException("cannot read config file " + file + ": " + e);
        }
        return parse(text, preforkHome);
    }

    public static DaemonConfig parse(String toml, Path preforkHome) throws ConfigException {
        JsonNode root;
        try {
            root = new TomlMapper().readTree(toml);
        } catch (JacksonException e) {
            String where = e.getLocation() == null ? "" : " (line " + e.getLocation().getLineNr()
                    + ", column " + e.getLocation().getColumnNr() + ")";
            throw new ConfigException("config is not valid TOML" + where + ": "
                    + e.getOriginalMessage());
        }
        rejectUnknownSections(root);
        return fromTree(root, preforkHome);
    }

    /** The embedded default: what {@code prefork daemon} runs with when given no file. */
    public static DaemonConfig defaults(Path preforkHome) {
        try {
            return parse("", preforkHome);
        } catch (ConfigException e) {
            throw new IllegalStateException("built-in defaults are invalid", e);
        }
    }

    private static DaemonConfig fromTree(JsonNode root, Path home) throws ConfigException {
        ConfigSection daemon = new ConfigSection("daemon", root.get("daemon"));
        ConfigSection pool = new ConfigSection("pool", root.get("pool"));
        ConfigSection service = new ConfigSection("service", root.get("service"));
        ConfigSection policy = new ConfigSection("policy", root.get("policy"));
        ConfigSection limits = new ConfigSection("limits", root.get("limits"));
        ConfigSection metrics = new ConfigSection("metrics", root.get("metrics"));
        String pathRule = "an absolute path";

        Path socket = Path.of(daemon.string("socket", "/run/prefork/control.sock",
                ABSOLUTE_PATH, pathRule));
        int socketMode = Integer.parseInt(daemon.string("socket_mode", "0666",
                OCTAL_MODE, "an octal file mode such as \"0660\""), 8);
        String socketGroup = daemon.string("socket_group", "", GROUP_NAME,
                "a group name such as \"bzr\"");
        int maxConnectionsPerUid = daemon.integer("max_connections_per_uid", 64, 1, 1024);
        Path workerDir = Path.of(daemon.string("worker_dir", "/run/prefork/workers",
                ABSOLUTE_PATH, pathRule));
        Path stateDir = Path.of(daemon.string("state_dir", "/var/lib/prefork",
                ABSOLUTE_PATH, pathRule));

        int minIdle = pool.integer("min_idle", 4, 0, 256);
        int maxTotal = pool.integer("max_total", 64, 1, 4096);
        long waitTimeoutMs = pool.longInteger("wait_timeout_ms", 5_000, 0, 600_000);
        int maxWaiting = pool.integer("max_waiting", 64, 0, 10_000);
        long fifoOpenTimeoutMs =
                pool.longInteger("fifo_open_timeout_ms", 10_000, 100, 600_000);
        long drainTimeoutMs = pool.longInteger("drain_timeout_ms", 10_000, 0, 3_600_000);

        String serviceName = service.string("name", "brz", SERVICE, "\"brz\" or \"test\"");
        Path python = Path.of(service.string("python", "/usr/bin/python3",
                ABSOLUTE_PATH, pathRule));
        Path workerStub = Path.of(service.string("worker_stub",
                defaultWorkerStub(home).toString(), ABSOLUTE_PATH, pathRule));
        int startupMs = service.integer("startup_ms", 0, 0, 60_000);
        List<String> writablePaths = service.strings("writable_paths", List.of(),
                WRITABLE_PATH, "an absolute path or \"~\"");
        List<String> envAllowlist = service.strings("env_allowlist",
                List.of("LANG", "LC_ALL", "BRZ_EMAIL", "BZR_EMAIL"),
                ENV_NAME, "an environment variable name such as \"BRZ_EMAIL\"");

        List<Integer> trustedUids = policy.integers("trusted_uids", 0, Integer.MAX_VALUE);
        int minUid = policy.integer("min_uid", 1000, 1, Integer.MAX_VALUE);
        int maxUid = policy.integer("max_uid", 60_000, 1, Integer.MAX_VALUE);
        List<String> allowedGroups = policy.strings("allowed_groups", List.of(), GROUP_NAME,
                "a group name");
        List<String> deniedGroups = policy.strings("denied_groups", List.of(), GROUP_NAME,
                "a group name");

        Map<String, Long> rlimits = readRlimits(limits);

        String metricsAddress = metrics.string("address", "", LISTEN_ADDRESS,
                "\"host:port\" such as \"127.0.0.1:9464\", or \"\" for no endpoint");

        for (ConfigSection section : List.of(daemon, pool, service, policy, limits, metrics)) {
            section.rejectUnknownKeys();
        }
        checkCrossKeyRules(minIdle, maxTotal, minUid, maxUid, envAllowlist, python);

        return new DaemonConfig(socket, socketMode, socketGroup, maxConnectionsPerUid,
                workerDir, stateDir, minIdle, maxTotal, waitTimeoutMs, maxWaiting,
                fifoOpenTimeoutMs, drainTimeoutMs, serviceName, python, workerStub, startupMs,
                writablePaths, envAllowlist, trustedUids, minUid, maxUid, allowedGroups,
                deniedGroups, rlimits, metricsAddress);
    }

    private static Map<String, Long> readRlimits(ConfigSection limits) throws ConfigException {
        Map<String, Long> rlimits = new TreeMap<>();
        long unset = -1;
        long[] values = {
            limits.longInteger("address_space_bytes", unset, 1 << 24, Long.MAX_VALUE),
            limits.longInteger("open_files", unset, 16, 1 << 20),
            limits.longInteger("cpu_seconds", unset, 1, Long.MAX_VALUE),
            limits.longInteger("processes", unset, 1, 1 << 22),
            limits.longInteger("file_size_bytes", unset, 1 << 20, Long.MAX_VALUE),
        };
        String[] wireNames = {"as", "nofile", "cpu", "nproc", "fsize"};
        for (int i = 0; i < values.length; i++) {
            if (values[i] != unset) {
                rlimits.put(wireNames[i], values[i]);
            }
        }
        return Map.copyOf(rlimits);
    }

    private static void checkCrossKeyRules(int minIdle, int maxTotal, int minUid, int maxUid,
            List<String> envAllowlist, Path python) throws ConfigException {
        if (minIdle > maxTotal) {
            throw new ConfigException("pool.min_idle = " + minIdle
                    + " is invalid: must not exceed pool.max_total = " + maxTotal);
        }
        if (minUid > maxUid) {
            throw new ConfigException("policy.min_uid = " + minUid
                    + " is invalid: must not exceed policy.max_uid = " + maxUid);
        }
        for (String name : envAllowlist) {
            if (CODE_LOADING_ENV.matcher(name).matches()) {
                throw new ConfigException("service.env_allowlist names \"" + name
                        + "\", which is invalid: it changes how programs load code, and a"
                        + " frontend must never set it for a user");
            }
            if (RESERVED_ENV.contains(name)) {
                throw new ConfigException("service.env_allowlist names \"" + name
                        + "\", which is invalid: the daemon sets HOME, LOGNAME, PATH"
                        + " and USER itself");
            }
        }
        if (!python.isAbsolute()) {
            throw new ConfigException("service.python must be an absolute path");
        }
    }

    private static void rejectUnknownSections(JsonNode root) throws ConfigException {
        for (Map.Entry<String, JsonNode> entry : root.properties()) {
            if (!SECTIONS.contains(entry.getKey())) {
                throw new ConfigException("unknown section or key '" + entry.getKey()
                        + "'; the config has the tables [daemon], [limits], [metrics],"
                        + " [policy], [pool] and [service]");
            }
        }
    }

    /**
     * What a reload applies: {@code next}, except for the keys that only a restart can
     * change (the socket, the directories, the service and its interpreter), which keep
     * this configuration's values. Their names go to {@code kept} when they differ.
     */
    public DaemonConfig reloadWith(DaemonConfig next, List<String> kept) {
        keep(kept, "daemon.socket", socket, next.socket);
        keep(kept, "daemon.socket_mode", socketMode, next.socketMode);
        keep(kept, "daemon.socket_group", socketGroup, next.socketGroup);
        keep(kept, "daemon.worker_dir", workerDir, next.workerDir);
        keep(kept, "daemon.state_dir", stateDir, next.stateDir);
        keep(kept, "service.name", service, next.service);
        keep(kept, "service.python", python, next.python);
        keep(kept, "service.worker_stub", workerStub, next.workerStub);
        keep(kept, "service.startup_ms", startupMs, next.startupMs);
        keep(kept, "metrics.address", metricsAddress, next.metricsAddress);
        return new DaemonConfig(socket, socketMode, socketGroup, next.maxConnectionsPerUid,
                workerDir, stateDir, next.minIdle, next.maxTotal, next.waitTimeoutMs,
                next.maxWaiting, next.fifoOpenTimeoutMs, next.drainTimeoutMs, service, python,
                workerStub, startupMs, next.writablePaths, next.envAllowlist, next.trustedUids,
                next.minUid, next.maxUid, next.allowedGroups, next.deniedGroups, next.rlimits,
                metricsAddress);
    }

    private static void keep(List<String> kept, String key, Object running, Object next) {
        if (!running.equals(next)) {
            kept.add(key);
        }
    }

    /** Where the Prometheus endpoint listens, or empty when there is none. */
    public java.util.Optional<java.net.InetSocketAddress> metricsListenAddress() {
        if (metricsAddress.isEmpty()) {
            return java.util.Optional.empty();
        }
        int colon = metricsAddress.lastIndexOf(':');
        String host = metricsAddress.substring(0, colon).replace("[", "").replace("]", "");
        int port = Integer.parseInt(metricsAddress.substring(colon + 1));
        return java.util.Optional.of(new java.net.InetSocketAddress(host, port));
    }

    /** An install (deploy/install.sh) keeps the Python under python/; a checkout elsewhere. */
    private static Path defaultWorkerStub(Path home) {
        Path installed = home.resolve("python");
        return Files.isRegularFile(installed.resolve("prefork_template.py")) ? installed
                : home.resolve("worker-stub/src/main/python");
    }

    /** The directory the template warms up in: its own repository and empty config home. */
    public Path warmDir() {
        return stateDir.resolve("warm");
    }
}
