package org.virtionetd.virtio.fuzz;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Builds seed inputs field by field in {@link FuzzInput}'s layout and writes them where Jazzer's JUnit
 * integration replays them: {@code src/test/resources/<package>/<Class>Inputs/<method>/<name>} of the module
 * (the working directory of a Surefire run).
 */
public final class SeedWriter {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();

    public SeedWriter u8(int v) {
        out.write(v);
        return this;
    }

    public SeedWriter u16(int v) {
        return u8(v).u8(v >>> 8);
    }

    public SeedWriter u32(int v) {
        return u16(v).u16(v >>> 16);
    }

    public SeedWriter u64(long v) {
        return u32((int) v).u32((int) (v >>> 32));
    }

    public SeedWriter bytes(byte[] b) {
        out.write(b, 0, b.length);
        return this;
    }

    public byte[] toBytes() {
        return out.toByteArray();
    }

    /**
     * With {@code -Dvnd.fuzz.writeSeeds=true} writes every seed; otherwise checks that each committed seed file holds
     * exactly what its builder makes (so a change of input layout cannot leave stale seeds behind unnoticed).
     */
    public static void writeOrCheck(Class<?> testClass, String method, java.util.Map<String, byte[]> seeds) {
        for (java.util.Map.Entry<String, byte[]> e : seeds.entrySet()) {
            if (Boolean.getBoolean("vnd.fuzz.writeSeeds")) {
                write(testClass, method, e.getKey(), e.getValue());
                continue;
            }
            Path file = dir(testClass, method).resolve(e.getKey());
            byte[] committed;
            try {
                committed = Files.readAllBytes(file);
            } catch (IOException x) {
                throw new AssertionError("seed " + file + " is missing; regenerate with -Dvnd.fuzz.writeSeeds=true", x);
            }
            if (!java.util.Arrays.equals(committed, e.getValue())) {
                throw new AssertionError("seed " + file + " differs from what its builder makes; regenerate with "
                        + "-Dvnd.fuzz.writeSeeds=true");
            }
        }
    }

    static Path dir(Class<?> testClass, String method) {
        return Path.of("src/test/resources", testClass.getPackageName().replace('.', '/'),
                testClass.getSimpleName() + "Inputs", method);
    }

    /** Writes {@code data} as seed {@code name} of {@code testClass#method}. */
    public static void write(Class<?> testClass, String method, String name, byte[] data) {
        Path dir = dir(testClass, method);
        try {
            Files.createDirectories(dir);
            Files.write(dir.resolve(name), data);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write seed " + name + " in " + dir, e);
        }
    }
}
