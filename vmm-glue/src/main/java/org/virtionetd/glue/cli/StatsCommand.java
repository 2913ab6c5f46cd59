package org.virtionetd.glue.cli;

import picocli.CommandLine;

@CommandLine.Command(name = "stats", mixinStandardHelpOptions = true, versionProvider = Version.class,
        description = "Show the per-queue-pair counters of a running device (packets, bytes, drops by reason) "
                + "and its lifecycle counters (connections, resets, memory-table changes, dirty pages logged).")
final class StatsCommand extends QueryCommand {
    @Override
    String command() {
        return "stats";
    }
}
