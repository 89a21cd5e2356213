package org.prefork.daemon;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.MissingNode;

/**
 * One {@code [table]} of {@code prefork.toml}, read key by key. It remembers which keys
 * were read so that {@link #rejectUnknownKeys()} can name a misspelt one.
 */
final class ConfigSection {

    private final String name;
    private final JsonNode node;
    private final Set<String> known = new TreeSet<>();

    ConfigSection(String name, JsonNode node) {
        this.name = name;
        this.node = node == null ? MissingNode.getInstance() : node;
    }

    int integer(String key, int fallback, int min, int max) throws ConfigException {
        JsonNode value = value(key);
        if (value.isMissingNode()) {
            return fallback;
        }
        if (!value.canConvertToInt() || !value.isIntegralNumber()
                || value.asInt() < min || value.asInt() > max) {
            throw invalid(key, value, "an integer from " + min + " to " + max);
        }
        return value.asInt();
    }

    long longInteger(String key, long fallback, long min, long max) throws ConfigException {
        JsonNode value = value(key);
        if (value.isMissingNode()) {
            return fallback;
        }
        if (!value.isIntegralNumber() || !value.canConvertToLong()
                || value.asLong() < min || value.asLong() > max) {
            throw invalid(key, value, "an integer from " + min + " to " + max);
        }
        return value.asLong();
    }

    String string(String key, String fallback, Pattern rule, String ruleText)
            throws ConfigException {
        JsonNode value = value(key);
        if (value.isMissingNode()) {
            return fallback;
        }
        if (!value.isTextual() || !rule.matcher(value.asText()).matches()) {
            throw invalid(key, value, ruleText);
        }
        return value.asText();
    }

    List<String> strings(String key, List<String> fallback, Pattern rule, String ruleText)
            throws ConfigException {
        JsonNode value = value(key);
        if (value.isMissingNode()) {
            return fallback;
        }
        if (!value.isArray()) {
            throw invalid(key, value, "a list in [ ], each item " + ruleText);
        }
        List<String> items = new ArrayList<>();
        for (JsonNode item : value) {
            if (!item.isTextual() || !rule.matcher(item.asText()).matches()) {
                throw invalidItem(key, item, ruleText);
            }
            items.add(item.asText());
        }
        return List.copyOf(items);
    }

    List<Integer> integers(String key, int min, int max) throws ConfigException {
        JsonNode value = value(key);
        if (value.isMissingNode()) {
            return List.of();
        }
        String itemRule = "an integer from " + min + " to " + max;
        if (!value.isArray()) {
            throw invalid(key, value, "a list in [ ], each item " + itemRule);
        }
        List<Integer> items = new ArrayList<>();
        for (JsonNode item : value) {
            if (!item.isIntegralNumber() || item.asLong() < min || item.asLong() > max) {
                throw invalidItem(key, item, itemRule);
            }
            items.add(item.asInt());
        }
        return List.copyOf(items);
    }

    /** Throws for the first key in this table that no reader asked for. */
    void rejectUnknownKeys() throws ConfigException {
        if (!node.isObject()) {
            if (!node.isMissingNode()) {
                throw new ConfigException("[" + name + "] must be a table, got "
                        + describe(node));
            }
            return;
        }
        for (Iterator<String> keys = node.fieldNames(); keys.hasNext(); ) {
            String key = keys.next();
            if (!known.contains(key)) {
                throw new ConfigException("unknown key '" + name + "." + key
                        + "'; [" + name + "] takes " + String.join(", ", known));
            }
        }
    }

    ConfigException invalidItem(String key, JsonNode item, String rule) {
        return new ConfigException(name + "." + key + " has " + describe(item)
                + ", which is invalid: each item must be " + rule);
    }

    ConfigException invalid(String key, JsonNode value, String rule) {
        return new ConfigException(name + "." + key + " = " + describe(value)
                + " is invalid: must be " + rule);
    }

    private JsonNode value(String key) {
        known.add(key);
        return node.path(key);
    }

    private static String describe(JsonNode value) {
        String text = value.toString();
        return text.length() <= 60 ? text : text.substring(0, 60) + "...";
    }
}
