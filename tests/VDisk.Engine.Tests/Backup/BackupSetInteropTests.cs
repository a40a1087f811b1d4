// Backup sets against the reference (issue 11 "Proof"): a source goes through six rounds of scattered writes by
// qemu-io with a backup after each; every point restores to exactly the content the source had then (SHA-256 of
// what qemu-img reads), every file of the set passes `qemu-img check`, plain `qemu-img convert` of each point gives
// the same content without VDisk, and increments hold only the changed blocks.
using System.Security.Cryptography;
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public class BackupSetInteropTests
{
    private const long Size = 32L << 20;
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 3, 0, 0, TimeSpan.Zero);

    [SkippableTheory]
    [InlineData("qcow2", CompressionType.Zlib)]
    [InlineData("raw", CompressionType.Zstd)]
    [InlineData("vmdk", CompressionType.Zlib)]
    [InlineData("vdi", CompressionType.Zlib)]
    public void EveryPointOfSixRoundsRestoresToTheSourceAsItWasThen(string format, CompressionType compression)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("vm." + format), set = dir.File("set");
        Qemu.Img("create", "-q", "-f", format, source, Size.ToString());
        var expected = new List<string>();
        for (int round = 0; round < 6; round++)
        {
            ChainImages.Scatter(source, format, seed: 40 + round, writes: 10, Size, zeroes: round > 0);
            expected.Add(ChainImages.Sha(source));
            var result = BackupImage.Run(source, set, new BackupOptions { CompressionType = compression, Time = Start.AddDays(round) });
            Assert.Equal(round == 0 ? BackupKind.Full : BackupKind.Incremental, result.Point.Kind);
            var incremental = format == "qcow2" ? ChangeDetection.Bitmap : ChangeDetection.Hashes; // a qcow2 source carries the set's bitmap
            Assert.Equal(round == 0 ? ChangeDetection.Full : incremental, result.Point.ChangeDetection);
        }

        using (var opened = BackupSet.OpenForReading(set, wait: false, default))
        {
            var points = opened.Points;
            Assert.Equal(6, points.Count);
            for (int i = 0; i < points.Count; i++)
            {
                string image = opened.PathOf(points[i].File);
                Qemu.CheckClean(image);
                Assert.Equal(expected[i], ChainImages.Sha(image)); // plain qemu-img reads the point through its chain
                if (i > 0) Assert.Equal(points[i - 1].File, ChainImages.QemuChain(image)[1].File.Split('/')[^1]);
                if (i > 0) Assert.True(points[i].ChangedBytes <= 11 * 2 * 65536 + 65536, $"point {i} changed {points[i].ChangedBytes} bytes");
            }
        }
        for (int i = 0; i < 6; i++)
        {
            string restored = dir.File($"restored{i}.raw");
            var result = RestoreBackup.Run(set, restored, new RestoreOptions { Time = Start.AddDays(i).AddHours(1), DestinationFormat = ImageFormat.Raw });
            Assert.Equal(Start.AddDays(i), result.Point.Time);
            Assert.Equal(expected[i], Sha(restored));
            File.Delete(restored);
        }
        Assert.All(VerifyBackup.Run(set, wait: false), check => Assert.Empty(check.Problems));
    }

    [SkippableFact]
    public void AnIncrementHoldsOnlyTheChangedBlocksAndZeroesWhereDataWasRemoved()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("vm.qcow2"), set = dir.File("set");
        Qemu.Img("create", "-q", "-f", "qcow2", source, Size.ToString());
        Qemu.Io("-c", "write -P 0x11 0 8M", source);
        BackupImage.Run(source, set, new BackupOptions { Time = Start });
        Qemu.Img("bitmap", "--disable", source, BackupBitmapsName(set)); // force the hash path
        Qemu.Io("-c", "write -P 0x22 1M 64k", "-c", "write -z 4M 128k", "-c", "discard 6M 64k", "-c", "write -P 0x11 7M 64k", source); // the last one rewrites the same bytes

        var result = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(1) });

        Assert.Equal(4 * 65536, result.Point.ChangedBytes); // 1 data block, 3 blocks now zeroes; the rewrite is no change
        Assert.Equal((8L << 20) - 3 * 65536, result.Point.BytesRead); // the hash path reads all data, not the blocks now zeroes
        using var opened = BackupSet.OpenForReading(set, wait: false, default);
        var entries = opened.ReadHashes(opened.Points[1]);
        Assert.Equal(new long[] { 16, 64, 65, 96 }, entries.Select(e => e.Block));
        Assert.Equal(3, entries.Count(e => e.Hash == BlockHash.Zero));
        Assert.Equal(ChainImages.Sha(source), ChainImages.Sha(opened.PathOf(opened.Points[1].File)));
    }

    [SkippableFact]
    public void FullForcesANewChainAndInstantRestoreIsAnOverlayOnThePoint()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("vm.qcow2"), set = dir.File("set");
        Qemu.Img("create", "-q", "-f", "qcow2", source, Size.ToString());
        ChainImages.Scatter(source, "qcow2", 7, 8, Size, zeroes: false);
        BackupImage.Run(source, set, new BackupOptions { Time = Start });
        ChainImages.Scatter(source, "qcow2", 8, 8, Size, zeroes: true);
        var full = BackupImage.Run(source, set, new BackupOptions { Time = Start.AddDays(1), Full = true });
        Assert.Equal(BackupKind.Full, full.Point.Kind);
        Assert.Null(full.Point.Backing);

        string instant = dir.File("now.qcow2");
        RestoreBackup.Run(set, instant, new RestoreOptions { Instant = true });
        Assert.Equal(ChainImages.Sha(source), ChainImages.Sha(instant));
        Assert.Equal(Path.Combine(set, full.Point.File), ChainImages.QemuChain(instant)[1].File);
        Qemu.Io("-c", "write -P 0x5a 0 1M", instant); // usable at once; the point stays as it was
        Assert.All(VerifyBackup.Run(set, wait: false), check => Assert.Empty(check.Problems));
    }

    private static string BackupBitmapsName(string set)
    {
        using var opened = BackupSet.OpenForReading(set, wait: false, default);
        return opened.Points[^1].Bitmap!;
    }

    private static string Sha(string file)
    {
        using var stream = File.OpenRead(file);
        return Convert.ToHexString(SHA256.HashData(stream));
    }
}
