package org.prefork.daemon;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

/** What a parked worker is told when it is handed out: who to become and what to run. */
record Binding(UserAccount user, Caller caller, List<String> args, Map<String, String> env,
               DaemonConfig config) {

    private static final ObjectMapper JSON = new ObjectMapper();

    /** One line of compact JSON, as the template protocol's {@code bind} carries it. */
    String toJson() {
        Map<String, Object> fields = new LinkedHashMap<>();
        fields.put("user", user.name());
        fields.put("uid", user.uid());
        fields.put("gid", user.gid());
        fields.put("groups", user.groups());
        fields.put("home", user.home());
        fields.put("caller_uid", caller.uid());
        fields.put("caller_gid", caller.gid());
        fields.put("args", args);
        fields.put("env", env);
        fields.put("fifo_open_timeout_ms", config.fifoOpenTimeoutMs());
        fields.put("writable_paths", config.writablePaths());
        fields.put("rlimits", config.rlimits());
        try {
            return JSON.writeValueAsString(fields);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("binding cannot be written as JSON", e);
        }
    }
}
