// The seed corpus of each target, made at run time (no image blobs in the repository): small valid images from
// the engine and, when installed, qemu-img, plus the files of any extra seed folders (the regression
// reproducers, or a corpus of malformed images). Trailing zero bytes are cut where the format reads them back
// as zeroes anyway, so afl-fuzz mutates kilobytes instead of megabytes.
namespace VDisk.Fuzz.Seeds;

/// <summary>One seed input.</summary>
/// <param name="Name">File name (without folder).</param>
/// <param name="Bytes">Content.</param>
public sealed record Seed(string Name, byte[] Bytes)
{
    /// <summary>A seed from an image file, with trailing zero bytes cut but at least <paramref name="minLength"/> kept.</summary>
    internal static Seed Trimmed(string name, string path, long minLength)
    {
        byte[] bytes = File.ReadAllBytes(path);
        int end = bytes.AsSpan().LastIndexOfAnyExcept((byte)0) + 1;
        return new Seed(name, bytes[..(int)Math.Min(bytes.Length, Math.Max(end, minLength))]);
    }
}

/// <summary>Builds and writes seed corpora.</summary>
public static class SeedCorpus
{
    /// <summary>The generated seeds of <paramref name="target"/>.</summary>
    public static IReadOnlyList<Seed> Generate(string target)
    {
        using var workspace = new SeedWorkspace();
        return (target switch
        {
            "qcow2" => Qcow2Seeds.Make(workspace),
            "vmdk-sparse" => VmdkSeeds.Sparse(workspace),
            "vmdk-descriptor" => VmdkSeeds.Descriptors(workspace),
            "vdi" => VdiSeeds.Make(workspace),
            "partitions" => PartitionSeeds.Make(),
            _ => throw new ArgumentException($"no seeds for target '{target}'", nameof(target)),
        }).ToList();
    }

    /// <summary>
    /// Writes the generated seeds of <paramref name="target"/> into <paramref name="folder"/>, then the files of each
    /// extra folder: those in its subfolder named after the target when it has one, else those at its top level.
    /// Files larger than <see cref="FuzzTargets.MaxInputBytes"/> are left out. Returns the number of seeds written.
    /// </summary>
    public static int Write(string target, string folder, IEnumerable<string> extraFolders)
    {
        Directory.CreateDirectory(folder);
        int count = 0;
        foreach (var seed in Generate(target))
        {
            File.WriteAllBytes(Path.Combine(folder, seed.Name), seed.Bytes);
            count++;
        }
        foreach (var extra in extraFolders)
        {
            string source = Directory.Exists(Path.Combine(extra, target)) ? Path.Combine(extra, target) : extra;
            if (!Directory.Exists(source)) continue;
            foreach (var file in Directory.EnumerateFiles(source).Order().Where(f => new FileInfo(f).Length <= FuzzTargets.MaxInputBytes))
                File.Copy(file, Path.Combine(folder, $"extra-{++count}-{Path.GetFileName(file)}"));
        }
        return count;
    }
}
