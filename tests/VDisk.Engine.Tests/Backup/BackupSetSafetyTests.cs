// Backup sets under damage and interruption (issue 11 "Safety" and "Test-VDiskBackup"): a flipped byte in the full
// backup, in an increment, in a block hash file and in the manifest is found and named (point and guest offset); a
// restore of a damaged point writes nothing; two writers never share a set; a cancelled backup leaves no point and
// no file behind, and the earlier points restore as before.
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public class BackupSetSafetyTests
{
    private const long Size = 16L << 20;
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 3, 0, 0, TimeSpan.Zero);

    // A set of two points: a full one of data at 0..4 MiB (pattern 0x11), and an increment changing 1 MiB..+64 KiB.
    private static (string Source, string Set, BackupPointRecord Full, BackupPointRecord Increment) TwoPoints(TempFolder dir, bool compress = false)
    {
        string source = dir.File("vm.qcow2"), set = dir.File("set");
        Qemu.Img("create", "-q", "-f", "qcow2", source, Size.ToString());
        Qemu.Io("-c", "write -P 0x11 0 4M", source);
        var full = BackupImage.Run(source, set, new BackupOptions { Time = Start, Compress = compress }).Point;
        Qemu.Io("-c", "write -P 0x22 1M 64k", source);
        var increment = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(1), Compress = compress }).Point;
        return (source, set, full, increment);
    }

    // Flips one byte of the guest data stored for `guestOffset` in a point's image (uncompressed, so it is found by content).
    private static long FlipDataByte(string image, long guestOffset, byte pattern)
    {
        var bytes = File.ReadAllBytes(image);
        var run = new byte[65536];
        Array.Fill(run, pattern);
        int at = bytes.AsSpan().IndexOf(run);
        Assert.True(at > 0, "the block's data was not found in the image");
        bytes[at + 100] ^= 0x40;
        File.WriteAllBytes(image, bytes);
        return guestOffset;
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void AFlippedByteInTheFullOrAnIncrementIsNamedWithItsGuestOffset(bool inIncrement)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (_, set, full, increment) = TwoPoints(dir);
        var damaged = inIncrement ? increment : full;
        FlipDataByte(Path.Combine(set, damaged.File), 0, inIncrement ? (byte)0x22 : (byte)0x11);

        var checks = VerifyBackup.Run(set, wait: false);

        var bad = Assert.Single(checks, c => c.Problems.Count > 0);
        Assert.Equal(damaged.File, bad.Point!.File);
        var problem = Assert.Single(bad.Problems, p => p.GuestOffset.HasValue);
        if (inIncrement) Assert.Equal(1L << 20, problem.GuestOffset);
        else Assert.InRange(problem.GuestOffset!.Value, 0, (4L << 20) - 1);
        Assert.Contains("does not match its recorded hash", problem.Message);
        Assert.NotNull(checks.Single(c => c.Problems.Count == 0).Point!.Verified); // the intact point is recorded as verified
        Assert.Null(bad.Point.Verified);
    }

    [SkippableFact]
    public void RestoringADamagedPointFailsAndWritesNothing()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (_, set, full, _) = TwoPoints(dir);
        FlipDataByte(Path.Combine(set, full.File), 0, 0x11);
        string restored = dir.File("restored.qcow2");

        var e = Assert.Throws<VDiskException>(() => RestoreBackup.Run(set, restored, new RestoreOptions()));

        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("guest offset", e.Message);
        Assert.False(File.Exists(restored));
        Assert.Empty(Directory.EnumerateFiles(dir.Path, "*.tmp"));
    }

    [SkippableFact]
    public void AChangedBlockHashFileOrManifestIsFound()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (_, set, _, increment) = TwoPoints(dir);
        string hashes = Path.Combine(set, increment.HashFile);
        var bytes = File.ReadAllBytes(hashes);
        bytes[^1] ^= 1;
        File.WriteAllBytes(hashes, bytes);

        var checks = VerifyBackup.Run(set, wait: false);
        Assert.Contains(checks, c => c.Point!.File == increment.File && c.Problems.Any(p => p.File == hashes));

        string manifest = Path.Combine(set, BackupManifest.FileName);
        string text = File.ReadAllText(manifest);
        File.WriteAllText(manifest, text.Replace("\"changedBytes\": 65536", "\"changedBytes\": 65537"));
        var manifestCheck = Assert.Single(VerifyBackup.Run(set, wait: false));
        Assert.Null(manifestCheck.Point);
        Assert.Contains("checksum", manifestCheck.Problems.Single().Message);
        Assert.Equal(VDiskErrorKind.Corrupt, Assert.Throws<VDiskException>(() => BackupImage.Run(dir.File("vm.qcow2"), set, new BackupOptions())).Kind);
    }

    [SkippableFact]
    public void TwoWritersNeverShareASet()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (source, set, _, _) = TwoPoints(dir);
        using var held = BackupSet.OpenForWriting(set, wait: false, default);

        var e = Assert.Throws<VDiskException>(() => BackupImage.Run(source, set, new BackupOptions()));
        Assert.Equal(VDiskErrorKind.InUse, e.Kind);
        Assert.Contains("-Wait", e.Message);
        Assert.Equal(VDiskErrorKind.InUse, Assert.Throws<VDiskException>(() => BackupSet.OpenForReading(set, wait: false, default)).Kind);

        var waiting = Task.Run(() => BackupImage.Run(source, set, new BackupOptions { Wait = true }));
        Thread.Sleep(300);
        Assert.False(waiting.IsCompleted);
        held.Dispose();
        Assert.Equal(BackupKind.Incremental, waiting.Result.Point.Kind);
    }

    [SkippableFact]
    public void ACancelledBackupLeavesNoPointAndNoFile()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (source, set, _, _) = TwoPoints(dir);
        Qemu.Io("-c", "write -P 0x33 0 8M", source);
        var before = Directory.EnumerateFiles(set).Order().ToList();
        using var cancel = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.BytesRead > 0) cancel.Cancel(); });

        Assert.ThrowsAny<OperationCanceledException>(() => BackupImage.Run(source, set, new BackupOptions { ThrottleLimit = 1 }, progress, cancel.Token));

        Assert.Equal(before, Directory.EnumerateFiles(set).Order().ToList());
        using var opened = BackupSet.OpenForReading(set, wait: false, default);
        Assert.Equal(2, opened.Points.Count);
    }

    private sealed class SyncProgress(Action<BackupProgress> report) : IProgress<BackupProgress>
    {
        public void Report(BackupProgress value) => report(value);
    }
}
