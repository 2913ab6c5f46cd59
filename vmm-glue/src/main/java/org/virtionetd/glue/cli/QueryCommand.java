package org.virtionetd.glue.cli;

import org.virtionetd.glue.control.ControlServer;
import picocli.CommandLine;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/** Shared by {@code features} and {@code stats}: ask a running device through its control socket. */
abstract class QueryCommand implements Callable<Integer> {
    @CommandLine.Option(names = "--control", required = true, paramLabel = "PATH",
            description = "Control socket of the running virtio-netd (its --control option).")
    Path control;

    @CommandLine.Option(names = "--json", description = "Print one JSON object instead of a table (--format json).")
    boolean json;

    @CommandLine.Option(names = "--format", paramLabel = "FORMAT",
            description = "How to print the answer: table (the default) or json; stats also prometheus (the "
                    + "Prometheus text exposition format).")
    String format;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    abstract String command();

    /** The --format words this command answers in, the default first; the control socket speaks the same words. */
    abstract List<String> formats();

    /** The format word sent to the device: --format, or json for --json, or the default. */
    String formatWord() {
        if (format != null && !formats().contains(format)) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--format '" + format + "' is not one of "
                    + String.join(", ", formats()));
        }
        if (json && format != null && !"json".equals(format)) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--json and --format " + format
                    + " exclude each other (--json is --format json)");
        }
        return format != null ? format : json ? "json" : formats().get(0);
    }

    @Override
    public Integer call() {
        String word = formatWord();
        try {
            String answer = ControlServer.query(control, command() + " " + word);
            if (answer.startsWith("error:")) {
                spec.commandLine().getErr().print(answer);
                return 1;
            }
            spec.commandLine().getOut().print(answer.endsWith("\n") ? answer : answer + "\n");
            spec.commandLine().getOut().flush();
            return 0;
        } catch (java.io.IOException e) {
            spec.commandLine().getErr().println("virtio-netd " + command() + ": " + e.getMessage());
            return 1;
        }
    }
}
