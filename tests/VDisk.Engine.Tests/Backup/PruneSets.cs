// A backup set of ten points across three months, built once per test run and copied for each prune test: a source
// gets scattered qemu-io writes (data and zeroes) before each backup; point 4 starts a second chain (-Full). The
// SHA-256 of what qemu-img read from the source at each point is what the point must restore to.
using VDisk.Engine.Backup;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public static class PruneSets
{
    public const long Size = 8L << 20;

    /// <summary>The points' times (UTC): Jan 5 (full), Jan 20, Feb 10, Feb 24, Mar 2 (full), Mar 9, Mar 10 03:00, Mar 10 15:00, Mar 11, Mar 12.</summary>
    public static readonly DateTimeOffset[] Times =
    {
        At(1, 5), At(1, 20), At(2, 10), At(2, 24), At(3, 2), At(3, 9), At(3, 10), At(3, 10, 15), At(3, 11), At(3, 12),
    };

    private static readonly Lazy<(string Folder, Dictionary<DateTimeOffset, string> Expected)> Built = new(Build);

    private static DateTimeOffset At(int month, int day, int hour = 3) => new(2026, month, day, hour, 0, 0, TimeSpan.Zero);

    /// <summary>A fresh copy of the set in <paramref name="dir"/>, and the content each point must restore to.</summary>
    public static (string Set, Dictionary<DateTimeOffset, string> Expected) Copy(TempFolder dir, string name = "set")
    {
        var (folder, expected) = Built.Value;
        string set = dir.File(name);
        CopyFolder(folder, set);
        return (set, expected);
    }

    /// <summary>Copies every file of a set's folder (it has no subfolders) but the lock file, which a writer may hold.</summary>
    public static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.EnumerateFiles(from).Where(f => Path.GetFileName(f) != BackupSet.LockFileName))
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)), overwrite: true);
    }

    private static (string, Dictionary<DateTimeOffset, string>) Build()
    {
        string root = Path.Combine(Path.GetTempPath(), "vdisk-tests", "prune-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(root, recursive: true); } catch (IOException) { } };
        string source = Path.Combine(root, "vm.qcow2"), set = Path.Combine(root, "set");
        Qemu.Img("create", "-q", "-f", "qcow2", source, Size.ToString());
        var expected = new Dictionary<DateTimeOffset, string>();
        for (int i = 0; i < Times.Length; i++)
        {
            ChainImages.Scatter(source, "qcow2", seed: 70 + i, writes: 8, Size, zeroes: i > 0);
            expected[Times[i]] = ChainImages.Sha(source);
            BackupImage.Run(source, set, new BackupOptions { Time = Times[i], Full = i == 4, ThrottleLimit = 2 });
        }
        return (set, expected);
    }

    /// <summary>
    /// Asserts what plain qemu-img reads from every point the manifest in <paramref name="set"/> names (read as it is,
    /// without finishing a pending prune) is that point's content, and that each point has exactly its own
    /// files' chain.
    /// </summary>
    public static void AssertEveryPointReadsItsContent(string set, Dictionary<DateTimeOffset, string> expected)
    {
        var manifest = BackupManifest.Load(set)!;
        foreach (var point in manifest.Points)
            Assert.True(expected[point.Time] == ChainImages.Sha(Path.Combine(set, point.File)), $"the point of {point.Time:u} ({point.File}) reads other content");
    }

    /// <summary>
    /// Asserts the set is committed and complete: exactly <paramref name="kept"/> remain, each restores (through
    /// VDisk, checked against its hashes) to its content, every file passes qemu-img check, each incremental's image
    /// names the previous point's, Test-VDiskBackup finds nothing, and no other point file is left in the folder.
    /// </summary>
    public static void AssertPruned(string set, Dictionary<DateTimeOffset, string> expected, IEnumerable<DateTimeOffset> kept)
    {
        var manifest = BackupManifest.Load(set)!;
        Assert.Null(manifest.Pending);
        Assert.Equal(kept.Order(), manifest.Points.Select(p => p.Time));
        for (int i = 0; i < manifest.Points.Count; i++)
        {
            var point = manifest.Points[i];
            string image = Path.Combine(set, point.File);
            Qemu.CheckClean(image);
            var chain = ChainImages.QemuChain(image);
            if (point.Kind == BackupKind.Full) Assert.Single(chain);
            else Assert.Equal(manifest.Points[i - 1].File, Path.GetFileName(chain[1].File));
            string restored = Path.Combine(Path.GetDirectoryName(set)!, "restored.raw");
            RestoreBackup.Run(set, restored, new RestoreOptions { Time = point.Time, DestinationFormat = VDisk.Engine.Core.ImageFormat.Raw, Overwrite = true });
            Assert.True(expected[point.Time] == Sha(restored), $"the point of {point.Time:u} restores to other content");
            File.Delete(restored);
        }
        Assert.All(VerifyBackup.Run(set, wait: false), check => Assert.Empty(check.Problems));
        var named = manifest.Points.SelectMany(p => new[] { p.File, p.HashFile }).Append(BackupManifest.FileName).Append(BackupSet.LockFileName);
        Assert.Equal(named.Order(), Directory.EnumerateFiles(set).Select(f => Path.GetFileName(f)!).Order());
    }

    private static string Sha(string file)
    {
        using var stream = File.OpenRead(file);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(stream));
    }
}
