package org.virtionetd.glue.cli;

import picocli.CommandLine;

import java.util.List;

@CommandLine.Command(name = "features", mixinStandardHelpOptions = true, versionProvider = Version.class,
        description = "Show the features a running device offered, the driver acked and are in effect, "
                + "and the offloads programmed into the backend.")
final class FeaturesCommand extends QueryCommand {
    @Override
    String command() {
        return "features";
    }

    @Override
    List<String> formats() {
        return List.of("table", "json");
    }
}
