package org.virtionetd.glue.cli;

import picocli.CommandLine;

import java.util.List;

@CommandLine.Command(name = "stats", mixinStandardHelpOptions = true, versionProvider = Version.class,
        description = "Show the per-queue-pair counters of a running device (packets, bytes, drops by reason) "
                + "and its lifecycle counters (connections, resets, memory-table changes, dirty pages logged); "
                + "--format prometheus prints them as a Prometheus scrape would get them (--metrics-listen).")
final class StatsCommand extends QueryCommand {
    @Override
    String command() {
        return "stats";
    }

    @Override
    List<String> formats() {
        return List.of("table", "json", "prometheus");
    }
}
