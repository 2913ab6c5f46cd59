package org.virtionetd.glue.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A unit file and an EnvironmentFile read as systemd reads them (systemd.syntax(7), systemd.service(5) "Command
 * lines", systemd.exec(5) "EnvironmentFile=", systemd.unit(5) "Specifiers"), for the constructs a unit of this
 * project uses. Anything else (a C escape, an Exec prefix, an unknown specifier, a bare {@code $} inside a word)
 * is refused with the text that has it, so that a test never runs a command line that systemd would read another
 * way.
 */
final class SystemdUnit {
    private static final Pattern WHOLE_WORD_VARIABLE = Pattern.compile("\\$([A-Za-z_][A-Za-z0-9_]*)");
    private static final Pattern DURATION = Pattern.compile("(\\d+)(s|min)?");

    private final Path path;
    private final Map<String, List<String>> entries = new LinkedHashMap<>();

    private SystemdUnit(Path path) {
        this.path = path;
    }

    /** Reads sections and {@code Key=Value} lines; {@code #} and {@code ;} start comments; {@code \} continues. */
    static SystemdUnit read(Path path) {
        SystemdUnit unit = new SystemdUnit(path);
        String section = null;
        StringBuilder pending = new StringBuilder();
        for (String raw : lines(path)) {
            String line = raw.strip();
            if (pending.length() == 0 && (line.isEmpty() || line.startsWith("#") || line.startsWith(";"))) {
                continue;
            }
            if (line.endsWith("\\")) {
                pending.append(line, 0, line.length() - 1).append(' ');
                continue;
            }
            pending.append(line);
            String full = pending.toString();
            pending.setLength(0);
            if (full.startsWith("[") && full.endsWith("]")) {
                section = full.substring(1, full.length() - 1);
                continue;
            }
            int eq = full.indexOf('=');
            if (section == null || eq < 1) {
                throw new AssertionError(path + ": line '" + full + "' is not Key=Value inside a [Section]");
            }
            unit.entries.computeIfAbsent(section + "." + full.substring(0, eq).strip(), k -> new ArrayList<>())
                    .add(full.substring(eq + 1).strip());
        }
        return unit;
    }

    /** Every value of {@code key} in {@code section}, in file order (Exec lines, DeviceAllow...). */
    List<String> all(String section, String key) {
        return entries.getOrDefault(section + "." + key, List.of());
    }

    /** The value of a single-valued setting: its last assignment, as systemd keeps it; absent is a failure. */
    String one(String section, String key) {
        List<String> values = all(section, key);
        if (values.isEmpty()) {
            throw new AssertionError(path + " has no " + key + "= in [" + section + "]");
        }
        return values.get(values.size() - 1);
    }

    /** A time span such as {@code 20s} or {@code 2min} (the forms this project's units use). */
    Duration duration(String section, String key) {
        String value = one(section, key);
        Matcher m = DURATION.matcher(value);
        if (!m.matches()) {
            throw new AssertionError(path + ": " + key + "=" + value + " is not N, Ns or Nmin");
        }
        long n = Long.parseLong(m.group(1));
        return "min".equals(m.group(2)) ? Duration.ofMinutes(n) : Duration.ofSeconds(n);
    }

    /**
     * The argv systemd runs for an Exec line: words split at whitespace outside quotes, quotes removed, then
     * specifiers replaced in each word, then (at exec time) {@code ${NAME}} replaced inside a word, a word that is
     * exactly {@code $NAME} replaced by the value split at whitespace, and {@code $$} made a {@code $}.
     */
    String[] commandLine(String line, Map<Character, String> specifiers, Map<String, String> env) {
        if (!line.isEmpty() && "@-:+!".indexOf(line.charAt(0)) >= 0) {
            throw new AssertionError(path + ": Exec prefix '" + line.charAt(0) + "' is not handled: " + line);
        }
        List<String> argv = new ArrayList<>();
        for (String word : words(line)) {
            String w = specifiers(word, specifiers);
            Matcher whole = WHOLE_WORD_VARIABLE.matcher(w);
            if (whole.matches()) {
                String value = env.getOrDefault(whole.group(1), "");
                if (value.matches(".*['\"\\\\].*")) {
                    throw new AssertionError("$" + whole.group(1) + "=" + value + " has quotes or backslashes");
                }
                for (String part : value.strip().split("\\s+")) {
                    if (!part.isEmpty()) {
                        argv.add(part);
                    }
                }
            } else {
                argv.add(variables(w, env));
            }
        }
        return argv.toArray(String[]::new);
    }

    /** {@code KEY=VALUE} lines (whole-value quotes removed), {@code #} and {@code ;} comments, as systemd.exec(5). */
    static Map<String, String> environmentFile(Path path) {
        Map<String, String> env = new LinkedHashMap<>();
        for (String raw : lines(path)) {
            String line = raw.strip();
            if (line.isEmpty() || line.startsWith("#") || line.startsWith(";")) {
                continue;
            }
            int eq = line.indexOf('=');
            if (eq < 1 || line.contains("\\")) {
                throw new AssertionError(path + ": line '" + line + "' is not KEY=VALUE without backslashes");
            }
            String value = line.substring(eq + 1).strip();
            if (value.length() >= 2 && (value.charAt(0) == '"' || value.charAt(0) == '\'')
                    && value.charAt(value.length() - 1) == value.charAt(0)) {
                value = value.substring(1, value.length() - 1);
            }
            env.put(line.substring(0, eq).strip(), value);
        }
        return env;
    }

    private List<String> words(String line) {
        List<String> words = new ArrayList<>();
        StringBuilder word = null;
        char quote = 0;
        for (int i = 0; i < line.length(); i++) {
            char c = line.charAt(i);
            if (c == '\\') {
                throw new AssertionError(path + ": a backslash escape is not handled: " + line);
            }
            if (quote != 0) {
                if (c == quote) {
                    quote = 0;
                } else {
                    word.append(c);
                }
            } else if (Character.isWhitespace(c)) {
                if (word != null) {
                    words.add(word.toString());
                    word = null;
                }
            } else {
                if (word == null) {
                    word = new StringBuilder();
                }
                if (c == '"' || c == '\'') {
                    quote = c;
                } else {
                    word.append(c);
                }
            }
        }
        if (quote != 0) {
            throw new AssertionError(path + ": unterminated " + quote + " in: " + line);
        }
        if (word != null) {
            words.add(word.toString());
        }
        return words;
    }

    private String specifiers(String word, Map<Character, String> specifiers) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < word.length(); i++) {
            char c = word.charAt(i);
            if (c != '%') {
                out.append(c);
                continue;
            }
            if (++i == word.length()) {
                throw new AssertionError(path + ": '%' at the end of '" + word + "'");
            }
            char s = word.charAt(i);
            if (s == '%') {
                out.append('%');
            } else if (specifiers.containsKey(s)) {
                out.append(specifiers.get(s));
            } else {
                throw new AssertionError(path + ": specifier %" + s + " in '" + word + "' is not handled");
            }
        }
        return out.toString();
    }

    private String variables(String word, Map<String, String> env) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < word.length(); i++) {
            char c = word.charAt(i);
            if (c != '$') {
                out.append(c);
            } else if (i + 1 < word.length() && word.charAt(i + 1) == '$') {
                out.append('$');
                i++;
            } else if (i + 1 < word.length() && word.charAt(i + 1) == '{' && word.indexOf('}', i) > 0) {
                int end = word.indexOf('}', i);
                out.append(env.getOrDefault(word.substring(i + 2, end), ""));
                i = end;
            } else {
                throw new AssertionError(path + ": '$' not followed by '$' or '{NAME}' inside '" + word
                        + "' (write $$ for a literal $)");
            }
        }
        return out.toString();
    }

    private static List<String> lines(Path path) {
        try {
            return Files.readAllLines(path);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + path, e);
        }
    }

    @Override
    public String toString() {
        return path.toString();
    }
}
