// The qcow2 metadata core's guards: the overlap check refuses guest data steered onto metadata by a corrupt
// L2 entry and marks the image corrupt instead; a freed table cluster leaves the cache and is handed out
// again safely; the reference walker and check agree with qemu-img check.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Qcow2;

public class Qcow2CoreTests
{
    [Theory]
    [InlineData("refcount table")]
    [InlineData("active L1 table")]
    [InlineData("a refcount block")]
    [InlineData("an active L2 table")]
    public void GuestDataSteeredOntoMetadataMarksTheImageCorruptAndWritesNothing(string target)
    {
        var bytes = ImageWithData(out var header, out long l2Table);
        long victim = target switch
        {
            "refcount table" => header.RefcountTableOffset,
            "active L1 table" => header.L1TableOffset,
            "a refcount block" => (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)header.RefcountTableOffset)),
            _ => l2Table, // the entry points at its own table
        };
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)l2Table), (ulong)victim | Qcow2Entries.Copied); // guest cluster 0 -> metadata
        var storage = new MemoryStorage("o.qcow2", bytes);
        var metadataBefore = storage.ToArray().AsSpan((int)victim, 512).ToArray();
        var disk = new VirtualDisk("o.qcow2", Qcow2Driver.Open(storage, true), null, true);
        var e = Assert.Throws<VDiskException>(() => disk.Write(0, new byte[512].Select(_ => (byte)0xEE).ToArray()));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(target, e.Message);
        Assert.Contains("metadata overlap", e.Message);
        Assert.Throws<VDiskException>(() => disk.Write(1 << 20, new byte[512])); // the image stays refused
        disk.Dispose();
        var after = storage.ToArray();
        Assert.True(Qcow2Header.Parse(after, "o").IsCorrupt);
        if (victim != l2Table) Assert.Equal(metadataBefore, after.AsSpan((int)victim, 512).ToArray());
    }

    // An L2 table whose L1 entry lacks COPIED is copied before it is changed and the old one freed; its cluster
    // leaves the cache and the next allocations may reuse it, only after the tables that pointed at it are durable.
    [SkippableFact]
    public void AFreedTableClusterIsReusedSafely()
    {
        Qemu.Require();
        var bytes = ImageWithData(out var header, out long l2Table);
        ulong l1Entry = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)header.L1TableOffset));
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)header.L1TableOffset), l1Entry & ~Qcow2Entries.Copied);
        var storage = new MemoryStorage("o.qcow2", bytes);
        var model = new byte[4 << 20];
        using (var disk = new VirtualDisk("o.qcow2", Qcow2Driver.Open(storage, true), null, true))
        {
            disk.Read(0, model.AsSpan(0, 65536));
            for (int i = 1; i < 8; i++)
            {
                var data = Images.Pattern(65536, i);
                disk.Write(i * 65536L, data);
                data.CopyTo(model, i * 65536);
            }
            Assert.Equal(model, Images.ReadAll(disk));
        }
        var after = storage.ToArray();
        var references = new List<Qcow2Reference>();
        Qcow2ReferenceWalker.Walk(storage, Qcow2Header.Parse(after, "o"), references.Add, problem => Assert.Fail(problem));
        Assert.Contains(references, r => r.Offset.Value == l2Table && r.Kind == Qcow2ReferenceKind.Data); // the old table's cluster holds data now
        Assert.True(Qcow2Check.Run(storage).IsClean);
        using var dir = new TempFolder();
        File.WriteAllBytes(dir.File("o.qcow2"), after);
        Qemu.CheckClean(dir.File("o.qcow2"));
    }

    // Our check and qemu-img check agree on a clean image, a leak, and a missing reference count.
    [SkippableFact]
    public void TheCheckAgreesWithQemuImgCheck()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var bytes = ImageWithData(out var header, out _);
        long cs = header.ClusterSize;
        long block = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)header.RefcountTableOffset));
        var leaked = (byte[])bytes.Clone();
        Array.Resize(ref leaked, leaked.Length + (int)cs);
        BinaryPrimitives.WriteUInt16BigEndian(leaked.AsSpan((int)(block + 2 * (leaked.Length / cs - 1))), 1); // count a cluster nobody uses
        var missing = (byte[])bytes.Clone();
        long dataCluster = (bytes.Length - cs) / cs; // the last cluster holds guest data
        BinaryPrimitives.WriteUInt16BigEndian(missing.AsSpan((int)(block + 2 * dataCluster)), 0);
        foreach (var (name, image, corrupt, leaks) in new[] { ("clean", bytes, false, 0L), ("leak", leaked, false, 1L), ("missing", missing, true, 0L) })
        {
            var report = Qcow2Check.Run(new MemoryStorage(name, image, canWrite: false));
            Assert.Equal(corrupt, report.Corruptions > 0);
            Assert.Equal(leaks, report.Leaks);
            File.WriteAllBytes(dir.File(name), image);
            var (code, output) = Qemu.TryImg("check", "-f", "qcow2", dir.File(name));
            Assert.True(code == (corrupt ? 2 : leaks > 0 ? 3 : 0), $"{name}: qemu-img check exited {code}: {output}");
        }
    }

    // A 4 MiB image with 64 KiB of data at guest 0, closed; the L2 table's offset is returned.
    private static byte[] ImageWithData(out Qcow2Header header, out long l2Table)
    {
        var storage = new MemoryStorage("o.qcow2");
        Qcow2Creator.WriteEmpty(storage, new CreateOptions { Size = 4 << 20 }, 4 << 20, null, null);
        using (var disk = new VirtualDisk("o.qcow2", Qcow2Driver.Open(storage, true), null, true)) disk.Write(0, Images.Pattern(65536, 9));
        var bytes = storage.ToArray();
        header = Qcow2Header.Parse(bytes, "o");
        l2Table = (long)(BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)header.L1TableOffset)) & Qcow2Entries.OffsetMask);
        return bytes;
    }
}
