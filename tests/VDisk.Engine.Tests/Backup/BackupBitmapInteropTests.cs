// Dirty bitmaps as a backup's change detection, against the reference (issue 11 "Change detection" and "Proof"):
// each point adds a bitmap qemu-img lists and QEMU's writes (qemu-io) mark; the next backup reads only the clusters it
// marks (bytes read asserted) and restores exactly; a bitmap that was disabled, written around by VDisk itself (in
// use), removed, or belongs to a resized source is never trusted: the backup hashes every block and says why.
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public class BackupBitmapInteropTests
{
    private const long Size = 32L << 20;
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 3, 0, 0, TimeSpan.Zero);

    private static (string Source, string Set, BackupPointRecord Full) FullBackup(TempFolder dir)
    {
        string source = dir.File("vm.qcow2"), set = dir.File("set");
        Qemu.Img("create", "-q", "-f", "qcow2", source, Size.ToString());
        Qemu.Io("-c", "write -P 0x11 0 16M", source);
        return (source, set, BackupImage.Run(source, set, new BackupOptions { Time = Start }).Point);
    }

    private static List<string> QemuBitmaps(string image)
    {
        var info = Qemu.Info(image);
        if (!info.GetProperty("format-specific").GetProperty("data").TryGetProperty("bitmaps", out var bitmaps)) return new();
        return bitmaps.EnumerateArray().Select(b => b.GetProperty("name").GetString()!).ToList();
    }

    [SkippableFact]
    public void TheNextBackupReadsOnlyTheClustersQemuMarked()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (source, set, full) = FullBackup(dir);
        Assert.NotNull(full.Bitmap);
        Assert.Equal(new[] { full.Bitmap }, QemuBitmaps(source));
        Qemu.Io("-c", "write -P 0x22 1M 64k", "-c", "write -P 0x33 5M 4k", "-c", "write -z 9M 64k", "-c", "write -P 0x44 20M 64k", source);
        string expected = ChainImages.Sha(source);

        var point = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(1) }).Point;

        Assert.Equal(ChangeDetection.Bitmap, point.ChangeDetection);
        Assert.Null(point.ChangeDetectionNote);
        Assert.Equal(3 * 65536, point.BytesRead); // the three marked clusters holding data; the zeroed one is not read
        Assert.Equal(4 * 65536, point.ChangedBytes);
        Assert.Equal(new[] { point.Bitmap }, QemuBitmaps(source)); // the older bitmap is gone, the new one tracks from here
        Qemu.CheckClean(source);
        string restored = dir.File("restored.qcow2");
        RestoreBackup.Run(set, restored, new RestoreOptions());
        Assert.Equal(expected, ChainImages.Sha(restored));
        Assert.Equal(expected, ChainImages.Sha(Path.Combine(set, point.File)));
    }

    [SkippableFact]
    public void WritesWhileTheBitmapWasDisabledForceTheHashPath()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (source, set, full) = FullBackup(dir);
        Qemu.Img("bitmap", "--disable", source, full.Bitmap!);
        Qemu.Io("-c", "write -P 0x55 2M 64k", source);
        Qemu.Img("bitmap", "--enable", source, full.Bitmap!);
        Qemu.Img("bitmap", "--disable", source, full.Bitmap!); // still disabled when the backup runs

        var point = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(1) }).Point;

        Assert.Equal(ChangeDetection.Hashes, point.ChangeDetection);
        Assert.Contains("disabled", point.ChangeDetectionNote);
        Assert.Equal(65536, point.ChangedBytes);
        Assert.Equal(ChainImages.Sha(source), ChainImages.Sha(Path.Combine(set, point.File)));
    }

    [SkippableFact]
    public void VDisksOwnWriteMarksTheBitmapInUseAndForcesTheHashPath()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (source, set, _) = FullBackup(dir);
        using (var disk = Images.OpenWritable(source)) disk.Write(3 << 20, Images.Pattern(65536, 9));

        var point = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(1) }).Point;
        Assert.Equal(ChangeDetection.Hashes, point.ChangeDetection);
        Assert.Contains("in use", point.ChangeDetectionNote);
        Assert.Equal(65536, point.ChangedBytes);
        Assert.Equal(ChainImages.Sha(source), ChainImages.Sha(Path.Combine(set, point.File)));
        Qemu.CheckClean(source);

        Qemu.Io("-c", "write -P 0x66 7M 64k", source);
        var next = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(2) }).Point;
        Assert.Equal(ChangeDetection.Bitmap, next.ChangeDetection); // the backup added a fresh bitmap
        Assert.Equal(65536, next.BytesRead);
    }

    [SkippableFact]
    public void AMissingBitmapOrAResizedSourceForcesTheHashPath()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (source, set, full) = FullBackup(dir);
        Qemu.Img("bitmap", "--remove", source, full.Bitmap!);
        Qemu.Io("-c", "write -P 0x77 0 64k", source);
        var point = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(1) }).Point;
        Assert.Equal(ChangeDetection.Hashes, point.ChangeDetection);
        Assert.Contains("no bitmap", point.ChangeDetectionNote);

        Qemu.Img("resize", "-q", source, (Size * 2).ToString());
        Qemu.Io("-c", $"write -P 0x78 {Size + (1 << 20)} 64k", source);
        var grown = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(2) }).Point;
        Assert.Equal(ChangeDetection.Hashes, grown.ChangeDetection);
        Assert.Contains("resized", grown.ChangeDetectionNote);
        Assert.Equal(ChainImages.Sha(source), ChainImages.Sha(Path.Combine(set, grown.File)));
        string restored = dir.File("restored.raw");
        RestoreBackup.Run(set, restored, new RestoreOptions { DestinationFormat = ImageFormat.Raw });
        Assert.Equal(Size * 2, new FileInfo(restored).Length);
    }

    [SkippableFact]
    public void ACompat010SourceIsBackedUpByHashesAndSaysWhy()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("old.qcow2"), set = dir.File("set");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", source, Size.ToString());
        Qemu.Io("-c", "write -P 0x12 0 1M", source);
        var full = BackupImage.Run(source, set, new BackupOptions { Time = Start }).Point;
        Assert.Null(full.Bitmap);
        Assert.Contains("compat 0.10", full.ChangeDetectionNote);
        Assert.Empty(QemuBitmaps(source));
    }
}
