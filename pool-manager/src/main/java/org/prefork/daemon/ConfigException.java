package org.prefork.daemon;

/** A configuration the daemon refuses to start with; the message names key, value and rule. */
public class ConfigException extends Exception {

    private static final long serialVersionUID = 1L;

    public ConfigException(String message) {
        super(message);
    }
}
