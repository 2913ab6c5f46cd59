package org.virtionetd.glue.cli;

import org.virtionetd.glue.control.ControlServer;
import picocli.CommandLine;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/** Shared by {@code features} and {@code stats}: ask a running device through its control socket. */
abstract class QueryCommand implements Callable<Integer> {
    @CommandLine.Option(names = "--control", required = true, paramLabel = "PATH",
            description = "Control socket of the running virtio-netd (its --control option).")
    Path control;

    @CommandLine.Option(names = "--json", description = "Print one JSON object instead of a table.")
    boolean json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    abstract String command();

    @Override
    public Integer call() {
        try {
            String answer = ControlServer.query(control, command() + (json ? " json" : " table"));
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
