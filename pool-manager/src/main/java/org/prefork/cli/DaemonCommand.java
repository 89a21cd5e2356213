package org.prefork.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;

import org.prefork.daemon.ConfigException;
import org.prefork.daemon.DaemonConfig;
import org.prefork.daemon.PreforkDaemon;
import org.prefork.metrics.MicrometerPoolMetrics;
import org.prefork.metrics.PoolMetrics;
import org.prefork.metrics.PrometheusEndpoint;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import sun.misc.Signal;

@Command(name = "daemon", mixinStandardHelpOptions = true,
        description = "Run preforkd in the foreground.")
final class DaemonCommand implements Callable<Integer> {

    @Option(names = "--config", paramLabel = "FILE",
            description = "prefork.toml to read; without it the built-in defaults apply.")
    private Path configFile;

    @Option(names = "--check", description = "Validate the configuration and exit.")
    private boolean checkOnly;

    @Override
    public Integer call() throws Exception {
        DaemonConfig config;
        try {
            config = configFile == null ? DaemonConfig.defaults(Main.home())
                    : DaemonConfig.load(configFile, Main.home());
            PreforkDaemon.check(config);
        } catch (ConfigException e) {
            System.err.println("prefork: " + e.getMessage());
            return PreforkDaemon.EXIT_CONFIG;
        }
        if (checkOnly) {
            System.out.println("configuration is valid");
            return 0;
        }

        PrometheusEndpoint endpoint = null;
        if (config.metricsListenAddress().isPresent()) {
            try {
                endpoint = PrometheusEndpoint.start(config.metricsListenAddress().get());
            } catch (java.io.IOException e) {
                System.err.println("prefork: cannot serve metrics on " + config.metricsAddress()
                        + ": " + e.getMessage());
                return PreforkDaemon.EXIT_CONFIG;
            }
        }
        try {
            return run(new PreforkDaemon(config, endpoint == null ? PoolMetrics.NOOP
                    : new MicrometerPoolMetrics(endpoint.registry())));
        } finally {
            if (endpoint != null) {
                endpoint.close();
            }
        }
    }

    private int run(PreforkDaemon daemon) throws Exception {
        // SIGTERM and SIGINT run shutdown hooks; stopping drains sessions first.
        Runtime.getRuntime().addShutdownHook(new Thread(daemon::stop, "stop-on-signal"));
        reloadOnHangup(daemon);
        try {
            daemon.start();
        } catch (java.io.IOException e) {
            System.err.println("prefork: cannot start: " + e.getMessage());
            daemon.stop();
            int code = daemon.awaitStop();
            return code == PreforkDaemon.EXIT_OK ? PreforkDaemon.EXIT_FAILED : code;
        }
        return daemon.awaitStop();
    }

    /**
     * SIGHUP reloads the configuration, as operators expect of a daemon. The handler
     * only starts the reload on a thread of its own: the signal thread must not block.
     */
    private void reloadOnHangup(PreforkDaemon daemon) {
        Signal.handle(new Signal("HUP"), signal -> {
            if (configFile == null) {
                System.err.println("prefork: SIGHUP ignored: started without --config");
                return;
            }
            new Thread(() -> daemon.reload(configFile, Main.home()), "reload").start();
        });
    }
}
