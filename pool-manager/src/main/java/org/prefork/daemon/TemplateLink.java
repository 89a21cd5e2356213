package org.prefork.daemon;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.prefork.protocol.LineReader;
import org.prefork.protocol.ProtocolException;
import org.prefork.protocol.TemplateCodec;
import org.prefork.protocol.TemplateEvent;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The pipe pair to the Python template. The template, not the JVM, forks the workers:
 * after fork(2) only the calling thread survives in the child, and HotSpot's GC and
 * compiler threads are not optional.
 */
final class TemplateLink {

    /** Exit codes the template uses for failures that a restart cannot mend. */
    static final List<Integer> FATAL_EXIT_CODES = List.of(2, 4, 5);

    interface Listener {
        void onEvent(TemplateEvent event);

        void onTemplateExit(int exitCode);
    }

    private static final Logger log = LoggerFactory.getLogger(TemplateLink.class);
    private static final Logger templateLog = LoggerFactory.getLogger("org.prefork.template");

    private final DaemonConfig config;
    private final Listener listener;
    private Process process;
    private OutputStream toTemplate;

    TemplateLink(DaemonConfig config, Listener listener) {
        this.config = config;
        this.listener = listener;
    }

    void start() throws IOException {
        ProcessBuilder builder = new ProcessBuilder(command());
        // The template's memory is every worker's memory: it gets nothing of ours.
        Map<String, String> env = builder.environment();
        env.clear();
        env.put("PATH", "/usr/bin:/bin");
        env.put("LANG", "C.UTF-8");
        builder.directory(config.warmDir().toFile());

        process = builder.start();
        toTemplate = process.getOutputStream();
        log.info("template started (pid:{}) for service {}", process.pid(), config.service());

        thread("template-events", this::readEvents).start();
        thread("template-log", this::readLog).start();
    }

    private List<String> command() {
        List<String> command = new ArrayList<>(List.of(
                config.python().toString(), "-E", "-s",
                config.workerStub().resolve("prefork_template.py").toString(),
                "--service", config.service(),
                "--worker-dir", config.workerDir().toString(),
                "--warm-dir", config.warmDir().toString()));
        if (config.startupMs() > 0) {
            command.addAll(List.of("--startup-ms", Integer.toString(config.startupMs())));
        }
        return command;
    }

    synchronized void send(String line) throws IOException {
        toTemplate.write(line.getBytes(StandardCharsets.UTF_8));
        toTemplate.flush();
    }

    /**
     * Sends and logs a failure instead of throwing: the template's death is reported
     * separately through {@link Listener#onTemplateExit}, and handled there.
     */
    void sendQuietly(String line) {
        try {
            send(line);
        } catch (IOException e) {
            log.warn("cannot write to the template: {}", e.getMessage());
        }
    }

    /** End of input tells the template to kill its parked workers and exit. */
    synchronized void closeInput() {
        try {
            toTemplate.close();
        } catch (IOException e) {
            log.debug("template input already closed: {}", e.getMessage());
        }
    }

    boolean awaitExit(long timeoutMs) throws InterruptedException {
        return process.waitFor(timeoutMs, TimeUnit.MILLISECONDS);
    }

    void kill() {
        process.destroyForcibly();
    }

    long pid() {
        return process.pid();
    }

    private void readEvents() {
        LineReader reader = new LineReader(process.getInputStream());
        try {
            for (byte[] line = nextLine(reader); line != null; line = nextLine(reader)) {
                dispatch(line);
            }
        } catch (IOException e) {
            log.warn("reading template events failed: {}", e.getMessage());
        }
        int exitCode = waitForExit();
        listener.onTemplateExit(exitCode);
    }

    private byte[] nextLine(LineReader reader) throws IOException {
        while (true) {
            try {
                return reader.readLine();
            } catch (ProtocolException e) {
                log.error("template sent an over-long event line; ignored");
            }
        }
    }

    private void dispatch(byte[] line) {
        try {
            listener.onEvent(TemplateCodec.parseEvent(line));
        } catch (ProtocolException e) {
            log.error("template sent a bad event ({}); ignored", e.getMessage());
        } catch (RuntimeException e) {
            log.error("handling a template event failed", e);
        }
    }

    private void readLog() {
        try (BufferedReader reader = new BufferedReader(
                new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8))) {
            for (String line = reader.readLine(); line != null; line = reader.readLine()) {
                relayLogLine(line);
            }
        } catch (IOException e) {
            log.debug("template log closed: {}", e.getMessage());
        }
    }

    private static void relayLogLine(String line) {
        int space = line.indexOf(' ');
        String level = space > 0 ? line.substring(0, space) : "";
        String message = space > 0 ? line.substring(space + 1) : line;
        switch (level) {
            case "DEBUG" -> templateLog.debug("{}", message);
            case "INFO" -> templateLog.info("{}", message);
            case "WARNING" -> templateLog.warn("{}", message);
            case "ERROR", "CRITICAL" -> templateLog.error("{}", message);
            default -> templateLog.info("{}", line);
        }
    }

    private int waitForExit() {
        try {
            return process.waitFor();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }

    private static Thread thread(String name, Runnable body) {
        Thread thread = new Thread(body, name);
        thread.setDaemon(true);
        return thread;
    }
}
