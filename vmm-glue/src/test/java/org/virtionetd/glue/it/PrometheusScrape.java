package org.virtionetd.glue.it;

import org.junit.jupiter.api.Assumptions;
import org.virtionetd.virtio.testsupport.Cmd;
import org.virtionetd.virtio.testsupport.NetNs;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * A scrape of {@code virtio-netd --metrics-listen} (or a file of {@code stats --format prometheus}) judged by a
 * real parser: {@code text_string_to_metric_families} of Debian's python3-prometheus-client, run by
 * {@value #PYTHON} (the interpreter Debian's package installs into; a python3 earlier on PATH may lack it). That
 * parser is lax (a sample outside its family becomes an untyped family of its own), so the script also refuses an
 * untyped family, a family without HELP and a family seen twice, and checks the Content-Type of an HTTP answer.
 * Where {@value #PROMTOOL} is installed (Debian's prometheus, in VND_PACKAGES), {@code promtool check metrics}
 * judges the text too and must say nothing: no parse error, no lint remark (a counter without _total, a missing
 * HELP...).
 *
 * <p>The device listens on the loopback of the namespace it runs in, so an integration test scrapes from inside
 * that namespace: {@link #scrape(NetNs, String)}.
 */
public final class PrometheusScrape {
    public static final String PYTHON = "/usr/bin/python3";
    /** The Debian package of the parser (in scripts/lib/common.sh VND_PACKAGES). */
    public static final String PACKAGE = "python3-prometheus-client";
    /** Prometheus's own checker ({@code promtool check metrics}: parse errors and lint remarks), from Debian's prometheus. */
    public static final String PROMTOOL = "/usr/bin/promtool";
    public static final String PROMTOOL_PACKAGE = "prometheus";
    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    /** Fetches (http://...) or reads (a path) the exposition, parses it, prints a JSON line per family and sample. */
    private static final String SCRIPT = String.join("\n",
            "import json, sys, urllib.request",
            "from prometheus_client.parser import text_string_to_metric_families",
            "src = sys.argv[1]",
            "if src.startswith('http://'):",
            "    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))",
            "    with opener.open(src, timeout=10) as r:",
            "        ctype = r.headers.get('Content-Type')",
            "        if ctype != 'text/plain; version=0.0.4; charset=utf-8':",
            "            sys.exit('Content-Type of %s is %r' % (src, ctype))",
            "        text = r.read().decode('utf-8')",
            "else:",
            "    text = open(src, encoding='utf-8').read()",
            "import os, subprocess",
            "if os.path.exists('" + PROMTOOL + "'):",
            "    p = subprocess.run(['" + PROMTOOL + "', 'check', 'metrics'], input=text.encode('utf-8'),",
            "                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)",
            "    said = p.stdout.decode('utf-8', 'replace').strip()",
            "    if p.returncode != 0 or said:",
            "        sys.exit('promtool check metrics (exit %d): %s' % (p.returncode, said))",
            "    print('promtool check metrics: no remarks')",
            "seen = set()",
            "for f in text_string_to_metric_families(text):",
            "    if f.type in ('untyped', 'unknown'):",
            "        sys.exit('sample %s is outside a family with # TYPE' % [s.name for s in f.samples])",
            "    if f.name in seen:",
            "        sys.exit('family %s appears twice' % f.name)",
            "    if not f.documentation:",
            "        sys.exit('family %s has no # HELP' % f.name)",
            "    seen.add(f.name)",
            "    print(json.dumps({'family': f.name, 'type': f.type, 'help': f.documentation}))",
            "    for s in f.samples:",
            "        print(json.dumps({'sample': s.name, 'labels': s.labels, 'value': s.value}))");

    /** A family as the parser names it (a counter without its _total). */
    public record Family(String name, String type, String help) {
    }

    public record Sample(String name, Map<String, String> labels, double value) {
    }

    private final List<Family> families;
    private final List<Sample> samples;
    private final String output;

    private PrometheusScrape(List<Family> families, List<Sample> samples, String output) {
        this.families = List.copyOf(families);
        this.samples = List.copyOf(samples);
        this.output = output;
    }

    /** The command that parses {@code urlOrFile}: an http:// URL to GET, or a file. */
    public static List<String> argv(String urlOrFile) {
        return List.of(PYTHON, "-c", SCRIPT, urlOrFile);
    }

    /** GETs {@code url} from inside {@code ns} (where the device's loopback is) and parses it; fails if rejected. */
    public static PrometheusScrape scrape(NetNs ns, String url) {
        return of(ns.run(TIMEOUT, argv(url).toArray(String[]::new)));
    }

    /** GETs an http:// URL from this namespace, or reads a file, and parses it; fails if the parser rejects it. */
    public static PrometheusScrape scrape(String urlOrFile) {
        return of(Cmd.run(TIMEOUT, argv(urlOrFile)));
    }

    private static PrometheusScrape of(Cmd.Result r) {
        r.orFail();
        List<Family> families = new ArrayList<>();
        List<Sample> samples = new ArrayList<>();
        for (String line : r.output().lines().filter(l -> l.startsWith("{")).toList()) {
            Map<String, Object> m = JsonText.object(line);
            if (m.containsKey("family")) {
                families.add(new Family((String) m.get("family"), (String) m.get("type"), (String) m.get("help")));
            } else {
                Map<String, String> labels = new LinkedHashMap<>();
                ((Map<?, ?>) m.get("labels")).forEach((k, v) -> labels.put((String) k, (String) v));
                samples.add(new Sample((String) m.get("sample"), labels, ((Number) m.get("value")).doubleValue()));
            }
        }
        return new PrometheusScrape(families, samples, r.output());
    }

    public List<Family> families() {
        return families;
    }

    public List<Sample> samples() {
        return samples;
    }

    /** The family named {@code name} (a counter's without _total); fails naming the families there are. */
    public Family family(String name) {
        return families.stream().filter(f -> f.name().equals(name)).findFirst().orElseThrow(() -> new AssertionError(
                "no family " + name + " in the scrape; families: "
                        + families.stream().map(Family::name).collect(Collectors.joining(", "))));
    }

    /**
     * The sum of the samples named {@code name} whose labels include {@code labels}, given as pairs
     * ("device", "vnd.sock (tap:vnd0)", "queue_pair", "0"); fails if there is none.
     */
    public double sum(String name, String... labels) {
        Map<String, String> want = new LinkedHashMap<>();
        for (int i = 0; i + 1 < labels.length; i += 2) {
            want.put(labels[i], labels[i + 1]);
        }
        List<Sample> match = samples.stream().filter(s -> s.name().equals(name)
                && s.labels().entrySet().containsAll(want.entrySet())).toList();
        if (match.isEmpty()) {
            throw new AssertionError("no sample " + name + " with labels " + want + " in the scrape; samples named "
                    + name + ": " + samples.stream().filter(s -> s.name().equals(name)).toList());
        }
        return match.stream().mapToDouble(Sample::value).sum();
    }

    /** What the parser script printed (for a failure message). */
    public String output() {
        return output;
    }

    /**
     * Skips the calling test if the parser is missing, unless scripts/test installed the project's packages
     * (scripts/lib/common.sh exports VND_PACKAGES_ENSURED, the list it installed): then a missing parser fails.
     */
    public static void requireParser() {
        Cmd.Result r;
        try {
            r = Cmd.run(TIMEOUT, List.of(PYTHON, "-c", "import prometheus_client.parser"));
        } catch (Cmd.Failure e) {
            r = new Cmd.Result(List.of(PYTHON), -1, e.getMessage(), Duration.ZERO);
        }
        String ensured = System.getenv("VND_PACKAGES_ENSURED");
        boolean installedByTest = ensured != null && Arrays.asList(ensured.split(" ")).contains(PROMTOOL_PACKAGE);
        if (installedByTest && !java.nio.file.Files.isExecutable(java.nio.file.Path.of(PROMTOOL))) {
            throw new AssertionError(PROMTOOL + " is missing; yet scripts/test installed VND_PACKAGES (" + ensured
                    + ")");
        }
        if (r.ok()) {
            return;
        }
        String why = PYTHON + " cannot import prometheus_client (Debian's " + PACKAGE + "): " + r.output().strip();
        if (ensured != null && Arrays.asList(ensured.split(" ")).contains(PACKAGE)) {
            throw new AssertionError(why + "; yet scripts/test installed VND_PACKAGES (" + ensured + ")");
        }
        Assumptions.abort(why + "; scripts/test installs it (VND_PACKAGES)");
    }
}
